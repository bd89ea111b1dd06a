import assert from "node:assert/strict";
import { DenoKvStorage } from "../../kv/mod.ts";
import {
  command,
  commands,
  LineReader,
  patternBytes,
  spawnChild,
  storedKeys,
  withTempDir,
} from "./_helpers.ts";
import { SNAPSHOT_BYTES } from "./_storage_child.ts";

const CONF = { members: [{ id: "n1", url: "http://127.0.0.1:1", voter: true }] };

Deno.test("DenoKvStorage keeps the old snapshot when a save stopped before its switch", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/raftkv.db`;
    const old = patternBytes(200_000, 1);
    let storage = await DenoKvStorage.open(path);
    await storage.load();
    await storage.append(commands(1, 10, 1), { term: 1, vote: null, commit: 10 });
    await storage.saveSnapshot({ metadata: { index: 4, term: 1, confState: CONF }, data: old }, {
      discardLog: false,
    });
    await storage.close();
    // What a crash in the middle of the next save leaves: chunks of snapshot 2, no switch.
    const kv = await Deno.openKv(path);
    for (let chunk = 0; chunk < 6; chunk++) await kv.set(["snap", 2, chunk], patternBytes(1000, 9));
    kv.close();

    storage = await DenoKvStorage.open(path);
    const state = await storage.load();
    assert.equal(state.snapshot?.index, 4);
    assert.deepEqual(state.entries, commands(5, 10, 1));
    assert.deepEqual((await storage.loadSnapshot())?.data, old);
    // The next save clears the leftovers before it writes under the same id.
    const next = patternBytes(70_000, 2);
    await storage.saveSnapshot({ metadata: { index: 8, term: 1, confState: CONF }, data: next }, {
      discardLog: false,
    });
    assert.deepEqual((await storage.loadSnapshot())?.data, next);
    await storage.close();
    assert.deepEqual(await storedKeys(path, ["snap"]), ["snap/2/0", "snap/2/1"]);
  });
});

Deno.test("DenoKvStorage survives SIGKILL at any instant with every acked write and a whole snapshot", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/raftkv.db`;
    const acked = new Set<number>();
    // Kill at different instants after a snapshot save began: before, during, after its commits.
    for (const delayMs of [0, 4, 12, 30]) {
      const child = spawnChild("_storage_child.ts", [path]);
      const lines = new LineReader(child.stdout);
      try {
        await lines.waitFor((line) => line.startsWith("saving"));
        await lines.waitFor((line) => line.startsWith("saving"));
        await new Promise((resolve) => setTimeout(resolve, delayMs));
      } finally {
        child.kill("SIGKILL");
        await child.status;
        await lines.drain();
        await child.stderr.cancel();
      }
      for (const line of lines.lines) {
        if (line.startsWith("acked ")) acked.add(Number(line.slice(6)));
      }
      const storage = await DenoKvStorage.open(path);
      try {
        const state = await storage.load();
        const snapshot = await storage.loadSnapshot();
        assert(snapshot !== undefined && state.snapshot !== undefined);
        assert.deepEqual(snapshot.metadata, state.snapshot);
        assert.deepEqual(snapshot.data, patternBytes(SNAPSHOT_BYTES, snapshot.metadata.index));
        const first = state.snapshot.index + 1;
        state.entries.forEach((entry, i) => assert.deepEqual(entry, command(first + i, 1)));
        const lastIndex = state.entries.at(-1)?.index ?? state.snapshot.index;
        for (const index of acked) assert(index <= lastIndex, `acked entry ${index} was lost`);
        assert(state.hardState.commit >= Math.max(...acked), "the acked hard state was lost");
      } finally {
        await storage.close();
      }
    }
  });
});
