import { neverSent } from "./_harness.ts";
import { seededRandom } from "../linearizability/history.ts";
/**
 * Jepsen-style: concurrent clients run set, linearizable get, cas and delete on a few keys
 * through random nodes of a real 3-node cluster while the leader is SIGKILLed and restarted,
 * and while a partition isolates a leader and heals. Every operation is recorded with its
 * invoke and complete times, and the history must be linearizable.
 *
 * Replay the same operation mix with RAFTKV_SEED=<seed> (timings still differ run to run).
 */
import assert from "node:assert/strict";
import { RaftkvClient, UnavailableError } from "../../http/mod.ts";
import { sleep } from "./_harness.ts";
import { type CutMode, ProxiedCluster } from "./_proxy.ts";
import { checkHistory } from "../linearizability/checker.ts";
import {
  describeOperation,
  HistoryRecorder,
  type Operation,
  type OpInput,
} from "../linearizability/history.ts";

// deno-lint-ignore no-console
const print = console.log;

const CLIENTS = 12;
const KEYS = ["k0", "k1", "k2", "k3"];
const RUN_MS = 22_000;
/** The server's deadline for a client request, and the client's own, a little longer. */
const REQUEST_TIMEOUT_MS = 2_000;
const CLIENT_TIMEOUT_MS = 3_000;
/** When the nemesis acts, in ms after the clients start. */
const KILL_AT_MS = 3_000;
const RESTART_AT_MS = 6_500;
const PARTITION_AT_MS = 11_000;
const HEAL_AT_MS = 16_000;
const SAMPLE_INTERVAL_MS = 250;

interface RunState {
  cluster: ProxiedCluster;
  recorder: HistoryRecorder;
  /** Clients by node: one server each, so nothing is retried elsewhere behind our back. */
  clients: RaftkvClient[];
  /** The last value seen per key, to give CAS a fair chance of succeeding. */
  lastSeen: Map<string, string | null>;
  endMs: number;
  unexpected: number[];
  events: string[];
  startMs: number;
}

async function runOne(run: RunState, client: number, random: () => number, n: number) {
  const key = KEYS[Math.floor(random() * KEYS.length)];
  const server = run.clients[Math.floor(random() * run.clients.length)];
  const roll = random();
  const value = `c${client}-${n}`;
  const seen = run.lastSeen.get(key) ?? null;
  const input: OpInput = roll < 0.4
    ? { type: "get" }
    : roll < 0.65
    ? { type: "set", value }
    : roll < 0.9
    ? { type: "cas", expected: random() < 0.85 ? seen : null, value }
    : { type: "delete" };
  const id = run.recorder.invoke(client, key, input);
  try {
    const answer = await call(server, key, input, run.unexpected);
    if (answer === "refused") run.recorder.fail(id);
    else if (answer === "unknown") run.recorder.indeterminate(id);
    else {
      run.recorder.complete(id, answer.output);
      if (answer.seen !== undefined) run.lastSeen.set(key, answer.seen);
    }
  } catch (error) {
    if (neverSent(error)) run.recorder.fail(id);
    else if (error instanceof UnavailableError) run.recorder.indeterminate(id);
    else throw error;
  }
}

type Answer =
  | "refused"
  | "unknown"
  | { output: NonNullable<Operation["completion"]>["output"]; seen?: string | null };

/** Maps the HTTP answer to the history: 503 did not happen; 504 and the rest are unknown. */
async function call(
  server: RaftkvClient,
  key: string,
  input: OpInput,
  unexpected: number[],
): Promise<Answer> {
  switch (input.type) {
    case "get": {
      const response = await server.get(key, { consistency: "linearizable" });
      if (response.status === 200 || (response.status === 404 && response.body.key === key)) {
        return { output: { type: "get", value: response.value }, seen: response.value };
      }
      return response.status === 503 ? "refused" : unexpectedOr(unexpected, response.status);
    }
    case "set": {
      const response = await server.set(key, input.value);
      if (response.status === 200) return { output: { type: "set" }, seen: input.value };
      return response.status === 503 ? "refused" : unexpectedOr(unexpected, response.status);
    }
    case "cas": {
      const response = await server.cas(key, input.expected, input.value);
      if (response.status === 200) return { output: { type: "cas", ok: true }, seen: input.value };
      if (response.status === 409) {
        return {
          output: { type: "cas", ok: false, current: response.current },
          seen: response.current,
        };
      }
      return response.status === 503 ? "refused" : unexpectedOr(unexpected, response.status);
    }
    case "delete": {
      const response = await server.delete(key);
      if (response.status === 200) {
        return { output: { type: "delete", deleted: response.deleted }, seen: null };
      }
      return response.status === 503 ? "refused" : unexpectedOr(unexpected, response.status);
    }
  }
}

/** 504 (and a 500 "storage failure, outcome unknown") are unknown outcomes; others are odd. */
function unexpectedOr(unexpected: number[], status: number): Answer {
  if (status !== 504 && status !== 500) unexpected.push(status);
  return "unknown";
}

async function clientLoop(run: RunState, client: number, seed: number): Promise<void> {
  const random = seededRandom(seed * 1_000 + client);
  for (let n = 0; performance.now() < run.endMs && n < 100_000; n++) {
    await runOne(run, client, random, n);
    await sleep(random() * 20);
  }
}

function note(run: RunState, event: string): void {
  run.events.push(`${((performance.now() - run.startMs) / 1000).toFixed(1)}s ${event}`);
}

/** Kills the leader and brings it back; later isolates the leader and heals. */
async function nemesis(run: RunState, cutMode: CutMode): Promise<void> {
  const at = (ms: number) => sleep(Math.max(0, run.startMs + ms - performance.now()));
  const { cluster } = run;
  await at(KILL_AT_MS);
  const victim = await cluster.leader({ timeoutMs: 10_000 });
  await victim.kill();
  note(run, `SIGKILL leader ${cluster.ids[cluster.indexOf(victim)]}`);
  await at(RESTART_AT_MS);
  victim.start();
  note(run, `restart ${cluster.ids[cluster.indexOf(victim)]}`);
  await at(PARTITION_AT_MS);
  const isolated = await cluster.leader({ timeoutMs: 10_000 });
  cluster.mesh.isolate(cluster.indexOf(isolated), cutMode);
  note(run, `isolate leader ${cluster.ids[cluster.indexOf(isolated)]} (${cutMode})`);
  await at(HEAL_AT_MS);
  cluster.mesh.healAll();
  note(run, "heal");
}

/** Samples every node's /status; returns the terms in which some node was seen leading. */
async function watchLeaders(run: RunState): Promise<Set<number>> {
  const terms = new Set<number>();
  while (performance.now() < run.endMs) {
    const statuses = await Promise.all(
      run.cluster.nodes.filter((node) => node.running).map((node) =>
        node.status().catch(() => undefined)
      ),
    );
    for (const status of statuses) {
      if (status?.role === "leader") terms.add(Number(status.term));
    }
    await sleep(SAMPLE_INTERVAL_MS);
  }
  return terms;
}

/** A final linearizable read of every key through the leader, recorded like the rest. */
async function finalReads(run: RunState): Promise<void> {
  const leader = await run.cluster.leader({ timeoutMs: 20_000 });
  const server = new RaftkvClient({ servers: [leader.url], timeoutMs: CLIENT_TIMEOUT_MS });
  for (const key of KEYS) {
    const id = run.recorder.invoke(CLIENTS, key, { type: "get" });
    const answer = await call(server, key, { type: "get" }, run.unexpected);
    assert.ok(typeof answer === "object", `final read of ${key} failed: ${answer}`);
    run.recorder.complete(id, answer.output);
  }
}

Deno.test({
  name: "a history of concurrent clients through a leader kill and a partition is linearizable",
  async fn() {
    const seed = Number(Deno.env.get("RAFTKV_SEED") ?? Math.floor(Math.random() * 1_000_000));
    const testStartMs = performance.now();
    const cluster = await ProxiedCluster.start(3, {
      extraArgs: ["--request-timeout-ms", String(REQUEST_TIMEOUT_MS)],
    });
    const startMs = performance.now();
    const run: RunState = {
      cluster,
      recorder: new HistoryRecorder(),
      clients: cluster.nodes.map((node) =>
        new RaftkvClient({ servers: [node.url], timeoutMs: CLIENT_TIMEOUT_MS })
      ),
      lastSeen: new Map(),
      endMs: startMs + RUN_MS,
      unexpected: [],
      events: [],
      startMs,
    };
    let history: Operation[] = [];
    try {
      const watching = watchLeaders(run);
      // allSettled: a failing nemesis must not leave clients running into the cleanup.
      const outcomes = await Promise.allSettled([
        // Odd seeds reset the cut links' connections, even ones silently drop their bytes.
        nemesis(run, seed % 2 === 1 ? "reset" : "blackhole"),
        ...Array.from({ length: CLIENTS }, (_, client) => clientLoop(run, client, seed)),
      ]);
      const leaderTerms = await watching;
      for (const outcome of outcomes) if (outcome.status === "rejected") throw outcome.reason;
      cluster.mesh.healAll();
      await cluster.converged(30_000);
      await finalReads(run);
      history = run.recorder.operations();

      const checkStartMs = performance.now();
      const result = checkHistory(history, { timeMaxMs: 30_000 });
      const checkMs = performance.now() - checkStartMs;
      const { ok, failed, indeterminate } = run.recorder.counts;
      print(
        `seed ${seed}: ${history.length} ops checked (${ok} ok, ${failed} failed, ` +
          `${indeterminate} indeterminate) from ${CLIENTS} clients on ${KEYS.length} keys; ` +
          `${Math.max(0, leaderTerms.size - 1)} leader changes (terms ${[...leaderTerms]}); ` +
          `check ${result.result} in ${checkMs.toFixed(0)} ms over ${result.states} states; ` +
          `total ${((performance.now() - testStartMs) / 1000).toFixed(1)} s; ` +
          `events: ${run.events.join(", ")}`,
      );
      if (result.result !== "ok") {
        const path = await saveHistory(history);
        const detail = result.result === "illegal" ? result.report : result.reason;
        throw new Error(
          `History is ${result.result} (seed ${seed}; history saved to ${path}):\n${detail}`,
        );
      }
      assert.deepEqual(run.unexpected, [], "unexpected HTTP statuses");
      assert.ok(ok > 200, `too few operations completed: ${ok}`);
      assert.ok(
        history.some((op) =>
          op.input.type === "cas" && op.completion?.output.type === "cas" &&
          op.completion.output.ok
        ),
        "no CAS succeeded",
      );
    } catch (error) {
      print(cluster.logs(3000));
      throw error;
    } finally {
      await cluster.destroy();
    }
  },
});

/** Keeps a failing history for the report: one operation per line, then the raw JSON. */
async function saveHistory(history: Operation[]): Promise<string> {
  const path = await Deno.makeTempFile({ prefix: "raftkv-history-", suffix: ".txt" });
  const text = history.map(describeOperation).join("\n") + "\n\n" + JSON.stringify(history);
  await Deno.writeTextFile(path, text);
  return path;
}
