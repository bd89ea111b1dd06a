/**
 * Figure 8 of the Raft paper (§5.4.2), step by step: why a leader must not commit an entry of
 * an earlier term by counting the servers that hold it.
 *
 * Indexes shift compared with the paper. The paper's entry of term 1 at index 1 is here the
 * five bootstrap entries of term 1 (indexes 1..5, committed everywhere), and every leader
 * appends a no-op of its term when it is elected (§8), so the entry the paper puts at index 2
 * follows that no-op: S1's term-2 no-op is at 6 and the term-2 entry of the figure at 7 (S5's
 * term-3 ones likewise). The paper's index 3, the entry of term 4 on S1, is S1's term-4 no-op
 * at 8.
 */
import assert from "node:assert/strict";
import type { Message } from "../../raft/mod.ts";
import { APPEND_BYTES_MAX } from "../../raft/limits.ts";
import { type AppliedEntry, Figure8Cluster, SERVERS } from "./_figure8.ts";

/** The paper's index 1: the last entry of term 1, committed on every server. */
const PAPER_INDEX_1 = 5;
/** The paper's index 2: S1's entry of term 2 (and S5's of term 3), after the term's no-op. */
const PAPER_INDEX_2 = 7;
/** The paper's index 3: S1's entry of term 4, its no-op. */
const PAPER_INDEX_3 = 8;

const encoder = new TextEncoder();

/**
 * The term-2 command fills one AppendEntries by itself, so the leader sends index 7 and index
 * 8 in separate messages, and S3 can receive the first without the second, as in the figure.
 */
function term2Command(): Uint8Array {
  const data = new Uint8Array(APPEND_BYTES_MAX).fill(46);
  data.set(encoder.encode("written in term 2"));
  return data;
}

function isLeaderTraffic(message: Message): boolean {
  return message.type === "appendEntries" || message.type === "heartbeat";
}

function termsAt(f: Figure8Cluster, index: number): Record<string, number> {
  return Object.fromEntries(SERVERS.map((id) => [id, f.termAt(id, index)]));
}

/** Every time a server applied the term-2 entry at the paper's index 2. */
function appliedTerm2(f: Figure8Cluster): AppliedEntry[] {
  return f.applied.filter((a) => a.index === PAPER_INDEX_2 && a.term === 2);
}

/** Runs (a), (b) and (c) of Figure 8 and checks each state against the figure. */
function figure8c(): Figure8Cluster {
  const f = new Figure8Cluster();

  // (a) S1 leads term 2 and replicates the entry at index 2 to S2 only.
  f.drop = (m) => m.from === "s1" && isLeaderTraffic(m) && m.to !== "s2";
  f.tickUntil(["s1"], () => f.core("s1").role === "leader");
  assert.equal(f.core("s1").term, 2);
  assert.equal(f.core("s1").propose(term2Command()), PAPER_INDEX_2);
  f.settle();
  assert.deepEqual(termsAt(f, PAPER_INDEX_2), { s1: 2, s2: 2, s3: 0, s4: 0, s5: 0 });
  assert.equal(f.core("s1").commitIndex, PAPER_INDEX_1, "one server besides S1 is no majority");

  // (b) S1 crashes. S5 wins term 3 with the votes of S3, S4 and itself (S2 still heard from S1
  // too recently to vote) and accepts a different entry at index 2, which nobody receives.
  f.crash("s1");
  f.drop = (m) => m.from === "s5" && isLeaderTraffic(m);
  f.tickUntil(["s5"], () => f.core("s5").role === "leader");
  assert.equal(f.core("s5").term, 3);
  assert.equal(f.core("s5").propose(encoder.encode("written in term 3")), PAPER_INDEX_2);
  f.settle();
  assert.deepEqual(termsAt(f, PAPER_INDEX_2), { s1: 2, s2: 2, s3: 0, s4: 0, s5: 3 });

  // (c) S5 crashes, S1 restarts and is elected in term 4 by S3 and S4 (they refuse it term 3,
  // in which they voted for S5). It replicates its term-2 entry at index 2 to S3; the message carrying its
  // term-4 entry to S3 is delayed, and S4 hears nothing from it. Unlike the figure, S2 also
  // takes the term-4 entry at index 3: S2's log already matches S1's up to index 2, so the
  // first append it accepts in term 4 carries index 3, and only an answer in term 4 tells the
  // new leader that S2 holds index 2.
  f.crash("s5");
  f.restart("s1");
  f.drop = (m) => m.from === "s1" && m.to === "s4" && m.type === "appendEntries";
  f.delay = (m) =>
    m.to === "s3" && m.type === "appendEntries" && m.entries.some((e) => e.term === 4) &&
    f.core("s3").termAt(m.prevLogIndex) === m.prevLogTerm;
  f.tickUntil(["s1"], () => f.core("s1").role === "leader");
  assert.equal(f.core("s1").term, 4);
  f.settle();
  assert.deepEqual(termsAt(f, PAPER_INDEX_2), { s1: 2, s2: 2, s3: 2, s4: 0, s5: 3 });
  assert.deepEqual(termsAt(f, PAPER_INDEX_3), { s1: 4, s2: 4, s3: 0, s4: 0, s5: 0 });
  return f;
}

Deno.test("a leader does not commit an entry of an earlier term by counting replicas (§5.4.2, Figure 8)", () => {
  const f = figure8c();
  const leader = f.core("s1");
  // The leader knows the term-2 entry is on a majority (S1, S2, S3)...
  assert(leader.progress("s2")!.match >= PAPER_INDEX_2, "S2 acknowledged index 2");
  assert(leader.progress("s3")!.match >= PAPER_INDEX_2, "S3 acknowledged index 2");
  // ...and still does not commit it: its own term-4 entry is on S1 and S2 only.
  assert.equal(leader.commitIndex, PAPER_INDEX_1);
  for (const id of ["s1", "s2", "s3"]) assert(f.core(id).commitIndex < PAPER_INDEX_2, id);
});

Deno.test("an entry of an earlier term stored on a majority can still be overwritten, so no server applied it (§5.4.2, Figure 8)", () => {
  const f = figure8c();
  assert.deepEqual(appliedTerm2(f), [], "no server applies the term-2 entry in (c)");
  // (d) S1 crashes; S5 restarts and is elected in term 5 with the votes of S3 and S4 (S2,
  // which holds S1's term-4 entry, does not vote for it). It overwrites index 2 with its
  // term-3 entry on every server, S1 included once it restarts.
  f.crash("s1");
  f.restart("s5");
  f.drop = () => false;
  f.delay = () => false;
  f.tickUntil(["s3", "s4", "s5"], () => f.core("s5").role === "leader");
  assert.equal(f.core("s5").term, 5);
  f.restart("s1");
  const appliedEverywhere = () =>
    SERVERS.every((id) =>
      f.applied.some((a) => a.server === id && a.index === PAPER_INDEX_2 && a.term === 3)
    );
  f.tickUntil(["s5"], appliedEverywhere);
  assert.deepEqual(termsAt(f, PAPER_INDEX_2), { s1: 3, s2: 3, s3: 3, s4: 3, s5: 3 });
  assert.deepEqual(appliedTerm2(f), [], "the overwritten entry of term 2 was never applied");
});

Deno.test("an entry of an earlier term commits together with an entry of the leader's term on a majority (§5.4.2, Figure 8)", () => {
  const f = figure8c();
  // (e) The delayed message arrives: S1's term-4 entry is on S1, S2 and S3.
  f.delay = () => false;
  f.deliverDelayed();
  assert.equal(f.termAt("s3", PAPER_INDEX_3), 4);
  assert.equal(f.core("s1").commitIndex, PAPER_INDEX_3);
  const history = f.commitHistory.get("s1")!;
  assert.deepEqual(history.slice(history.indexOf(PAPER_INDEX_1)), [PAPER_INDEX_1, PAPER_INDEX_3]);
  assert(
    f.applied.some((a) => a.server === "s1" && a.index === PAPER_INDEX_2 && a.term === 2),
    "S1 applies the term-2 entry once it is committed",
  );
});
