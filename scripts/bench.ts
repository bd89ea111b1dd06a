/** `deno task bench [flags]`: raftkv's own closed-loop load generator, for users without wrk.
 * N workers, one keep-alive HTTP/1.1 connection each, send /set, /get or /cas on uniformly
 * random keys: seed every key, warm up, measure for a fixed time, then print throughput,
 * latency percentiles and errors by kind (a table, or one JSON object with --json).
 *
 * It speaks HTTP/1.1 itself over Deno.connect instead of using fetch: measured on this
 * machine, fetch at c=64 held 64 sockets but reached about a quarter of wrk's rate on the same
 * node, while a small client of our own matches wrk with a fraction of a core. */

import {
  type BenchOptions,
  type BenchReport,
  buildReport,
  formatReport,
  helpText,
  type Op,
  OPS,
  type Outcome,
  parseBenchArgs,
  PhaseStats,
  processCpuSeconds,
  type SeedReport,
  UsageError,
} from "./bench_stats.ts";
import { HttpConnection, ProtocolError } from "../http/mod.ts";

/** A worker whose server refuses connections waits this long, not to spin on a dead port. */
const NETWORK_BACKOFF_MS = 50;
const LEADER_WAIT_MS = 5_000;
const PROGRESS_INTERVAL_MS = 1_000;
/** Bounds the seeding phase even if every write were slow. */
const SEED_SECONDS_MAX = 600;
const SEED_ATTEMPTS_MAX = 3;

// ---------------------------------------------------------------------------------------------
// Requests: the same keys and values as bench/wrk/kv.lua, so that figures compare.

export function keyName(index: number, keys: number): string {
  return `k${String(index).padStart(Math.max(4, String(keys - 1).length), "0")}`;
}

/** value(K) = "vNNNN-xxx…", `valueBytes` long. Every write stores it again, so reads find
 * their key and every cas (expected = value = value(K)) succeeds. ASCII, so the length in
 * characters is the length in bytes. */
export function valueOf(index: number, valueBytes: number): string {
  const prefix = `v${String(index).padStart(4, "0")}-`;
  return prefix.length >= valueBytes
    ? prefix.slice(0, valueBytes)
    : prefix + "x".repeat(valueBytes - prefix.length);
}

export interface RequestShape {
  host: string;
  consistency: "linearizable" | "stale";
  params: "json" | "query";
}

const encoder = new TextEncoder();

/** The whole HTTP/1.1 request, to be written at once. */
export function requestBytes(op: Op, key: string, value: string, shape: RequestShape): Uint8Array {
  const head = (method: string, path: string) =>
    `${method} ${path} HTTP/1.1\r\nHost: ${shape.host}`;
  if (op === "read" || op === "stale") {
    const stale = op === "stale" || shape.consistency === "stale";
    const query = `key=${encodeURIComponent(key)}${stale ? "&consistency=stale" : ""}`;
    return encoder.encode(`${head("GET", `/get?${query}`)}\r\n\r\n`);
  }
  const path = op === "write" ? "/set" : "/cas";
  const fields: [string, string][] = op === "write"
    ? [["key", key], ["value", value]]
    : [["key", key], ["expected", value], ["value", value]];
  if (shape.params === "query") {
    const query = new URLSearchParams(fields).toString();
    return encoder.encode(`${head("POST", `${path}?${query}`)}\r\nContent-Length: 0\r\n\r\n`);
  }
  const body = encoder.encode(JSON.stringify(Object.fromEntries(fields)));
  const headText = `${head("POST", path)}\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${body.length}\r\n\r\n`;
  const headBytes = encoder.encode(headText);
  const bytes = new Uint8Array(headBytes.length + body.length);
  bytes.set(headBytes);
  bytes.set(body, headBytes.length);
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// A small HTTP/1.1 keep-alive client: one request at a time per connection.

// ---------------------------------------------------------------------------------------------
// Running: phases of closed-loop workers, one connection each.

/** One exchange that settles by `deadlineMs` at the latest (a hard stop) and by the request
 * timeout; the connection is closed if its answer did not come. */
async function timedExchange(
  connection: HttpConnection,
  request: Uint8Array,
  options: { timeoutMs: number; deadlineMs: number },
): Promise<Outcome> {
  const startMs = performance.now();
  const waitMs = Math.max(0, Math.min(options.timeoutMs, options.deadlineMs - startMs));
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<Outcome>((resolve) => {
    timer = setTimeout(() => {
      connection.close();
      resolve(waitMs < options.timeoutMs ? { kind: "cut" } : { kind: "timeout", detail: "" });
    }, waitMs);
  });
  const exchanged = connection.exchange(request).then(
    (answer): Outcome => ({ kind: "answer", ...answer }),
    (error: Error): Outcome => ({
      kind: error instanceof ProtocolError ? "protocol" : "network",
      detail: error.message ? `${error.name}: ${error.message}` : error.name,
    }),
  );
  try {
    return await Promise.race([exchanged, expired]);
  } finally {
    clearTimeout(timer);
  }
}

interface Job {
  op: Op;
  request: Uint8Array;
  /** Told how the request ended (seeding retries the writes that failed). */
  settled?: (outcome: Outcome) => void;
}

interface Pool {
  connections: HttpConnection[];
  shapes: RequestShape[];
  options: BenchOptions;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

function writeErr(text: string): void {
  Deno.stderr.writeSync(encoder.encode(text));
}

/** Runs every worker until `next` has no more jobs or the deadline passes, printing a
 * progress line on stderr each second. */
async function runPhase(
  pool: Pool,
  plan: { name: string; durationMs: number; next: (worker: number) => Job | undefined },
): Promise<{ stats: PhaseStats; elapsedMs: number }> {
  const stats = new PhaseStats();
  const startMs = performance.now();
  const deadlineMs = startMs + plan.durationMs;
  const timeoutMs = pool.options.timeoutMs;
  let lastRequests = 0;
  const progress = setInterval(() => {
    const elapsedSeconds = Math.round((performance.now() - startMs) / 1000);
    const perSecond = stats.requests - lastRequests;
    lastRequests = stats.requests;
    writeErr(
      `bench ${plan.name} ${elapsedSeconds}s: ${perSecond} req/s, ${stats.errors.total} errors\n`,
    );
  }, PROGRESS_INTERVAL_MS);
  const worker = async (index: number) => {
    const connection = pool.connections[index];
    for (let job = plan.next(index); job !== undefined; job = plan.next(index)) {
      const sentMs = performance.now();
      if (sentMs >= deadlineMs) return;
      const outcome = await timedExchange(connection, job.request, { timeoutMs, deadlineMs });
      stats.record(job.op, outcome, (performance.now() - sentMs) * 1000);
      job.settled?.(outcome);
      if (outcome.kind === "network") {
        await sleep(Math.min(NETWORK_BACKOFF_MS, deadlineMs - performance.now()));
      }
    }
  };
  try {
    await Promise.all(pool.connections.map((_, index) => worker(index)));
  } finally {
    clearInterval(progress);
  }
  return { stats, elapsedMs: Math.min(performance.now(), deadlineMs) - startMs };
}

/** Picks operations at random by weight and keys uniformly, as kv.lua does. */
function workloadJobs(pool: Pool): (worker: number) => Job {
  const { mix, keys, valueBytes } = pool.options;
  const weighted = OPS.filter((op) => mix[op] > 0);
  const total = weighted.reduce((sum, op) => sum + mix[op], 0);
  return (worker) => {
    let roll = Math.random() * total;
    const op = weighted.find((candidate) => (roll -= mix[candidate]) < 0) ?? weighted[0];
    const index = Math.floor(Math.random() * keys);
    const value = op === "write" || op === "cas" ? valueOf(index, valueBytes) : "";
    return { op, request: requestBytes(op, keyName(index, keys), value, pool.shapes[worker]) };
  };
}

/** Every key once, in order; a failed write is tried again, up to SEED_ATTEMPTS_MAX times. */
function seedJobs(pool: Pool): (worker: number) => Job | undefined {
  const { keys, valueBytes } = pool.options;
  const failed: number[] = [];
  const attempts = new Map<number, number>();
  let next = 0;
  return (worker) => {
    const index = failed.length > 0 ? failed.shift()! : next < keys ? next++ : undefined;
    if (index === undefined) return undefined;
    const value = valueOf(index, valueBytes);
    const settled = (outcome: Outcome) => {
      if (outcome.kind === "cut" || (outcome.kind === "answer" && outcome.status < 300)) return;
      const count = (attempts.get(index) ?? 1) + 1;
      attempts.set(index, count);
      if (count <= SEED_ATTEMPTS_MAX) failed.push(index);
    };
    const request = requestBytes("write", keyName(index, keys), value, pool.shapes[worker]);
    return { op: "write", request, settled };
  };
}

// ---------------------------------------------------------------------------------------------
// Finding the servers, and the whole run.

/** Any HTTP answer within `timeoutMs`, with its body parsed if it is JSON; undefined if the
 * server did not answer. */
async function probe(url: string, timeoutMs: number): Promise<{ json: unknown } | undefined> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    const text = await response.text();
    try {
      return { json: JSON.parse(text) };
    } catch {
      return { json: undefined };
    }
  } catch {
    return undefined;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

/** The servers to load: the reachable ones, or the leader alone. Empty if none is found. */
export async function resolveServers(options: BenchOptions): Promise<string[]> {
  const probeMs = Math.min(options.timeoutMs, 2_000);
  if (options.target === "all") {
    const healthy = await Promise.all(
      options.servers.map((server) => probe(`${server}/health`, probeMs)),
    );
    const reachable = options.servers.filter((_, i) => healthy[i] !== undefined);
    for (const server of options.servers.filter((s) => !reachable.includes(s))) {
      writeErr(`bench: server "${server}" is not reachable: leaving it out\n`);
    }
    return reachable;
  }
  // A cluster that has just started may still be electing: ask again for a few seconds.
  for (const untilMs = performance.now() + LEADER_WAIT_MS; performance.now() < untilMs;) {
    const answers = await Promise.all(
      options.servers.map((server) => probe(`${server}/status`, probeMs)),
    );
    if (answers.every((answer) => answer === undefined)) return [];
    const statuses = answers.map((answer) => isRecord(answer?.json) ? answer.json : {});
    const leaderAt = statuses.findIndex((status) => status.role === "leader");
    if (leaderAt >= 0) return [options.servers[leaderAt]];
    // The leader may be missing from --servers: follow the URL the others name.
    const named = statuses.find((status) => typeof status.leaderUrl === "string");
    if (named !== undefined) {
      const url = URL.canParse(named.leaderUrl as string)
        ? new URL(named.leaderUrl as string).origin
        : undefined;
      if (url !== undefined && await probe(`${url}/health`, probeMs) !== undefined) return [url];
    }
    await sleep(200);
  }
  return [];
}

export async function runBench(options: BenchOptions, servers: string[]): Promise<BenchReport> {
  const pool: Pool = {
    connections: Array.from(
      { length: options.connections },
      (_, i) => new HttpConnection(servers[i % servers.length]),
    ),
    shapes: Array.from({ length: options.connections }, (_, i) => ({
      host: new URL(servers[i % servers.length]).host,
      consistency: options.consistency,
      params: options.params,
    })),
    options,
  };
  try {
    let seed: SeedReport | null = null;
    if (options.seed) {
      const durationMs = SEED_SECONDS_MAX * 1000;
      const { stats, elapsedMs } = await runPhase(pool, {
        name: "seed",
        durationMs,
        next: seedJobs(pool),
      });
      seed = {
        keys: options.keys,
        ok: stats.ok,
        errors: stats.errors.total,
        elapsedSeconds: Math.round(elapsedMs) / 1000,
      };
      if (stats.ok < options.keys) {
        writeErr(
          `bench: seeding wrote ${stats.ok} of ${options.keys} keys (${
            stats.errorSample ?? "cut off"
          })\n`,
        );
      }
    }
    const next = workloadJobs(pool);
    if (options.warmupSeconds > 0) {
      await runPhase(pool, { name: "warmup", durationMs: options.warmupSeconds * 1000, next });
    }
    const cpuBefore = processCpuSeconds();
    const measured = await runPhase(pool, {
      name: "measure",
      durationMs: options.durationSeconds * 1000,
      next,
    });
    const cpuAfter = processCpuSeconds();
    const cpuSeconds = cpuBefore === undefined || cpuAfter === undefined
      ? undefined
      : cpuAfter - cpuBefore;
    const { seed: _seed, json: _json, ...settings } = options;
    return buildReport({ ...settings, servers }, { ...measured, cpuSeconds }, seed);
  } finally {
    for (const connection of pool.connections) connection.close();
  }
}

export async function main(args: string[]): Promise<number> {
  let options: BenchOptions | "help";
  try {
    options = parseBenchArgs(args);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    writeErr(`${error.message}\n`);
    return 2;
  }
  if (options === "help") {
    Deno.stdout.writeSync(encoder.encode(helpText()));
    return 0;
  }
  const servers = await resolveServers(options);
  if (servers.length === 0) {
    const what = options.target === "leader" ? "No leader found" : "No server reachable";
    writeErr(`${what} among "${options.servers.join(",")}"\n`);
    return 3;
  }
  const report = await runBench(options, servers);
  const text = options.json ? `${JSON.stringify(report)}\n` : formatReport(report);
  Deno.stdout.writeSync(encoder.encode(text));
  return 0;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
