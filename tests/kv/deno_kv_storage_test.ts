import assert from "node:assert/strict";
import type { Entry, HardState, Snapshot, SnapshotReader } from "../../raft/mod.ts";
import { StorageError } from "../../raft/mod.ts";
import { DenoKvStorage } from "../../kv/mod.ts";
import { joinChunks } from "../../kv/_storage_records.ts";
import { command, commands, patternBytes, storedKeys, withTempDir } from "./_helpers.ts";

const HARD_STATE: HardState = { term: 3, vote: "n2", commit: 2 };
const CONF = { members: [{ id: "n1", url: "http://127.0.0.1:1", voter: true }] };

function snapshotAt(index: number, term: number, data: Uint8Array): Snapshot {
  return { metadata: { index, term, confState: CONF }, data };
}

async function withStorage(
  fn: (storage: DenoKvStorage, path: string) => Promise<void>,
): Promise<void> {
  await withTempDir(async (dir) => {
    const path = `${dir}/raftkv.db`;
    const storage = await DenoKvStorage.open(path);
    try {
      await fn(storage, path);
    } finally {
      await storage.close();
    }
  });
}

async function reopen(path: string, fn: (storage: DenoKvStorage) => Promise<void>) {
  const storage = await DenoKvStorage.open(path);
  try {
    await fn(storage);
  } finally {
    await storage.close();
  }
}

Deno.test("DenoKvStorage loads an empty state from a new database", async () => {
  await withStorage(async (storage) => {
    assert.deepEqual(await storage.load(), {
      hardState: { term: 0, vote: null, commit: 0 },
      snapshot: undefined,
      entries: [],
    });
    assert.equal(await storage.loadSnapshot(), undefined);
  });
});

Deno.test("DenoKvStorage append() and load() round-trip entries and hard state", async () => {
  const entries: Entry[] = [
    { type: "noop", index: 1, term: 1 },
    { type: "config", index: 2, term: 1, change: { type: "addLearner", id: "n2", url: "u" } },
    { type: "config", index: 3, term: 2, change: { type: "promote", id: "n2" } },
    command(4, 2),
    { type: "command", index: 5, term: 3, data: new Uint8Array() },
  ];
  await withStorage(async (storage, path) => {
    await storage.load();
    await storage.append(entries.slice(0, 2), { term: 1, vote: null, commit: 0 });
    await storage.append(entries.slice(2), HARD_STATE);
    assert.deepEqual(await storage.load(), { hardState: HARD_STATE, snapshot: undefined, entries });
    await storage.close();
    await reopen(path, async (again) => {
      assert.deepEqual(await again.load(), { hardState: HARD_STATE, snapshot: undefined, entries });
      // Hard state alone, with no entries.
      await again.append([], { term: 4, vote: null, commit: 5 });
      assert.deepEqual((await again.load()).hardState, { term: 4, vote: null, commit: 5 });
      assert.equal((await again.load()).entries.length, 5);
    });
  });
});

Deno.test("DenoKvStorage keeps only the new suffix after an overwrite, across reopen", async () => {
  await withStorage(async (storage, path) => {
    await storage.load();
    await storage.append(commands(1, 10, 1), HARD_STATE);
    await storage.append(commands(6, 7, 2), undefined);
    const expected = [...commands(1, 5, 1), ...commands(6, 7, 2)];
    assert.deepEqual((await storage.load()).entries, expected);
    await storage.close();
    await reopen(path, async (again) => {
      assert.deepEqual((await again.load()).entries, expected);
      await again.append(commands(8, 8, 3), undefined);
      assert.deepEqual((await again.load()).entries, [...expected, command(8, 3)]);
    });
    // One record per append (a run of entries): 1..10 (of which 6..10 are dead), 6..7, 8.
    assert.deepEqual(await storedKeys(path, ["log"]), ["log/1", "log/6", "log/8"]);
  });
});

Deno.test("DenoKvStorage never deletes a stale index that a newer append wrote again", async () => {
  await withStorage(async (storage) => {
    await storage.load();
    await storage.append(commands(1, 200, 1), HARD_STATE);
    await storage.append(commands(2, 2, 2), undefined); // 3..200 stale
    await storage.append(commands(3, 100, 2), undefined); // 3..100 live again
    await storage.append([], HARD_STATE); // a commit that deletes stale records lazily
    await storage.append([], HARD_STATE);
    const entries = (await storage.load()).entries;
    assert.deepEqual(entries, [command(1, 1), ...commands(2, 100, 2)]);
  });
});

Deno.test("DenoKvStorage splits a 500 KiB entry into chunks in one commit", async () => {
  await withStorage(async (storage, path) => {
    await storage.load();
    const big: Entry = { type: "command", index: 1, term: 1, data: patternBytes(500 * 1024, 1) };
    await storage.append([big, command(2, 1)], HARD_STATE);
    assert.deepEqual((await storage.load()).entries, [big, command(2, 1)]);
    const keys = await storedKeys(path, ["log", 1]);
    assert(keys.length >= 8, `500 KiB takes a head and at least 8 more chunks: ${keys}`);
    // Overwrite it with a small entry: its other chunks go in the same commit.
    await storage.append([command(1, 2)], undefined);
    assert.deepEqual(await storedKeys(path, ["log", 1]), []);
    assert.deepEqual((await storage.load()).entries, [command(1, 2)]);
  });
});

Deno.test("DenoKvStorage refuses an append over Deno KV's commit limit with StorageError", async () => {
  await withStorage(async (storage) => {
    await storage.load();
    await storage.append([command(1, 1)], HARD_STATE);
    const entries: Entry[] = [];
    for (let index = 2; index <= 3; index++) {
      entries.push({ type: "command", index, term: 1, data: patternBytes(450 * 1024, index) });
    }
    await assert.rejects(storage.append(entries, undefined), (error: unknown) => {
      assert(error instanceof StorageError);
      assert.match(error.message, /Cannot write the raft log append in one Deno KV commit/);
      return true;
    });
    assert.deepEqual((await storage.load()).entries, [command(1, 1)]);
  });
});

Deno.test("DenoKvStorage writes a batch of small entries as one record, read back whole", async () => {
  await withStorage(async (storage, path) => {
    await storage.load();
    // 1,000 entries were 1,000 Deno KV mutations, over its limit of 1,000 per commit.
    await storage.append(commands(1, 1000, 1), HARD_STATE);
    assert.deepEqual((await storage.load()).entries, commands(1, 1000, 1));
    await storage.close();
    assert.deepEqual(await storedKeys(path, ["log"]), ["log/1"]);
    await reopen(path, async (again) => {
      assert.deepEqual((await again.load()).entries, commands(1, 1000, 1));
    });
  });
});

Deno.test("DenoKvStorage saves a local snapshot, keeping the entries after it", async () => {
  await withStorage(async (storage, path) => {
    await storage.load();
    await storage.append(commands(1, 10, 1), HARD_STATE);
    const data = patternBytes(1000, 7);
    await storage.saveSnapshot(snapshotAt(6, 1, data), { discardLog: false });
    const state = await storage.load();
    assert.deepEqual(state.snapshot, { index: 6, term: 1, confState: CONF });
    assert.deepEqual(state.entries, commands(7, 10, 1));
    assert.deepEqual(await storage.loadSnapshot(), snapshotAt(6, 1, data));
    // The record of 1..10 stays: it still holds 7..10.
    assert.deepEqual(await storedKeys(path, ["log"]), ["log/1"]);
    await storage.append(commands(11, 11, 1), undefined);
    await storage.close();
    await reopen(path, async (again) => {
      assert.deepEqual((await again.load()).entries, commands(7, 11, 1));
      assert.deepEqual(await again.loadSnapshot(), snapshotAt(6, 1, data));
    });
  });
});

Deno.test("DenoKvStorage saves a leader's snapshot, discarding the whole log", async () => {
  await withStorage(async (storage, path) => {
    await storage.load();
    await storage.append(commands(1, 10, 1), HARD_STATE);
    await storage.saveSnapshot(snapshotAt(20, 2, patternBytes(10, 1)), { discardLog: true });
    let state = await storage.load();
    assert.deepEqual(state.snapshot?.index, 20);
    assert.deepEqual(state.entries, []);
    assert.deepEqual(await storedKeys(path, ["log"]), []);
    await storage.append(commands(21, 22, 2), undefined);
    // A leader's snapshot inside the log still discards what follows it.
    await storage.saveSnapshot(snapshotAt(21, 2, patternBytes(10, 2)), { discardLog: true });
    state = await storage.load();
    assert.equal(state.snapshot?.index, 21);
    assert.deepEqual(state.entries, []);
  });
});

Deno.test("DenoKvStorage writes a large snapshot over several commits and drops the old one", async () => {
  await withStorage(async (storage, path) => {
    await storage.load();
    await storage.append(commands(1, 4, 1), HARD_STATE);
    const first = patternBytes(2 * 1024 * 1024, 1);
    await storage.saveSnapshot(snapshotAt(2, 1, first), { discardLog: false });
    assert.deepEqual((await storage.loadSnapshot())?.data, first);
    const second = patternBytes(100_000, 2);
    await storage.saveSnapshot(snapshotAt(3, 1, second), { discardLog: false });
    assert.deepEqual(await storage.loadSnapshot(), snapshotAt(3, 1, second));
    assert.deepEqual(await storedKeys(path, ["snap"]), ["snap/2/0", "snap/2/1"]);
  });
});

Deno.test("DenoKvStorage reports a corrupt log record with StorageError", async () => {
  await withStorage(async (storage, path) => {
    await storage.load();
    await storage.append(commands(1, 5, 1), HARD_STATE);
    await storage.close();
    const kv = await Deno.openKv(path);
    await kv.set(["log", 3], new Uint8Array([0x92, 0x01, 0xc1]));
    kv.close();
    await reopen(path, async (again) => {
      await assert.rejects(again.load(), (error: unknown) => {
        assert(error instanceof StorageError);
        assert.match(error.message, /^Corrupt raft log record at index 3 in Deno KV: /);
        return true;
      });
    });
  });
});

Deno.test("DenoKvStorage reports a missing record, a wrong index and a corrupt meta", async () => {
  await withStorage(async (storage, path) => {
    await storage.load();
    // One append per entry: one record per entry.
    for (let index = 1; index <= 5; index++) {
      await storage.append(commands(index, index, 1), HARD_STATE);
    }
    await storage.close();
    const kv = await Deno.openKv(path);
    const four = await kv.get(["log", 4]);
    await kv.delete(["log", 4]);
    kv.close();
    await reopen(path, async (again) => {
      await assert.rejects(again.load(), /index 4 in Deno KV: the record is missing/);
    });
    const kv2 = await Deno.openKv(path);
    await kv2.set(["log", 5], four.value);
    kv2.close();
    await reopen(path, async (again) => {
      await assert.rejects(again.load(), /index 5 in Deno KV: it holds index 4/);
    });
    const kv3 = await Deno.openKv(path);
    await kv3.set(["log", 4], four.value);
    await kv3.set(["meta", "raft"], "not bytes");
    kv3.close();
    await reopen(path, async (again) => {
      await assert.rejects(again.load(), StorageError);
      await assert.rejects(
        again.load(),
        /^StorageError: Corrupt meta record in Deno KV: it is not bytes$/,
      );
    });
  });
});

Deno.test("DenoKvStorage reports an entry stored under the wrong index", async () => {
  await withStorage(async (storage, path) => {
    await storage.load();
    await storage.append(commands(1, 3, 1), HARD_STATE);
    await storage.close();
    const kv = await Deno.openKv(path);
    const one = await kv.get(["log", 1]);
    await kv.set(["log", 2], one.value);
    kv.close();
    await reopen(path, async (again) => {
      await assert.rejects(again.load(), /index 2 in Deno KV: it holds index 1/);
    });
  });
});

Deno.test("DenoKvStorage reports a corrupt snapshot with StorageError", async () => {
  await withStorage(async (storage, path) => {
    await storage.load();
    await storage.append(commands(1, 3, 1), HARD_STATE);
    await storage.saveSnapshot(snapshotAt(2, 1, patternBytes(100, 1)), { discardLog: false });
    await storage.close();
    const kv = await Deno.openKv(path);
    await kv.set(["snap", 1, 0], patternBytes(100, 2));
    kv.close();
    await reopen(path, async (again) => {
      await assert.rejects(again.loadSnapshot(), /does not match its length and hash/);
    });
  });
});

Deno.test("DenoKvStorage goes on appending while a large snapshot is being saved", async () => {
  await withStorage(async (storage) => {
    await storage.load();
    await storage.append(commands(1, 10, 1), HARD_STATE);
    const data = patternBytes(3 * 1024 * 1024, 3);
    const saving = storage.saveSnapshot(snapshotAt(8, 1, data), { discardLog: false });
    const reading = storage.loadSnapshot();
    for (let index = 11; index <= 30; index++) {
      await storage.append([command(index, 1)], undefined);
    }
    await saving;
    assert.equal(await reading, undefined, "the read began before the switch");
    const state = await storage.load();
    assert.equal(state.snapshot?.index, 8);
    assert.deepEqual(state.entries, commands(9, 30, 1));
    assert.deepEqual((await storage.loadSnapshot())?.data, data);
  });
});

/** A reader over `pieces` that counts the pieces taken and records whether it was closed. */
function piecesReader(pieces: Uint8Array[], options: { failAt?: number } = {}) {
  const state = { taken: 0, closed: false };
  const reader: SnapshotReader = {
    next: () => {
      if (state.taken === options.failAt) throw new Error("the state machine failed");
      return pieces[state.taken++];
    },
    close: () => state.closed = true,
  };
  return { reader, state };
}

Deno.test("DenoKvStorage saveSnapshotFrom() stores the pieces as one image while appends go on", async () => {
  await withStorage(async (storage, path) => {
    await storage.load();
    await storage.append(commands(1, 10, 1), HARD_STATE);
    // Pieces smaller and larger than a chunk, and an empty one.
    const pieces = [7, 200_000, 0, 61_440, 1, 1_500_000].map((n, i) => patternBytes(n, i));
    const { reader, state } = piecesReader(pieces);
    const saving = storage.saveSnapshotFrom(snapshotAt(6, 1, new Uint8Array()).metadata, reader);
    // Appends go on between the commits of chunks.
    for (let index = 11; index <= 20; index++) {
      await storage.append([command(index, 1)], undefined);
    }
    const image = joinChunks(pieces);
    assert.equal(await saving, image.length);
    assert.equal(state.closed, true);
    assert.deepEqual(await storage.loadSnapshot(), snapshotAt(6, 1, image));
    const loaded = await storage.load();
    assert.equal(loaded.snapshot?.index, 6);
    assert.deepEqual(loaded.entries, commands(7, 20, 1));
    assert.equal(
      (await storedKeys(path, ["snap"])).length,
      33,
      "each piece in chunks of CHUNK_BYTES",
    );
  });
});

Deno.test("DenoKvStorage saveSnapshotFrom() keeps the old snapshot when the reader fails", async () => {
  await withStorage(async (storage, path) => {
    await storage.load();
    await storage.append(commands(1, 10, 1), HARD_STATE);
    const old = patternBytes(100_000, 9);
    await storage.saveSnapshot(snapshotAt(3, 1, old), { discardLog: false });
    const pieces = [patternBytes(900_000, 1), patternBytes(900_000, 2), patternBytes(10, 3)];
    const { reader, state } = piecesReader(pieces, { failAt: 2 });
    await assert.rejects(
      storage.saveSnapshotFrom(snapshotAt(8, 1, new Uint8Array()).metadata, reader),
      /the state machine failed/,
    );
    assert.equal(state.closed, true);
    assert.deepEqual(await storage.loadSnapshot(), snapshotAt(3, 1, old));
    // The next save clears the chunks the failed one left behind.
    await storage.saveSnapshot(snapshotAt(8, 1, patternBytes(10, 4)), { discardLog: false });
    assert.deepEqual(await storedKeys(path, ["snap"]), ["snap/2/0"]);
  });
});

Deno.test("DenoKvStorage refuses to work after close() with StorageError", async () => {
  await withStorage(async (storage) => {
    await storage.load();
    await storage.close();
    await assert.rejects(storage.append(commands(1, 1, 1), HARD_STATE), /it is closed/);
    await assert.rejects(storage.load(), StorageError);
  });
});
