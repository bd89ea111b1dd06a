import assert from "node:assert/strict";
import { RaftLog } from "../../raft/log.ts";
import type { Entry } from "../../raft/types.ts";

function entries(from: number, terms: number[]): Entry[] {
  return terms.map((term, offset) => ({ type: "noop", index: from + offset, term }));
}

Deno.test("RaftLog appends after its last index and reports terms and bounds", () => {
  const log = new RaftLog(0, 0, []);
  log.append(entries(1, [1, 1, 2]));
  assert.equal(log.lastIndex(), 3);
  assert.equal(log.lastTerm(), 2);
  assert.equal(log.term(0), 0);
  assert.equal(log.term(2), 1);
  assert.equal(log.term(4), undefined);
  assert.throws(() => log.append(entries(5, [2])), /follow the log/);
});

Deno.test("RaftLog keeps matching entries and truncates from the first conflict (§5.3)", () => {
  const log = new RaftLog(0, 0, entries(1, [1, 1, 1, 1]));
  assert.equal(log.appendAfterMatch(entries(2, [1, 1]), 0), undefined, "all match: no change");
  assert.equal(log.lastIndex(), 4);
  assert.equal(log.appendAfterMatch(entries(3, [1, 2]), 0), 4, "conflict at 4");
  assert.deepEqual([log.term(3), log.term(4), log.lastIndex()], [1, 2, 4]);
  assert.equal(log.appendAfterMatch(entries(2, [3]), 1), 2);
  assert.equal(log.lastIndex(), 2, "the suffix after the conflict goes");
  assert.equal(log.term(2), 3);
});

Deno.test("RaftLog refuses to truncate a committed entry", () => {
  const log = new RaftLog(0, 0, entries(1, [1, 1, 1]));
  assert.throws(() => log.appendAfterMatch(entries(2, [2]), 2), /committed/);
});

Deno.test("RaftLog lowers the stable index when it truncates unstable and stable entries", () => {
  const log = new RaftLog(0, 0, entries(1, [1, 1, 1]));
  assert.equal(log.stableIndex(), 3, "loaded entries are stable");
  log.appendAfterMatch(entries(2, [2]), 1);
  assert.equal(log.stableIndex(), 1);
  assert.deepEqual(log.unstableEntries({ bytesMax: 1e9, countMax: 100 }).map((e) => e.index), [2]);
});

Deno.test("RaftLog looks up terms across a compacted prefix", () => {
  const log = new RaftLog(0, 0, entries(1, [1, 1, 2, 2, 3]));
  log.compact(3);
  assert.equal(log.snapshotIndex(), 3);
  assert.equal(log.firstIndex(), 4);
  assert.equal(log.term(3), 2, "the snapshot keeps its last term");
  assert.equal(log.term(2), undefined, "compacted away");
  assert.equal(log.term(5), 3);
  assert.equal(log.entry(3), undefined);
  assert.equal(log.entry(4)?.term, 2);
});

Deno.test("RaftLog restarts from a snapshot boundary", () => {
  const log = new RaftLog(10, 4, entries(11, [4, 5]));
  assert.equal(log.term(10), 4);
  assert.equal(log.lastIndex(), 12);
  log.restore(20, 6);
  assert.equal(log.lastIndex(), 20);
  assert.equal(log.term(20), 6);
  assert.equal(log.stableIndex(), 20);
});

Deno.test("RaftLog finds where a follower may agree by term (fast back-off)", () => {
  const log = new RaftLog(0, 0, entries(1, [1, 1, 2, 2, 4, 4]));
  assert.equal(log.findConflictByTerm(6, 3), 4, "last index with term <= 3");
  assert.equal(log.findConflictByTerm(6, 5), 6);
  assert.equal(log.findConflictByTerm(6, 0), 0);
});

Deno.test("RaftLog slices within a byte and count budget but always returns one entry", () => {
  const big: Entry[] = [1, 2, 3].map((index) => ({
    type: "command",
    index,
    term: 1,
    data: new Uint8Array(1000),
  }));
  const log = new RaftLog(0, 0, big);
  assert.equal(log.slice(1, 3, { bytesMax: 10, countMax: 10 }).length, 1);
  assert.equal(log.slice(1, 3, { bytesMax: 2200, countMax: 10 }).length, 2);
  assert.equal(log.slice(1, 3, { bytesMax: 1e9, countMax: 2 }).length, 2);
});
