import assert from "node:assert/strict";
import {
  bootstrapState,
  MemoryStorage,
  RaftCore,
  validateRaftConfig,
  XorShiftPrng,
} from "../../raft/mod.ts";

Deno.test("a sole voter that wins in one tick sends nothing before its new term is durable", () => {
  const storage = new MemoryStorage();
  const { entries, hardState } = bootstrapState([{ id: "a", url: "http://a", voter: true }]);
  storage.appendSync(
    [...entries, {
      type: "config",
      index: 2,
      term: 1,
      change: { type: "addLearner", id: "b", url: "http://b" },
    }],
    { ...hardState, commit: 2 },
  );
  const core = new RaftCore(
    validateRaftConfig({ id: "a", prng: new XorShiftPrng(1) }),
    storage.loadSync(),
  );
  core.tick();
  assert.equal(core.role, "leader");
  const ready = core.ready();
  assert.equal(ready.hardState?.term, core.term, "the new term is in this Ready's write");
  assert.deepEqual(ready.earlyMessages, [], "so nothing may leave before that write");
  assert(ready.messages.some((m) => m.type === "appendEntries" && m.to === "b"));
});
