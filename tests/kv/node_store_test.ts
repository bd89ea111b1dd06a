import assert from "node:assert/strict";
import {
  checkIdentity,
  DirLockedError,
  IdentityMismatchError,
  openNodeStore,
} from "../../kv/mod.ts";
import { commands, LineReader, spawnChild, withTempDir } from "./_helpers.ts";

async function tryInChild(dir: string): Promise<{ ok: boolean; name?: string; message?: string }> {
  const child = spawnChild("_store_child.ts", ["try", dir]);
  const lines = new LineReader(child.stdout);
  await child.stderr.cancel();
  const line = await lines.waitFor((line) => line.startsWith("{"));
  await child.status;
  await lines.drain();
  return JSON.parse(line);
}

Deno.test("openNodeStore() creates the dir and keeps identity and raft state across reopen", async () => {
  await withTempDir(async (parent) => {
    const dir = `${parent}/a/b`;
    let store = await openNodeStore(dir);
    assert.equal(await store.readIdentity(), undefined);
    await store.writeIdentity({ nodeId: "n1", clusterId: "c1" });
    await store.storage.load();
    await store.storage.append(commands(1, 3, 1), { term: 1, vote: "n1", commit: 3 });
    assert((await store.dbSizeBytes()) > 0);
    await store.close();
    await store.close(); // closing twice is harmless

    store = await openNodeStore(dir);
    try {
      assert.deepEqual(await store.readIdentity(), { nodeId: "n1", clusterId: "c1" });
      assert.deepEqual((await store.storage.load()).entries, commands(1, 3, 1));
    } finally {
      await store.close();
    }
  });
});

Deno.test("checkIdentity() throws IdentityMismatchError naming both identities", () => {
  const stored = { nodeId: "n1", clusterId: "c1" };
  checkIdentity(stored, { nodeId: "n1", clusterId: "c1" });
  checkIdentity(stored, { clusterId: "c1" });
  assert.throws(() => checkIdentity(stored, { nodeId: "n2", clusterId: "c1" }), (error) => {
    assert(error instanceof IdentityMismatchError);
    assert.equal(
      error.message,
      'Cannot use this data dir: it belongs to node "n1" of cluster "c1", ' +
        'not to node "n2" of cluster "c1"',
    );
    return true;
  });
  assert.throws(() => checkIdentity(stored, { clusterId: "c2" }), /not to cluster "c2"/);
});

Deno.test("openNodeStore() refuses a dir in use by this process", async () => {
  await withTempDir(async (dir) => {
    const store = await openNodeStore(dir);
    try {
      await assert.rejects(openNodeStore(dir), (error: unknown) => {
        assert(error instanceof DirLockedError);
        assert.equal(
          error.message,
          `Cannot use data dir "${dir}": it is in use by another raftkv process (pid ${Deno.pid})`,
        );
        return true;
      });
    } finally {
      await store.close();
    }
    await (await openNodeStore(dir)).close(); // free again after close
  });
});

Deno.test("openNodeStore() in a second process fails with DirLockedError", async () => {
  await withTempDir(async (dir) => {
    const store = await openNodeStore(dir);
    try {
      const outcome = await tryInChild(dir);
      assert.equal(outcome.name, "DirLockedError");
      assert.equal(
        outcome.message,
        `Cannot use data dir "${dir}": it is in use by another raftkv process (pid ${Deno.pid})`,
      );
    } finally {
      await store.close();
    }
    assert.deepEqual(await tryInChild(dir), { ok: true });
  });
});

Deno.test("the dir lock is free again once its holder is killed with SIGKILL", async () => {
  await withTempDir(async (dir) => {
    const holder = spawnChild("_store_child.ts", ["hold", dir]);
    const lines = new LineReader(holder.stdout);
    try {
      await lines.waitFor((line) => line === "locked");
      await assert.rejects(openNodeStore(dir), (error: unknown) => {
        assert(error instanceof DirLockedError);
        assert.equal(error.pid, holder.pid);
        return true;
      });
    } finally {
      holder.kill("SIGKILL");
      assert.equal((await holder.status).signal, "SIGKILL", "the holder was alive until killed");
      await lines.drain();
      await holder.stderr.cancel();
    }
    const store = await openNodeStore(dir);
    await store.close();
  });
});

Deno.test("openNodeStore() reports a dir that cannot be created", async () => {
  await withTempDir(async (parent) => {
    await Deno.writeTextFile(`${parent}/file`, "");
    await assert.rejects(
      openNodeStore(`${parent}/file/data`),
      /^Error: Cannot create data dir ".*\/file\/data": /,
    );
  });
});
