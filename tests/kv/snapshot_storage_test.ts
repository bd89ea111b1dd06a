import assert from "node:assert/strict";
import type { Snapshot } from "../../raft/mod.ts";
import { StorageError } from "../../raft/mod.ts";
import { CHUNK_BYTES, DenoKvStorage } from "../../kv/mod.ts";
import { commands, patternBytes, withTempDir } from "./_helpers.ts";

const HARD_STATE = { term: 1, vote: null, commit: 2 };
const CONF = { members: [{ id: "n1", url: "http://127.0.0.1:1", voter: true }] };

function snapshotAt(index: number, data: Uint8Array): Snapshot {
  return { metadata: { index, term: 1, confState: CONF }, data };
}

/** A database holding a snapshot of `data` at index 2 (id 1), closed again. */
async function withSavedSnapshot(
  data: Uint8Array,
  fn: (path: string) => Promise<void>,
): Promise<void> {
  await withTempDir(async (dir) => {
    const path = `${dir}/raftkv.db`;
    const storage = await DenoKvStorage.open(path);
    await storage.load();
    await storage.append(commands(1, 3, 1), HARD_STATE);
    await storage.saveSnapshot(snapshotAt(2, data), { discardLog: false });
    await storage.close();
    await fn(path);
  });
}

async function loadSnapshotAt(path: string): Promise<Snapshot | undefined> {
  const storage = await DenoKvStorage.open(path);
  try {
    return await storage.loadSnapshot();
  } finally {
    await storage.close();
  }
}

async function assertStorageError(promise: Promise<unknown>, message: RegExp): Promise<void> {
  await assert.rejects(promise, (error) => {
    assert(error instanceof StorageError, `${error} is a StorageError`);
    assert.match(error.message, message);
    return true;
  });
}

Deno.test("DenoKvStorage reads a snapshot of many chunks into one buffer of its exact size", async () => {
  const data = patternBytes(5 * CHUNK_BYTES + 123, 7);
  await withSavedSnapshot(data, async (path) => {
    const loaded = await loadSnapshotAt(path);
    assert.deepEqual(loaded?.data, data);
    assert.equal(loaded?.data.buffer.byteLength, data.length, "no slack, no second copy");
  });
});

Deno.test("DenoKvStorage reads an empty snapshot", async () => {
  await withSavedSnapshot(new Uint8Array(0), async (path) => {
    assert.deepEqual((await loadSnapshotAt(path))?.data, new Uint8Array(0));
  });
});

Deno.test("DenoKvStorage reports a snapshot chunk longer than the recorded data", async () => {
  await withSavedSnapshot(patternBytes(2 * CHUNK_BYTES, 1), async (path) => {
    const kv = await Deno.openKv(path);
    await kv.set(["snap", 1, 1], patternBytes(CHUNK_BYTES + 1, 2));
    kv.close();
    await assertStorageError(loadSnapshotAt(path), /its data is too long/);
  });
});

Deno.test("DenoKvStorage reports a snapshot chunk shorter than the recorded data", async () => {
  await withSavedSnapshot(patternBytes(2 * CHUNK_BYTES, 1), async (path) => {
    const kv = await Deno.openKv(path);
    await kv.set(["snap", 1, 0], patternBytes(10, 2));
    kv.close();
    await assertStorageError(loadSnapshotAt(path), /does not match its length/);
  });
});

Deno.test("DenoKvStorage reports a snapshot chunk that is not bytes", async () => {
  await withSavedSnapshot(patternBytes(100, 1), async (path) => {
    const kv = await Deno.openKv(path);
    await kv.set(["snap", 1, 0], "text");
    kv.close();
    await assertStorageError(loadSnapshotAt(path), /a chunk is not bytes/);
  });
});

Deno.test("DenoKvStorage reports a snapshot whose chunks stay missing", async () => {
  await withSavedSnapshot(patternBytes(2 * CHUNK_BYTES, 1), async (path) => {
    const kv = await Deno.openKv(path);
    await kv.delete(["snap", 1, 1]);
    kv.close();
    await assertStorageError(loadSnapshotAt(path), /chunks are missing/);
  });
});
