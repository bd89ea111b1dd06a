/**
 * The persist-before-send checks of SafetyChecker.onSend, on hand-made disks and messages: each
 * violation the simulation relies on them to catch is caught, and the legal cases pass.
 */
import assert from "node:assert/strict";
import { type Entry, MemoryStorage, type Message } from "../../raft/mod.ts";
import { type CoreView, SafetyChecker, SafetyViolation, type SenderView } from "./invariants.ts";

function noop(index: number, term: number): Entry {
  return { type: "noop", index, term };
}

/** A follower "n1" in term 2 whose memory holds `memory` and whose disk holds `stored`. */
function sender(stored: Entry[], memory: Entry[]): SenderView {
  const storage = new MemoryStorage();
  storage.appendSync(stored, { term: 2, vote: null, commit: 0 });
  const core: CoreView = {
    role: "follower",
    term: 2,
    commitIndex: 0,
    appliedIndex: 0,
    lastIndex: () => memory.at(-1)?.index ?? 0,
    snapshotIndex: () => 0,
    entry: (index) => memory.find((entry) => entry.index === index),
  };
  return { id: "n1", storage, core };
}

function ack(matchIndex: number): Message {
  return {
    type: "appendEntriesResponse",
    from: "n1",
    to: "n2",
    term: 2,
    success: true,
    matchIndex,
    hintIndex: 0,
    hintTerm: 0,
  };
}

function voteRequest(pre: boolean): Message {
  return {
    type: "vote",
    from: "n1",
    to: "n2",
    term: 2,
    pre,
    lastLogIndex: 0,
    lastLogTerm: 0,
    transfer: false,
  };
}

/** Asserts that `check` throws a SafetyViolation whose message ends with `what`. */
function assertViolation(check: () => void, what: string): void {
  assert.throws(check, (error: unknown) => {
    assert(error instanceof SafetyViolation, `expected a SafetyViolation, got ${error}`);
    assert.equal(error.message.slice(-what.length), what);
    return true;
  });
}

function checker(): SafetyChecker {
  const checker = new SafetyChecker(7);
  checker.step = 11;
  return checker;
}

Deno.test("SafetyChecker.onSend rejects an answer acknowledging entries not yet stored", () => {
  const node = sender([noop(1, 1)], [noop(1, 1), noop(2, 2), noop(3, 2)]);
  assertViolation(
    () => checker().onSend(node, ack(3)),
    'Safety violated (seed 7, step 11, node "n1"): ' +
      "acknowledged entries up to 3 before persisting them (stored up to 1)",
  );
});

Deno.test("SafetyChecker.onSend rejects an answer acknowledging an entry the disk holds in another term", () => {
  // The log was truncated and rewritten in memory; the disk still holds the old entry at 2.
  const node = sender([noop(1, 1), noop(2, 1)], [noop(1, 1), noop(2, 2)]);
  assertViolation(
    () => checker().onSend(node, ack(2)),
    "acknowledged entry 2 of term 2 before persisting it (stored term 1)",
  );
});

Deno.test("SafetyChecker.onSend accepts answers for stored entries and for a stored snapshot", () => {
  const entries = [noop(1, 1), noop(2, 2)];
  checker().onSend(sender(entries, entries), ack(2));
  const node = sender([], []);
  node.storage.saveSnapshotSync({
    metadata: { index: 5, term: 2, confState: { members: [] } },
    data: new Uint8Array([1]),
  }, { discardLog: true });
  checker().onSend(node, ack(5));
});

Deno.test("SafetyChecker.onSend rejects a vote request before the candidate's own vote is stored", () => {
  const node = sender([], []);
  assertViolation(
    () => checker().onSend(node, voteRequest(false)),
    "asked for votes in term 2 before persisting its own vote (stored term 2, vote null)",
  );
  checker().onSend(node, voteRequest(true)); // a pre-vote promises nothing
  node.storage.appendSync([], { term: 2, vote: "n1", commit: 0 });
  checker().onSend(node, voteRequest(false));
});

Deno.test("SafetyChecker.onSend accepts a queued vote request once a later term is stored", () => {
  // A candidate that moved on to term 3 (voting for another) in the same step as its campaign
  // in term 2 sends the requests it had queued: it can never vote or win in term 2 again.
  const node = sender([], []);
  node.storage.appendSync([], { term: 3, vote: "n3", commit: 0 });
  checker().onSend(node, voteRequest(false));
  node.storage.appendSync([], { term: 1, vote: null, commit: 0 });
  assertViolation(
    () => checker().onSend(node, voteRequest(false)),
    "sent vote in term 2 before persisting it (stored 1)",
  );
});

/** A leader "n1" of term 2 whose log is `log` and whose commit index is `commitIndex`. */
function leaderCore(log: Entry[], commitIndex: number): CoreView {
  return {
    role: "leader",
    term: 2,
    commitIndex,
    appliedIndex: commitIndex,
    lastIndex: () => log.at(-1)?.index ?? 0,
    snapshotIndex: () => 0,
    entry: (index) => log.find((entry) => entry.index === index),
  };
}

function addLearner(index: number, id: string): Entry {
  return {
    type: "config",
    index,
    term: 2,
    change: { type: "addLearner", id, url: `http://${id}` },
  };
}

Deno.test("SafetyChecker.observe rejects a second membership change while the first is uncommitted", () => {
  const log = [noop(1, 2), addLearner(2, "n4"), addLearner(3, "n5")];
  assertViolation(
    () => checker().observe("n1", leaderCore(log, 1)),
    "leader of term 2 appended a membership change at 3 while entry 2 (a change or its term's " +
      "no-op) is uncommitted (commit 1)",
  );
});

Deno.test("SafetyChecker.observe rejects a membership change before the term's no-op commits", () => {
  const log = [noop(1, 1), noop(2, 2), addLearner(3, "n4")];
  assertViolation(
    () => checker().observe("n1", leaderCore(log, 1)),
    "leader of term 2 appended a membership change at 3 while entry 2 (a change or its term's " +
      "no-op) is uncommitted (commit 1)",
  );
});

Deno.test("SafetyChecker.observe accepts changes that each wait for the one before", () => {
  const check = checker();
  const log = [noop(1, 2)];
  check.observe("n1", leaderCore(log, 1));
  log.push(addLearner(2, "n4"));
  check.observe("n1", leaderCore(log, 1));
  log.push(noop(3, 2));
  check.observe("n1", leaderCore(log, 2));
  log.push(addLearner(4, "n5"));
  check.observe("n1", leaderCore(log, 3));
});
