import assert from "node:assert/strict";
import { fullCollection, mallocTrim, releaseSnapshotMemory } from "../../http/memory_release.ts";
import type { NodeCounters } from "../../raft/mod.ts";
import { noopLogger } from "../../raft/mod.ts";

function countersWith(
  snapshotsTaken: number,
  snapshotsInstalled: number,
  lastSnapshotBytes = 100,
): NodeCounters {
  return { snapshotsTaken, snapshotsInstalled, lastSnapshotBytes } as NodeCounters;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls until `condition` holds; a slow machine only makes it wait longer. */
async function until(condition: () => boolean, what: string): Promise<void> {
  for (let waitedMs = 0; !condition(); waitedMs += 5) {
    if (waitedMs > 20_000) throw new Error(`Timed out waiting for ${what}`);
    await sleep(5);
  }
}

Deno.test("fullCollection() gives V8's full collection without --expose-gc on the command line", () => {
  const collect = fullCollection();
  assert(collect !== undefined);
  collect();
  assert.equal("gc" in globalThis, false, "the main context keeps no gc global");
});

Deno.test("releaseSnapshotMemory() collects at start and after each large snapshot only", async () => {
  let counters = countersWith(0, 0);
  let collections = 0;
  let trims = 0;
  const stop = releaseSnapshotMemory({
    counters: () => counters,
    logger: noopLogger,
    collect: () => collections++,
    trim: () => trims++,
    checkMs: 5,
    snapshotBytesMin: 100,
  });
  try {
    assert.equal(collections, 1, "one collection for the snapshot restored at start");
    await sleep(30);
    assert.equal(collections, 1, "no snapshot, no collection");
    counters = countersWith(1, 0);
    await until(() => collections === 2, "the collection after a snapshot taken");
    counters = countersWith(1, 1);
    await until(() => collections === 3, "the collection after a snapshot installed");
    counters = countersWith(2, 1, 99);
    await sleep(30);
    counters = countersWith(3, 1, 99);
    await sleep(30);
    assert.equal(collections, 3, "small snapshots are left to V8");
  } finally {
    stop();
  }
  counters = countersWith(5, 5);
  await sleep(30);
  assert.equal(collections, 3, "stopped: no more collections");
  assert.equal(trims, 3, "malloc gives back what each collection freed");
});

Deno.test("releaseSnapshotMemory() does not collect at start without a large snapshot", () => {
  let collections = 0;
  const stop = releaseSnapshotMemory({
    counters: () => countersWith(0, 0, 0),
    logger: noopLogger,
    collect: () => collections++,
  });
  stop();
  assert.equal(collections, 0);
});

Deno.test("mallocTrim() is glibc's on Linux and absent elsewhere", () => {
  const trim = mallocTrim();
  if (Deno.build.os !== "linux") return assert.equal(trim, undefined);
  assert(trim !== undefined, "glibc's malloc_trim under -A");
  trim();
});

Deno.test("releaseSnapshotMemory() gives malloc memory back now and then, with a large state only", async () => {
  let counters = countersWith(1, 0, 0);
  let trims = 0;
  const stop = releaseSnapshotMemory({
    counters: () => counters,
    logger: noopLogger,
    collect: () => {},
    trim: () => trims++,
    checkMs: 5,
    trimIntervalMs: 20,
    snapshotBytesMin: 100,
  });
  try {
    await sleep(100);
    assert.equal(trims, 0, "a small state is left alone");
    counters = countersWith(1, 0, 100);
    await until(() => trims >= 2, "two trims between snapshots");
  } finally {
    stop();
  }
});

Deno.test("releaseSnapshotMemory() holds a leader's collection while writes commit, a follower's not", async () => {
  let leader = true;
  let writing = true;
  let committed = 0;
  let snapshots = 0;
  let collections = 0;
  // While `writing`, every look at the counters finds another write committed.
  const counters = () =>
    ({
      ...countersWith(snapshots, 0),
      proposalsCommitted: writing ? ++committed : committed,
    }) as NodeCounters;
  const stop = releaseSnapshotMemory({
    counters,
    logger: noopLogger,
    collect: () => collections++,
    trim: undefined,
    checkMs: 5,
    snapshotBytesMin: 100,
    isLeader: () => leader,
  });
  try {
    assert.equal(collections, 1, "the collection at start");
    snapshots = 1;
    await sleep(60);
    assert.equal(collections, 1, "no collection while the leader is busy");
    writing = false;
    await until(() => collections === 2, "the leader's collection once writes stop");
    leader = false;
    writing = true;
    snapshots = 2;
    await until(() => collections === 3, "a follower's collection, writes or not");
  } finally {
    stop();
  }
});
