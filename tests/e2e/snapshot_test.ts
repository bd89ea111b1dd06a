/**
 * Snapshots end to end, on a 3-node cluster with --snapshot-entries 1000: many concurrent
 * writers through the leader while one follower is down for the whole run. The log kept stays
 * bounded and the Deno KV files level off; a restarted node serves again within seconds with
 * all the data; the follower that missed everything is brought up by a chunked InstallSnapshot.
 *
 * RAFTKV_SNAPSHOT_WRITES sets the number of writes (CI default 20,000; the figure is
 * 100,000, about two minutes on two cores).
 */
import assert from "node:assert/strict";
import {
  Cluster,
  httpRequest,
  mapConcurrent,
  type NodeProcess,
  sleep,
  waitApplied,
  waitFor,
  waitReady,
} from "./_harness.ts";

// deno-lint-ignore no-console
const print = console.log;

const WRITES = Number(Deno.env.get("RAFTKV_SNAPSHOT_WRITES") ?? 20_000);
const SNAPSHOT_ENTRIES = 1_000;
/** Writers in flight at once against the leader. */
const WRITERS = 64;
/** A bounded key space: the state (and so each snapshot) stops growing once every key exists. */
const KEYS = 2_000;
const VALUE_PAD = "x".repeat(100);
/** Written once the run is over: they make the snapshot span several 1 MiB chunks. */
const BIG_VALUES = 3;
const BIG_VALUE_BYTES = 400_000;
/** Log entries /status may report: two snapshot intervals, plus what one turn commits. */
const LOG_ENTRIES_MAX = 2 * SNAPSHOT_ENTRIES + 500;
const SAMPLE_INTERVAL_MS = 500;

function valueOf(write: number): string {
  return `v${write}-${VALUE_PAD}`;
}

/** Bytes of the node's Deno KV files (the database, its WAL and shared memory). */
async function dbBytes(node: NodeProcess): Promise<number> {
  let bytes = 0;
  for await (const entry of Deno.readDir(node.spec.dir)) {
    if (!entry.name.startsWith("raftkv.db")) continue;
    bytes += (await Deno.stat(`${node.spec.dir}/${entry.name}`).catch(() => ({ size: 0 }))).size;
  }
  return bytes;
}

interface Sample {
  writes: number;
  logEntries: number;
  dbBytes: number;
}

/** Writes WRITES values through the leader with WRITERS clients, sampling while it runs. */
async function writeAll(leader: NodeProcess): Promise<{ samples: Sample[]; ms: number }> {
  const samples: Sample[] = [];
  let acknowledged = 0;
  let writing = true;
  const sampling = (async () => {
    while (writing) {
      const status = await leader.status().catch(() => undefined);
      if (status !== undefined) {
        samples.push({
          writes: acknowledged,
          logEntries: Number(status.logEntries),
          dbBytes: await dbBytes(leader),
        });
      }
      await sleep(SAMPLE_INTERVAL_MS);
    }
  })();
  const startMs = performance.now();
  const writes = Array.from({ length: WRITES }, (_, i) => i);
  try {
    await mapConcurrent(writes, WRITERS, async (i) => {
      for (let attempt = 1;; attempt++) {
        // No request id: the dedup table would grow the state (and every snapshot) with the
        // run, and a retried set of the same value is harmless here.
        const answer = await httpRequest(`${leader.url}/set`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ key: `k${i % KEYS}`, value: valueOf(i) }),
          timeoutMs: 30_000,
        }).catch((error) => ({ status: 0, text: String(error) }));
        if (answer.status === 200) break;
        if (attempt >= 5) throw new Error(`write ${i} failed: ${answer.status} ${answer.text}`);
        await sleep(200);
      }
      acknowledged++;
    });
  } finally {
    writing = false;
    await sampling;
  }
  return { samples, ms: performance.now() - startMs };
}

/** The value write i left for key j: the last write to that key. */
function expectedValue(key: number): string {
  const last = key + KEYS * Math.floor((WRITES - 1 - key) / KEYS);
  return valueOf(last);
}

/** Every sampled key reads back its last value from `node`'s local copy. */
async function checkData(
  node: NodeProcess,
  appliedIndex: number,
  keyCount = Math.min(KEYS, WRITES),
): Promise<void> {
  await waitApplied(node, appliedIndex, 60_000);
  const status = await node.status();
  assert.equal(status.keys, keyCount, `${node.url} key count`);
  const sample = Array.from({ length: 100 }, (_, i) => (i * 97) % Math.min(KEYS, WRITES));
  await mapConcurrent(sample, 8, async (key) => {
    const answer = await httpRequest(
      `${node.url}/get?key=k${key}&consistency=stale&min_index=${appliedIndex}`,
    );
    assert.equal(answer.status, 200, `${node.url} k${key}: ${answer.text}`);
    assert.equal(answer.json?.value, expectedValue(key), `${node.url} k${key}`);
  });
}

function describeSamples(samples: Sample[]): string {
  const step = Math.max(1, Math.floor(samples.length / 12));
  return samples.filter((_, i) => i % step === 0 || i === samples.length - 1)
    .map((s) => `${s.writes}w:${s.logEntries}e/${(s.dbBytes / 1e6).toFixed(1)}MB`).join(" ");
}

Deno.test({
  name: "snapshots keep the log and the disk bounded; a lagging follower gets InstallSnapshot",
  async fn() {
    const testStartMs = performance.now();
    const cluster = await Cluster.start(3, {
      extraArgs: ["--snapshot-entries", String(SNAPSHOT_ENTRIES), "--log-level", "info"],
    });
    try {
      const leader = await cluster.leader();
      const [lagging, follower] = cluster.followers(leader);
      // Down for the whole run: it can only catch up from a snapshot.
      await lagging.stop();

      const { samples, ms } = await writeAll(leader);
      const final = await leader.status();
      const maxLogEntries = Math.max(...samples.map((s) => s.logEntries));
      print(
        `${WRITES} writes in ${(ms / 1000).toFixed(1)} s (${(WRITES / ms * 1000).toFixed(0)}/s); ` +
          `log entries kept: max ${maxLogEntries}, final ${final.logEntries}; ` +
          `snapshotIndex ${final.snapshotIndex}, snapshotBytes ${final.snapshotBytes}; ` +
          `leader db (writes:entries/size): ${describeSamples(samples)}`,
      );
      assert.ok(maxLogEntries <= LOG_ENTRIES_MAX, `log kept ${maxLogEntries} entries`);
      assert.ok(Number(final.snapshotIndex) > WRITES - LOG_ENTRIES_MAX, "a recent snapshot");
      // Disk levels off: the second half of the run adds far less than the first half's size.
      const half = samples.filter((s) => s.writes >= WRITES / 2);
      const midBytes = half[0]?.dbBytes ?? 0;
      const lastBytes = samples.at(-1)!.dbBytes;
      assert.ok(
        lastBytes < midBytes * 1.5 + 8e6,
        `db grew from ${midBytes} to ${lastBytes} bytes over the second half`,
      );

      await checkData(leader, Number(final.commitIndex));

      // Big values and a forced snapshot: what the lagging follower gets spans several chunks.
      for (let i = 0; i < BIG_VALUES; i++) {
        const answer = await httpRequest(`${leader.url}/set`, {
          method: "PUT",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ key: `big${i}`, value: "b".repeat(BIG_VALUE_BYTES) }),
        });
        assert.equal(answer.status, 200, answer.text);
      }
      const forced = await httpRequest(`${leader.url}/cluster/snapshot`, { method: "POST" });
      assert.equal(forced.status, 200, forced.text);
      const afterForced = await leader.status();
      assert.equal(afterForced.snapshotIndex, forced.json?.index, "POST /cluster/snapshot");
      assert.equal(afterForced.logEntries, 0, "the forced snapshot compacted the whole log");
      assert.ok(Number(afterForced.snapshotBytes) > BIG_VALUES * BIG_VALUE_BYTES);
      const commitIndex = Number(afterForced.commitIndex);
      const keyCount = Math.min(KEYS, WRITES) + BIG_VALUES;

      // The follower that missed the whole run is brought up by InstallSnapshot.
      const catchUpStartMs = performance.now();
      lagging.start();
      await waitApplied(lagging, commitIndex, 60_000);
      const catchUpMs = performance.now() - catchUpStartMs;
      const caughtUp = await lagging.status();
      await checkData(lagging, commitIndex, keyCount);
      const installed = /snapshot installed/.test(lagging.output);
      const receivedLine = lagging.output.split("\n").find((line) =>
        line.includes("snapshot received")
      );
      print(
        `lagging follower caught up in ${catchUpMs.toFixed(0)} ms: snapshotIndex ` +
          `${caughtUp.snapshotIndex}, logEntries ${caughtUp.logEntries}, snapshotBytes ` +
          `${caughtUp.snapshotBytes}, "snapshot installed" logged: ${installed}; ` +
          (receivedLine ?? "no chunked transfer logged"),
      );
      assert.ok(installed, "the lagging follower installed a snapshot");
      assert.match(receivedLine ?? "", /chunks=[2-9]/, "the snapshot came in several chunks");
      assert.ok(Number(caughtUp.snapshotIndex) > 0, "the lagging follower has a snapshot");
      assert.ok(Number(caughtUp.logEntries) <= LOG_ENTRIES_MAX, "its log is short");

      // A restarted node serves again within seconds, from its snapshot and short log.
      await follower.stop();
      const restartMs = performance.now();
      follower.start();
      await waitReady(follower, 30_000);
      const readyMs = performance.now() - restartMs;
      await waitFor("a linearizable read on the restarted node", async () => {
        const answer = await httpRequest(`${follower.url}/get?key=k1`, { timeoutMs: 2_000 });
        return answer.status === 200 ? true : undefined;
      }, { intervalMs: 20 });
      const servingMs = performance.now() - restartMs;
      await checkData(follower, commitIndex, keyCount);
      print(
        `restart to /ready ${readyMs.toFixed(0)} ms, to a linearizable read ${
          servingMs.toFixed(0)
        } ms; total ${((performance.now() - testStartMs) / 1000).toFixed(1)} s`,
      );
      assert.ok(servingMs < 10_000, `restarted node served after ${servingMs} ms`);
    } catch (error) {
      print(cluster.logs());
      throw error;
    } finally {
      await cluster.destroy();
    }
  },
});
