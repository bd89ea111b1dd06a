import assert from "node:assert/strict";
import { MemoryStorage, RaftCore, validateRaftConfig, XorShiftPrng } from "../../raft/mod.ts";
import { TestCluster } from "./_cluster.ts";

const encoder = new TextEncoder();

Deno.test("a 3-node cluster elects one leader and commits a proposal on all nodes (§5.2, §5.3)", () => {
  const cluster = new TestCluster(["a", "b", "c"]);
  const leader = cluster.electLeader();
  assert.equal([...cluster.nodes.values()].filter((n) => n.core.role === "leader").length, 1);
  const index = leader.core.propose(encoder.encode("x=1"));
  cluster.settle();
  cluster.tick(2);
  for (const node of cluster.nodes.values()) {
    assert(node.core.commitIndex >= index, `${node.core.id} commits ${index}`);
    assert.deepEqual(node.applied.map((d) => new TextDecoder().decode(d)), ["x=1"]);
  }
});

Deno.test("a single-node cluster elects itself and commits alone", () => {
  const cluster = new TestCluster(["solo"]);
  const leader = cluster.electLeader();
  leader.core.propose(encoder.encode("v"));
  cluster.settle();
  assert.equal(leader.applied.length, 1);
});

Deno.test("a leader cut off from the majority steps down by CheckQuorum (§6.2)", () => {
  const cluster = new TestCluster(["a", "b", "c"]);
  const leader = cluster.electLeader();
  const id = leader.core.id;
  cluster.cut = (from, to) => from === id || to === id;
  cluster.tick(40);
  assert.notEqual(leader.core.role, "leader");
  const newLeader = cluster.electLeader();
  assert.notEqual(newLeader.core.id, id);
});

Deno.test("ReadIndex answers with the commit index once a quorum confirms (§6.4)", () => {
  const cluster = new TestCluster(["a", "b", "c"]);
  const leader = cluster.electLeader();
  leader.core.propose(encoder.encode("x"));
  cluster.settle();
  leader.core.readIndex(7);
  cluster.settle();
  assert.deepEqual(leader.reads.map((r) => r.readId), [7]);
  assert.equal(leader.reads[0].index, leader.core.commitIndex);
});

Deno.test("leadership transfer hands over to the named voter", () => {
  const cluster = new TestCluster(["a", "b", "c"]);
  const leader = cluster.electLeader();
  const target = [...cluster.nodes.keys()].find((id) => id !== leader.core.id)!;
  leader.core.transferLeadership(target);
  cluster.settle();
  cluster.tick(3);
  assert.equal(cluster.node(target).core.role, "leader");
});

Deno.test("a learner is added, catches up, is promoted, and the leader can remove itself", () => {
  const cluster = new TestCluster(["a", "b", "c"]);
  const leader = cluster.electLeader();
  cluster.tick(2);
  leader.core.propose(encoder.encode("before d"));
  leader.core.proposeMembershipChange({ type: "addLearner", id: "d", url: "http://d" });
  const storage = new MemoryStorage();
  const config = validateRaftConfig({ id: "d", prng: new XorShiftPrng(99) });
  const d = { core: new RaftCore(config, storage.loadSync()), storage, applied: [], reads: [] };
  cluster.nodes.set("d", d);
  cluster.settle();
  cluster.tick(5);
  assert.equal(d.core.commitIndex, leader.core.commitIndex, "the learner caught up");
  assert.equal(d.applied.length, 1, "and applied what was written before it joined");
  assert.equal(leader.core.confState().members.find((m) => m.id === "d")?.voter, true, "promoted");
  const oldLeader = leader.core.id;
  leader.core.proposeMembershipChange({ type: "remove", id: oldLeader });
  cluster.settle();
  cluster.tick(5);
  assert.notEqual(leader.core.role, "leader", "the removed leader stepped down");
  const next = cluster.electLeader();
  assert.notEqual(next.core.id, oldLeader);
  assert.equal(next.core.confState().members.some((m) => m.id === oldLeader), false);
});

Deno.test("a read confirmed just before its leader steps down is still answered; one not yet confirmed fails", () => {
  const cluster = new TestCluster(["a", "b", "c"]);
  const leader = cluster.electLeader();
  leader.core.propose(encoder.encode("x"));
  cluster.settle();
  leader.core.readIndex(7);
  // By hand: the leader's heartbeat round goes out, and both answers come back.
  const heartbeats = cluster.runReady(leader).filter((message) => message.type === "heartbeat");
  const answers = heartbeats.flatMap((message) => {
    const follower = cluster.node(message.to);
    follower.core.step(message);
    return cluster.runReady(follower);
  });
  leader.core.readIndex(8); // asked after the round went out: it needs a round of its own
  for (const answer of answers) leader.core.step(answer);
  // Before its next Ready, a message of a higher term makes it a follower.
  leader.core.step({ ...answers[0], term: answers[0].term + 1 });
  assert.equal(leader.core.role, "follower");
  const after = leader.core.ready();
  // Read 7 was confirmed while it led: the commit index then is still a correct answer.
  assert.deepEqual(after.readStates, [{ readId: 7, index: leader.core.commitIndex }]);
  assert.deepEqual(after.readFailures.map((failure) => failure.readId), [8]);
});
