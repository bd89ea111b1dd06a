import assert from "node:assert/strict";
import { MemoryStorage, RaftCore, validateRaftConfig, XorShiftPrng } from "../../raft/mod.ts";

function restart(storage: MemoryStorage): RaftCore {
  const config = validateRaftConfig({ id: "a", prng: new XorShiftPrng(1) });
  return new RaftCore(config, storage.loadSync());
}

Deno.test("a core restarts from a snapshot stored ahead of its stored commit index", () => {
  // A crash between saving a received snapshot and writing the hard state leaves exactly this.
  const storage = new MemoryStorage();
  storage.appendSync([], { term: 3, vote: null, commit: 2 });
  storage.saveSnapshotSync({
    metadata: {
      index: 23,
      term: 2,
      confState: { members: [{ id: "a", url: "http://a", voter: true }] },
    },
    data: new Uint8Array([1]),
  }, { discardLog: true });
  const core = restart(storage);
  assert.equal(core.commitIndex, 23, "a snapshot holds only committed entries");
  assert.equal(core.appliedIndex, 23);
  assert.equal(core.lastIndex(), 23);
  assert.equal(core.term, 3);
});

Deno.test("a core restarts with its term, vote, log and membership as persisted", () => {
  const storage = new MemoryStorage();
  storage.appendSync([
    { type: "config", index: 1, term: 1, change: { type: "addVoter", id: "a", url: "http://a" } },
    { type: "config", index: 2, term: 1, change: { type: "addVoter", id: "b", url: "http://b" } },
    { type: "noop", index: 3, term: 4 },
  ], { term: 5, vote: "b", commit: 2 });
  const core = restart(storage);
  assert.deepEqual([core.term, core.commitIndex, core.lastIndex(), core.role], [
    5,
    2,
    3,
    "follower",
  ]);
  assert.deepEqual(core.confState().members.map((m) => m.id), ["a", "b"]);
  assert.equal(core.hasReady(), true, "committed entries wait to be applied");
  const ready = core.ready();
  assert.equal(ready.hardState, undefined, "nothing new to persist");
  assert.deepEqual(ready.committedEntries.map((e) => e.index), [1, 2]);
  core.advance(ready);
});
