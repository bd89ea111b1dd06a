import { seededRandom } from "../linearizability/history.ts";
/**
 * Crashes while snapshots are being written: a one-node cluster with --snapshot-entries 50 and
 * 40 KB values (each snapshot is several MB, written to Deno KV in many commits) takes writes
 * from concurrent clients and is SIGKILLed at random moments, again and again. Every restart
 * must succeed, and every acknowledged write must be there afterwards.
 *
 * Replay the same kill delays with RAFTKV_SEED=<seed>.
 */
import assert from "node:assert/strict";
import { freePort, httpRequest, mapConcurrent, NodeProcess, sleep, waitReady } from "./_harness.ts";

// deno-lint-ignore no-console
const print = console.log;

const KILLS = 8;
const WRITERS = 8;
/** Keys per writer: each key is written by one writer only, so its writes are ordered. */
const KEYS_PER_WRITER = 20;
const VALUE_BYTES = 40_000;
/** How long the node runs under load before the next SIGKILL: random in this range. */
const KILL_AFTER_MS = [700, 3_000];

/** What each key may hold: at least the last acknowledged write, at most the last one tried. */
interface KeyState {
  acknowledged: number;
  attempted: number;
}

function valueOf(key: string, seq: number): string {
  const head = `${key}:${seq}:`;
  return head + "v".repeat(VALUE_BYTES - head.length);
}

/** Writes until `stop` is set, each writer cycling over its own keys. */
async function writeUntil(
  node: NodeProcess,
  keys: Map<string, KeyState>,
  stop: { done: boolean },
): Promise<number> {
  let acknowledged = 0;
  await Promise.all(Array.from({ length: WRITERS }, async (_, writer) => {
    for (let n = 0; !stop.done; n++) {
      const key = `w${writer}-k${n % KEYS_PER_WRITER}`;
      const state = keys.get(key)!;
      const seq = state.attempted + 1;
      state.attempted = seq;
      const answer = await httpRequest(`${node.url}/set`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ key, value: valueOf(key, seq) }),
        timeoutMs: 10_000,
      }).catch(() => undefined);
      if (answer?.status === 200) {
        state.acknowledged = seq;
        acknowledged++;
      } else {
        await sleep(50);
      }
    }
  }));
  return acknowledged;
}

/** Every key holds its last acknowledged value or a later attempt (whose outcome is unknown). */
async function checkKeys(node: NodeProcess, keys: Map<string, KeyState>): Promise<void> {
  const problems: string[] = [];
  await mapConcurrent([...keys], 8, async ([key, state]) => {
    const answer = await httpRequest(`${node.url}/get?key=${key}`, { timeoutMs: 10_000 });
    if (answer.status === 404 && state.acknowledged === 0) return;
    const value = typeof answer.json?.value === "string" ? answer.json.value : "";
    const [name, seqText] = value.split(":", 2);
    const seq = Number(seqText);
    const ok = answer.status === 200 && name === key && value === valueOf(key, seq) &&
      seq >= state.acknowledged && seq <= state.attempted;
    if (!ok) {
      problems.push(
        `${key}: status ${answer.status}, seq ${seqText}, acknowledged ${state.acknowledged}, ` +
          `attempted ${state.attempted}`,
      );
    }
  });
  assert.deepEqual(problems, [], "acknowledged writes missing after a crash");
}

Deno.test({
  name: "SIGKILL while snapshots are written: every restart succeeds with every acknowledged write",
  async fn() {
    const seed = Number(Deno.env.get("RAFTKV_SEED") ?? Math.floor(Math.random() * 1_000_000));
    const random = seededRandom(seed);
    const dir = await Deno.makeTempDir({ prefix: "raftkv-e2e-snapcrash-" });
    const node = new NodeProcess({
      port: freePort(),
      dir,
      args: ["--snapshot-entries", "50", "--log-level", "info"],
    });
    const keys = new Map<string, KeyState>();
    for (let w = 0; w < WRITERS; w++) {
      for (let k = 0; k < KEYS_PER_WRITER; k++) {
        keys.set(`w${w}-k${k}`, { acknowledged: 0, attempted: 0 });
      }
    }
    const restartsMs: number[] = [];
    let snapshotsTaken: number;
    let acknowledged = 0;
    try {
      for (let round = 0; round <= KILLS; round++) {
        const startMs = performance.now();
        node.start();
        await waitReady(node, 30_000);
        restartsMs.push(performance.now() - startMs);
        await checkKeys(node, keys);
        if (round === KILLS) break;
        const stop = { done: false };
        const writing = writeUntil(node, keys, stop);
        const [low, high] = KILL_AFTER_MS;
        await sleep(low + random() * (high - low));
        const status = await node.status();
        await node.kill();
        stop.done = true;
        acknowledged += await writing;
        print(
          `round ${round + 1}: killed at applied ${status.appliedIndex}, snapshot ` +
            `${status.snapshotIndex} (${status.snapshotBytes} bytes), log ${status.logEntries}`,
        );
      }
      const final = await node.status();
      // The output of every run of the process, kept together.
      snapshotsTaken = (node.output.match(/snapshot taken/g) ?? []).length;
      print(
        `seed ${seed}: ${KILLS} SIGKILLs, ${acknowledged} acknowledged writes all present; ` +
          `snapshots taken: ${snapshotsTaken}; restart to /ready ms: ` +
          `${restartsMs.map((ms) => ms.toFixed(0)).join(", ")}; final snapshotIndex ` +
          `${final.snapshotIndex}, logEntries ${final.logEntries}`,
      );
      assert.ok(acknowledged > KILLS * 10, `too few writes acknowledged: ${acknowledged}`);
      assert.ok(Number(final.snapshotIndex) > 0, "snapshots were taken");
      const outcome = await httpRequest(`${node.url}/set?key=after&value=1`, { method: "POST" });
      assert.equal(outcome.status, 200);
    } catch (error) {
      print(node.output.slice(-6000));
      throw error;
    } finally {
      await node.kill();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
