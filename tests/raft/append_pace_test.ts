import assert from "node:assert/strict";
import { AppendPace, RACE_INTERVAL_TICKS } from "../../raft/append_pace.ts";
import { Progress } from "../../raft/progress.ts";
import type { Message } from "../../raft/mod.ts";
import { TestCluster } from "./_cluster.ts";

const encoder = new TextEncoder();

function appendsTo(messages: Message[], to: string) {
  return messages.filter((m): m is Extract<Message, { type: "appendEntries" }> =>
    m.type === "appendEntries" && m.to === to && m.entries.length > 0
  );
}

/**
 * A cluster timed as in production (a heartbeat every 10 ticks), its leader pipelining to every
 * follower, and the quick and the paced follower found by one write.
 */
function steadyCluster(ids: string[]) {
  const cluster = new TestCluster(ids, 1, { electionTimeoutTicks: 30, heartbeatIntervalTicks: 10 });
  const leader = cluster.electLeader();
  cluster.tick(2);
  const followers = ids.filter((id) => id !== leader.core.id);
  const probe = leader.core.propose(encoder.encode("probe"));
  cluster.settle();
  const quick = followers.filter((id) => cluster.node(id).core.lastIndex() >= probe);
  const paced = followers.filter((id) => !quick.includes(id));
  cluster.tick();
  return { cluster, leader, followers, quick, paced };
}

Deno.test("a new entry goes at once only to the follower the quorum needs; the other gets the tick's entries in one append", () => {
  const { cluster, leader, quick, paced } = steadyCluster(["a", "b", "c"]);
  assert.equal(quick.length, 1);
  cluster.delivered = [];
  const indexes = ["w=1", "w=2", "w=3"].map((command) => {
    const index = leader.core.propose(encoder.encode(command));
    cluster.settle();
    return index;
  });
  assert.equal(leader.core.commitIndex, indexes[2], "committed without a tick");
  assert.equal(appendsTo(cluster.delivered, paced[0]).length, 0, "nothing sent to the other yet");
  assert.equal(appendsTo(cluster.delivered, quick[0]).length, 3, "one append per write");

  cluster.tick(); // no heartbeat at this tick: the pace alone sends
  const appends = appendsTo(cluster.delivered, paced[0]);
  assert.equal(appends.length, 1, "the other follower gets one append");
  assert.deepEqual(appends[0].entries.map((entry) => entry.index), indexes);
  assert.equal(cluster.node(paced[0]).core.commitIndex, indexes[2], "and learns the commit");
});

Deno.test("a quick follower that stops answering is replaced at the second tick; meanwhile the ticks' appends commit", () => {
  const { cluster, leader, quick, paced } = steadyCluster(["a", "b", "c"]);
  cluster.cut = (from, to) => from === quick[0] || to === quick[0];
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
  assert.equal(cluster.node(paced[0]).core.lastIndex(), last);
});

Deno.test("a quick follower the transport reports unreachable is replaced at once", () => {
  const { cluster, leader, quick, paced } = steadyCluster(["a", "b", "c"]);
  cluster.cut = (from, to) => from === quick[0] || to === quick[0];
  const index = leader.core.propose(encoder.encode("w=1"));
  cluster.settle();
  assert(leader.core.commitIndex < index);
  leader.core.reportUnreachable(quick[0]);
  cluster.settle();
  assert.equal(leader.core.commitIndex, index, "the held follower got it without a tick");
  assert.equal(cluster.node(paced[0]).core.lastIndex(), index);
});

Deno.test("a faster follower wins the next race and becomes the quick one", () => {
  const { cluster, leader, quick, paced } = steadyCluster(["a", "b", "c"]);
  cluster.tick(RACE_INTERVAL_TICKS); // arms a race: the next new entry goes to both at once
  // The quick follower's answers are slow (here: lost): the paced one's comes first.
  cluster.cut = (from) => from === quick[0];
  cluster.delivered = [];
  const raced = leader.core.propose(encoder.encode("race"));
  cluster.settle();
  assert.equal(appendsTo(cluster.delivered, quick[0]).length, 1, "both get the race's entry");
  assert.equal(appendsTo(cluster.delivered, paced[0]).length, 1);
  assert.equal(leader.core.commitIndex, raced, "the paced follower answered first");
  cluster.cut = () => false;

  cluster.delivered = [];
  const next = leader.core.propose(encoder.encode("w=1"));
  cluster.settle();
  assert.equal(appendsTo(cluster.delivered, paced[0]).length, 1, "the winner is sent to at once");
  assert.equal(appendsTo(cluster.delivered, quick[0]).length, 0, "the old quick one is paced");
  assert.equal(leader.core.commitIndex, next);
});

Deno.test("with five voters a new entry goes at once to the two followers the quorum needs", () => {
  const { cluster, leader, followers, quick } = steadyCluster(["a", "b", "c", "d", "e"]);
  assert.equal(quick.length, 2);
  const index = leader.core.propose(encoder.encode("w=1"));
  cluster.settle();
  assert.equal(leader.core.commitIndex, index);
  const holding = followers.filter((id) => cluster.node(id).core.lastIndex() >= index);
  assert.deepEqual(holding.sort(), [...quick].sort());
  cluster.tick();
  assert(followers.every((id) => cluster.node(id).core.commitIndex >= index), "all by the tick");
});

Deno.test("only a caught-up voter outside the quick set waits for the tick", () => {
  /** A follower that acknowledged up to `match` and was sent up to `sent`. */
  const replicating = (match: number, sent: number) => {
    const progress = new Progress(match + 1);
    progress.maybeUpdate(match);
    progress.becomeReplicate();
    if (sent > match) progress.sentEntries(sent);
    return progress;
  };
  const pace = new AppendPace();
  const quick = { id: "b", voter: true, progress: replicating(8, 8) };
  const other = { id: "c", voter: true, progress: replicating(7, 8) };
  pace.tick([quick, other], true, 8);
  assert.equal(pace.holdIfPaced(quick, null), false, "the quorum's follower is sent to at once");
  assert.equal(pace.holdIfPaced(other, null), true, "the other waits");
  assert.equal(pace.holdIfPaced(other, "c"), false, "unless leadership is moving to it");
  assert.equal(pace.holdIfPaced({ ...other, voter: false }, null), false, "a learner does not");
  const probing = new Progress(5);
  assert.equal(pace.holdIfPaced({ ...other, progress: probing }, null), false, "nor a probe");
  assert.equal(pace.hasDue(), false);
  pace.tick([quick, other], true, 8);
  assert.equal(pace.hasDue(), true, "held followers are due at the tick");
  assert.deepEqual(pace.takeDue(), ["c"]);
  assert.deepEqual(pace.takeDue(), [], "once");
  pace.tick([quick, other], true, 9);
  assert.equal(
    pace.holdIfPaced(other, null),
    false,
    "nor one that lacks entries from before the tick",
  );
});
