import assert from "node:assert/strict";
import { AppendPace } from "../../raft/append_pace.ts";
import { Progress } from "../../raft/progress.ts";
import type { Message } from "../../raft/mod.ts";
import { TestCluster } from "./_cluster.ts";

const encoder = new TextEncoder();

function appendsTo(messages: Message[], to: string) {
  return messages.filter((m): m is Extract<Message, { type: "appendEntries" }> =>
    m.type === "appendEntries" && m.to === to && m.entries.length > 0
  );
}

/** A cluster whose leader has every follower in replicate state. */
function steadyCluster(ids: string[]) {
  const cluster = new TestCluster(ids);
  const leader = cluster.electLeader();
  cluster.tick(2);
  const followers = ids.filter((id) => id !== leader.core.id);
  return { cluster, leader, followers };
}

Deno.test("a new entry goes at once only to the follower the quorum needs; the other gets the tick's entries in one append", () => {
  const { cluster, leader, followers } = steadyCluster(["a", "b", "c"]);
  cluster.delivered = [];
  const indexes = ["w=1", "w=2", "w=3"].map((command) => {
    const index = leader.core.propose(encoder.encode(command));
    cluster.settle();
    return index;
  });
  assert.equal(leader.core.commitIndex, indexes[2], "committed without a tick");
  const holding = followers.filter((id) => cluster.node(id).core.lastIndex() >= indexes[2]);
  assert.equal(holding.length, 1, "one follower holds the entries");
  const [quick] = holding;
  const held = followers.find((id) => id !== quick)!;
  assert.equal(appendsTo(cluster.delivered, held).length, 0, "nothing sent to the other yet");
  assert.equal(appendsTo(cluster.delivered, quick).length, 3, "one append per write");

  cluster.tick();
  const appends = appendsTo(cluster.delivered, held);
  assert.equal(appends.length, 1, "the other follower gets one append");
  assert.deepEqual(appends[0].entries.map((entry) => entry.index), indexes);
  assert.equal(cluster.node(held).core.commitIndex, indexes[2], "and learns the commit");
});

Deno.test("a quick follower that stops answering is replaced at the second tick; meanwhile the ticks' appends commit", () => {
  const { cluster, leader, followers } = steadyCluster(["a", "b", "c"]);
  const first = leader.core.propose(encoder.encode("w=1"));
  cluster.settle();
  const quick = followers.find((id) => cluster.node(id).core.lastIndex() >= first)!;
  const other = followers.find((id) => id !== quick)!;
  cluster.cut = (from, to) => from === quick || to === quick;

  for (const command of ["w=2", "w=3"]) {
    const index = leader.core.propose(encoder.encode(command));
    cluster.settle();
    assert(leader.core.commitIndex < index, "waits: the quick follower is silent");
    cluster.tick();
    assert.equal(leader.core.commitIndex, index, "the tick's append to the other commits it");
  }
  const last = leader.core.propose(encoder.encode("w=4"));
  cluster.settle();
  assert.equal(leader.core.commitIndex, last, "the other follower is now sent to at once");
  assert.equal(cluster.node(other).core.lastIndex(), last);
});

Deno.test("with five voters a new entry goes at once to the two followers the quorum needs", () => {
  const { cluster, leader, followers } = steadyCluster(["a", "b", "c", "d", "e"]);
  const index = leader.core.propose(encoder.encode("w=1"));
  cluster.settle();
  assert.equal(leader.core.commitIndex, index);
  const holding = followers.filter((id) => cluster.node(id).core.lastIndex() >= index);
  assert.equal(holding.length, 2);
  cluster.tick();
  assert(followers.every((id) => cluster.node(id).core.commitIndex >= index), "all by the tick");
});

Deno.test("only a caught-up voter outside the quick set waits for the tick", () => {
  const replicating = (match: number) => {
    const progress = new Progress(match + 1);
    progress.maybeUpdate(match);
    progress.becomeReplicate();
    return progress;
  };
  const pace = new AppendPace();
  const quick = { id: "b", voter: true, progress: replicating(10) };
  const other = { id: "c", voter: true, progress: replicating(9) };
  pace.tick([quick, other], true, 8);
  assert.equal(pace.holds(quick, null), false, "the quorum's follower is sent to at once");
  assert.equal(pace.holds(other, null), true, "the other waits");
  assert.equal(pace.holds(other, "c"), false, "unless leadership is moving to it");
  assert.equal(pace.holds({ ...other, voter: false }, null), false, "a learner does not wait");
  const probing = new Progress(5);
  assert.equal(pace.holds({ ...other, progress: probing }, null), false, "nor a probe");
  pace.tick([quick, other], true, 10);
  assert.equal(pace.holds(other, null), false, "nor one that lacks entries from before the tick");
  assert.deepEqual(pace.takeDue(), ["c"], "held followers are due at the tick");
  assert.deepEqual(pace.takeDue(), [], "once");
});
