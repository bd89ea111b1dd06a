/** Votes and pre-votes (§5.2, §9.6): two nodes that time out together do not split the vote. */
import assert from "node:assert/strict";
import { asksAgainAfterRefusing, grantsVote, type VoterState } from "../../raft/election.ts";
import type { Message } from "../../raft/mod.ts";
import { TestCluster } from "./_cluster.ts";

type VoteRequest = Extract<Message, { type: "vote" }>;

function voter(fields: Partial<VoterState> = {}): VoterState {
  return {
    id: "b",
    role: "follower",
    term: 3,
    vote: null,
    leaderId: null,
    lastLogIndex: 10,
    lastLogTerm: 3,
    ...fields,
  };
}

function preVote(from: string, lastLogIndex: number, lastLogTerm = 3): VoteRequest {
  return {
    type: "vote",
    from,
    to: "b",
    term: 4,
    pre: true,
    lastLogIndex,
    lastLogTerm,
    transfer: false,
  };
}

Deno.test("a follower grants a pre-vote to a log as up to date as its own, whoever asks", () => {
  assert.equal(grantsVote(voter(), preVote("a", 10)), true);
  assert.equal(grantsVote(voter(), preVote("c", 10)), true);
  assert.equal(grantsVote(voter(), preVote("c", 9)), false, "a shorter log");
});

Deno.test("a pre-candidate grants a pre-vote only to one that beats it: a better log, or a smaller id", () => {
  const asking = voter({ role: "preCandidate" });
  assert.equal(grantsVote(asking, preVote("a", 10)), true, "same log, smaller id");
  assert.equal(grantsVote(asking, preVote("c", 10)), false, "same log, larger id");
  assert.equal(grantsVote(asking, preVote("c", 11)), true, "longer log");
  assert.equal(grantsVote(asking, preVote("c", 5, 4)), true, "later last term");
  assert.equal(grantsVote(asking, preVote("a", 9)), false, "shorter log");
});

Deno.test("a node that refused a pre-vote asks for its own at once, unless a leader's lease holds", () => {
  const timing = { electionElapsed: 12, electionTimeoutTicks: 10 };
  const refusedFor = preVote("c", 10);
  assert.equal(
    asksAgainAfterRefusing({ ...voter({ role: "preCandidate" }), ...timing }, refusedFor),
    true,
  );
  assert.equal(
    asksAgainAfterRefusing({ ...voter({ leaderId: "a" }), ...timing }, preVote("c", 9)),
    true,
  );
  const inLease = { ...voter({ leaderId: "a" }), electionElapsed: 3, electionTimeoutTicks: 10 };
  assert.equal(asksAgainAfterRefusing(inLease, preVote("c", 9)), false, "the leader is heard");
  assert.equal(
    asksAgainAfterRefusing({ ...voter({ role: "candidate" }), ...timing }, refusedFor),
    false,
    "a candidate already stands",
  );
  assert.equal(
    asksAgainAfterRefusing({ ...voter(), ...timing }, { ...refusedFor, pre: false }),
    false,
    "only pre-votes",
  );
  assert.equal(
    asksAgainAfterRefusing({ ...voter({ role: "preCandidate" }), ...timing }, preVote("a", 10)),
    false,
    "one that beats it is granted, not refused",
  );
});

Deno.test("when the leader is gone, a new one is elected within one election timeout, for every seed", () => {
  // Election timeouts are drawn from 10 values (10 + [0, 10) ticks): among these seeds some
  // followers draw the same one and campaign in the same tick.
  for (let seed = 1; seed <= 60; seed++) {
    const cluster = new TestCluster(["a", "b", "c"], seed);
    const old = cluster.electLeader().core.id;
    cluster.cut = (from, to) => from === old || to === old;
    let ticks = 0;
    while (ticks < 100) {
      cluster.tick();
      ticks++;
      const leader = [...cluster.nodes.values()].find((n) =>
        n.core.role === "leader" && n.core.id !== old
      );
      if (leader !== undefined) break;
    }
    assert(ticks <= 20, `seed ${seed}: a new leader after ${ticks} ticks`);
  }
});
