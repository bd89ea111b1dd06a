/** The pure half of scripts/bench.ts (no I/O but reading /proc for its own CPU time): the
 * command line, the counts of a run and its report. Latencies go into a log-bucketed
 * histogram in the spirit of HdrHistogram: a fixed number of buckets (bounded memory whatever
 * the request count) and a relative error under 1 % on every percentile it reports. */

import assert from "node:assert/strict";
import { parseArgs } from "node:util";

/** Each bucket spans a factor of this ratio; reporting the geometric middle of a bucket is
 * off by at most sqrt(1.01) - 1, about 0.5 %. */
const BUCKET_RATIO = 1.01;
const LOG_RATIO = Math.log(BUCKET_RATIO);
/** Values are microseconds; 1 µs to 1,000 s covers every request the generator can time. */
const VALUE_US_MIN = 1;
const VALUE_US_MAX = 1_000_000_000;
const BUCKET_COUNT = Math.ceil(Math.log(VALUE_US_MAX / VALUE_US_MIN) / LOG_RATIO) + 1;

assert(BUCKET_COUNT < 2_200, "the histogram stays small enough to keep one per operation");

export interface LatencySummaryMs {
  count: number;
  minMs: number;
  meanMs: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
}

export class LatencyHistogram {
  #counts = new Float64Array(BUCKET_COUNT);
  #count = 0;
  #sumUs = 0;
  #minUs = Infinity;
  #maxUs = 0;

  get count(): number {
    return this.#count;
  }

  /** Records one latency in microseconds; values outside [1 µs, 1,000 s] land in the end
   * buckets, while min, max and mean stay exact. */
  record(valueUs: number): void {
    assert(Number.isFinite(valueUs) && valueUs >= 0, `latency "${valueUs}" is not a duration`);
    this.#counts[bucketOf(valueUs)] += 1;
    this.#count += 1;
    this.#sumUs += valueUs;
    if (valueUs < this.#minUs) this.#minUs = valueUs;
    if (valueUs > this.#maxUs) this.#maxUs = valueUs;
  }

  /** Adds every sample of `other` to this histogram. */
  merge(other: LatencyHistogram): void {
    if (other.#count === 0) return;
    for (let i = 0; i < BUCKET_COUNT; i++) this.#counts[i] += other.#counts[i];
    this.#count += other.#count;
    this.#sumUs += other.#sumUs;
    this.#minUs = Math.min(this.#minUs, other.#minUs);
    this.#maxUs = Math.max(this.#maxUs, other.#maxUs);
  }

  /** The value at or below which `percentile` % of the samples fall (nearest rank), in µs;
   * 0 when there are no samples. Clamped to the exact min and max. */
  percentileUs(percentile: number): number {
    assert(percentile >= 0 && percentile <= 100, `percentile "${percentile}" is out of range`);
    if (this.#count === 0) return 0;
    const rank = Math.max(1, Math.ceil((percentile / 100) * this.#count));
    // The extreme ranks are known exactly.
    if (rank === 1) return this.#minUs;
    if (rank >= this.#count) return this.#maxUs;
    let seen = 0;
    for (let i = 0; i < BUCKET_COUNT; i++) {
      seen += this.#counts[i];
      if (seen >= rank) {
        return Math.min(this.#maxUs, Math.max(this.#minUs, bucketMiddleUs(i)));
      }
    }
    return this.#maxUs;
  }

  meanUs(): number {
    return this.#count === 0 ? 0 : this.#sumUs / this.#count;
  }

  summaryMs(): LatencySummaryMs {
    const ms = (us: number) => roundTo(us / 1000, 3);
    return {
      count: this.#count,
      minMs: ms(this.#count === 0 ? 0 : this.#minUs),
      meanMs: ms(this.meanUs()),
      p50Ms: ms(this.percentileUs(50)),
      p90Ms: ms(this.percentileUs(90)),
      p99Ms: ms(this.percentileUs(99)),
      p999Ms: ms(this.percentileUs(99.9)),
      maxMs: ms(this.#maxUs),
    };
  }
}

function bucketOf(valueUs: number): number {
  if (valueUs <= VALUE_US_MIN) return 0;
  const index = Math.floor(Math.log(valueUs / VALUE_US_MIN) / LOG_RATIO);
  return Math.min(index, BUCKET_COUNT - 1);
}

function bucketMiddleUs(index: number): number {
  return VALUE_US_MIN * Math.pow(BUCKET_RATIO, index + 0.5);
}

export function roundTo(value: number, digits: number): number {
  const scale = Math.pow(10, digits);
  return Math.round(value * scale) / scale;
}

/** Error counts by kind: "status 503", "timeout", "network", "protocol". */
export class ErrorCounts {
  #counts = new Map<string, number>();
  #total = 0;

  get total(): number {
    return this.#total;
  }

  add(kind: string, count = 1): void {
    this.#counts.set(kind, (this.#counts.get(kind) ?? 0) + count);
    this.#total += count;
  }

  merge(other: ErrorCounts): void {
    for (const [kind, count] of other.#counts) this.add(kind, count);
  }

  /** Kinds sorted by name, for a stable report. */
  toRecord(): Record<string, number> {
    const record: Record<string, number> = {};
    for (const kind of [...this.#counts.keys()].sort()) record[kind] = this.#counts.get(kind)!;
    return record;
  }
}

// ---------------------------------------------------------------------------------------------
// What scripts/bench.ts counts, and the report it prints.

export type Op = "write" | "read" | "stale" | "cas";
export const OPS: readonly Op[] = ["write", "read", "stale", "cas"];
/** Relative weights of the operations. */
export type Mix = Record<Op, number>;

/** The settings of a run, echoed in its report. */
export interface RunSettings {
  servers: string[];
  target: "all" | "leader";
  connections: number;
  durationSeconds: number;
  warmupSeconds: number;
  keys: number;
  valueBytes: number;
  mix: Mix;
  consistency: "linearizable" | "stale";
  params: "json" | "query";
  timeoutMs: number;
}

// ---------------------------------------------------------------------------------------------
// The command line.

export interface BenchOptions extends RunSettings {
  seed: boolean;
  json: boolean;
}

/** A bad command line: exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

const CONNECTIONS_MAX = 4096;
const DURATION_SECONDS_MAX = 86_400;
const KEYS_MAX = 10_000_000;
/** API.md: a value over 512 KiB is refused with 413. */
const VALUE_BYTES_MAX = 524_288;
const TIMEOUT_MS_MAX = 600_000;

const WORKLOADS: Record<string, Mix> = {
  write: { write: 100, read: 0, stale: 0, cas: 0 },
  read: { write: 0, read: 100, stale: 0, cas: 0 },
  stale: { write: 0, read: 0, stale: 100, cas: 0 },
  cas: { write: 0, read: 0, stale: 0, cas: 100 },
  mixed: { write: 50, read: 40, stale: 0, cas: 10 },
};

interface FlagSpec {
  name: string;
  type: "string" | "boolean";
  short?: string;
  default?: string;
  help: string;
}

const FLAGS: readonly FlagSpec[] = [
  {
    name: "connections",
    short: "c",
    type: "string",
    default: "16",
    help: "Concurrent connections",
  },
  { name: "duration", type: "string", default: "10", help: "Seconds measured" },
  { name: "warmup", type: "string", default: "2", help: "Seconds of unrecorded load first" },
  { name: "value-bytes", type: "string", default: "100", help: "Size of each value" },
  { name: "keys", type: "string", default: "1000", help: "Key space: k0000, k0001, ..." },
  {
    name: "workload",
    type: "string",
    default: "mixed",
    help: "write | read | stale | cas | mixed (write=50,read=40,cas=10)",
  },
  { name: "mix", type: "string", help: "Weights, e.g. write=50,read=40,cas=10 (or stale=N)" },
  {
    name: "consistency",
    type: "string",
    default: "linearizable",
    help: "linearizable | stale: how the read operations read",
  },
  {
    name: "servers",
    type: "string",
    default: "http://127.0.0.1:2020",
    help: "Comma list; connections take them in turn",
  },
  { name: "target", type: "string", default: "all", help: "all | leader (found via /status)" },
  { name: "params", type: "string", default: "json", help: "json | query: how writes send them" },
  { name: "no-seed", type: "boolean", help: "Skip writing every key once before the run" },
  { name: "timeout-ms", type: "string", default: "5000", help: "Timeout of each request" },
  { name: "json", type: "boolean", help: "Print one JSON object on stdout" },
  { name: "help", short: "h", type: "boolean", help: "Show this help" },
];

export const USAGE = "Usage: deno task bench [-c N] [--duration S] [--workload W | --mix M] " +
  "[--servers URL,...] [--json] (--help for all flags)";

export function helpText(): string {
  const lines = FLAGS.map((flag) => {
    const name = `${flag.short ? `-${flag.short}, ` : "    "}--${flag.name}`;
    const value = flag.default === undefined ? "" : ` (default ${flag.default})`;
    return `  ${name.padEnd(20)} ${flag.help}${value}`;
  });
  return `${USAGE}\n\nFlags:\n${lines.join("\n")}\n\nExit codes: 0 ran (errors are counted), ` +
    `2 usage error, 3 no server reachable (or no leader with --target leader)\n`;
}

function numberFlag(name: string, text: string, min: number, max: number, integer = true) {
  const value = Number(text);
  const ok = text.trim() !== "" && Number.isFinite(value) && value >= min && value <= max &&
    (!integer || Number.isInteger(value));
  if (!ok) {
    throw new UsageError(`Invalid value "${text}" for --${name}: expected ${min} to ${max}`);
  }
  return value;
}

function oneOf<T extends string>(name: string, text: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(text)) {
    throw new UsageError(`Invalid value "${text}" for --${name}: expected ${allowed.join(" | ")}`);
  }
  return text as T;
}

/** "write=50,read=40,cas=10": weights, not necessarily summing to 100. */
export function parseMix(text: string): Mix {
  const mix: Mix = { write: 0, read: 0, stale: 0, cas: 0 };
  for (const part of text.split(",")) {
    const match = /^\s*([a-z]+)\s*=\s*(\d+(?:\.\d+)?)\s*$/.exec(part);
    if (match === null || !(OPS as readonly string[]).includes(match[1])) {
      throw new UsageError(`Invalid value "${text}" for --mix: expected e.g. write=50,read=50`);
    }
    mix[match[1] as Op] += Number(match[2]);
  }
  if (OPS.every((op) => mix[op] === 0)) {
    throw new UsageError(`Invalid value "${text}" for --mix: all weights are zero`);
  }
  return mix;
}

export function parseServers(text: string): string[] {
  const servers = text.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (servers.length === 0) throw new UsageError("Invalid value for --servers: empty");
  return servers.map((server) => {
    let url: URL;
    try {
      url = new URL(server);
    } catch {
      throw new UsageError(`Invalid value "${server}" for --servers: not a URL`);
    }
    if (url.protocol !== "http:") {
      throw new UsageError(`Invalid value "${server}" for --servers: only http:// is supported`);
    }
    return url.origin;
  });
}

/** Throws UsageError with one line on a bad command line. */
export function parseBenchArgs(args: string[]): BenchOptions | "help" {
  let values: Record<string, string | boolean | undefined>;
  try {
    const options = Object.fromEntries(
      FLAGS.map((f) => [f.name, f.short ? { type: f.type, short: f.short } : { type: f.type }]),
    );
    values = parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new UsageError(`${(error as Error).message.split("\n")[0]}: ${USAGE}`);
  }
  if (values.help) return "help";
  const text = (name: string) =>
    (values[name] as string | undefined) ?? FLAGS.find((f) => f.name === name)!.default!;
  if (values.mix !== undefined && values.workload !== undefined) {
    throw new UsageError("Flags --mix and --workload cannot be used together");
  }
  const mix = values.mix !== undefined
    ? parseMix(values.mix as string)
    : WORKLOADS[oneOf("workload", text("workload"), Object.keys(WORKLOADS))];
  return {
    connections: numberFlag("connections", text("connections"), 1, CONNECTIONS_MAX),
    durationSeconds: numberFlag("duration", text("duration"), 0.1, DURATION_SECONDS_MAX, false),
    warmupSeconds: numberFlag("warmup", text("warmup"), 0, DURATION_SECONDS_MAX, false),
    valueBytes: numberFlag("value-bytes", text("value-bytes"), 1, VALUE_BYTES_MAX),
    keys: numberFlag("keys", text("keys"), 1, KEYS_MAX),
    mix: { ...mix },
    consistency: oneOf("consistency", text("consistency"), ["linearizable", "stale"]),
    servers: parseServers(text("servers")),
    target: oneOf("target", text("target"), ["all", "leader"]),
    params: oneOf("params", text("params"), ["json", "query"]),
    seed: values["no-seed"] !== true,
    timeoutMs: numberFlag("timeout-ms", text("timeout-ms"), 1, TIMEOUT_MS_MAX),
    json: values.json === true,
  };
}

// ---------------------------------------------------------------------------------------------
// Counting.

/** How one request ended. "cut": still in flight at the end of its phase, so not counted. */
export type Outcome =
  | { kind: "answer"; status: number; body: Uint8Array }
  | { kind: "timeout" | "network" | "protocol"; detail: string }
  | { kind: "cut" };

interface OpStats {
  histogram: LatencyHistogram;
  ok: number;
  requests: number;
}

const SAMPLE_CHARS_MAX = 160;
const decoder = new TextDecoder();

export class PhaseStats {
  byOp = new Map<Op, OpStats>();
  errors = new ErrorCounts();
  /** Requests that ended, well or not (cut ones excluded). */
  requests = 0;
  /** The first error, to tell a user what went wrong without a debugger. */
  errorSample: string | undefined;

  record(op: Op, outcome: Outcome, latencyUs: number): void {
    if (outcome.kind === "cut") return;
    let stats = this.byOp.get(op);
    if (stats === undefined) {
      stats = { histogram: new LatencyHistogram(), ok: 0, requests: 0 };
      this.byOp.set(op, stats);
    }
    stats.requests += 1;
    this.requests += 1;
    if (outcome.kind !== "answer") {
      this.errors.add(outcome.kind);
      this.errorSample ??= `${op}: ${outcome.kind} ${outcome.detail}`.trim();
      return;
    }
    // Every HTTP answer is timed, whatever its status, as wrk does; timeouts are not.
    stats.histogram.record(latencyUs);
    if (outcome.status >= 200 && outcome.status < 300) {
      stats.ok += 1;
      return;
    }
    this.errors.add(`status ${outcome.status}`);
    const body = decoder.decode(outcome.body.subarray(0, SAMPLE_CHARS_MAX));
    this.errorSample ??= `${op}: ${outcome.status} ${body}`;
  }

  get ok(): number {
    let ok = 0;
    for (const stats of this.byOp.values()) ok += stats.ok;
    return ok;
  }
}

export interface OpReport {
  requests: number;
  ok: number;
  okPerSecond: number;
  latencyMs: LatencySummaryMs;
}

export interface SeedReport {
  keys: number;
  ok: number;
  errors: number;
  elapsedSeconds: number;
}

export interface BenchReport extends RunSettings {
  seed: SeedReport | null;
  elapsedSeconds: number;
  requests: number;
  ok: number;
  errors: number;
  requestsPerSecond: number;
  okPerSecond: number;
  latencyMs: LatencySummaryMs;
  ops: Partial<Record<Op, OpReport>>;
  errorsByKind: Record<string, number>;
  errorSample: string | null;
  /** CPU the generator itself used during the measured phase, in % of one core. */
  generatorCpuPercent: number | null;
}

export function buildReport(
  settings: RunSettings,
  measured: { stats: PhaseStats; elapsedMs: number; cpuSeconds: number | undefined },
  seed: SeedReport | null,
): BenchReport {
  const { stats, elapsedMs } = measured;
  const seconds = Math.max(elapsedMs, 1) / 1000;
  const all = new LatencyHistogram();
  const ops: Partial<Record<Op, OpReport>> = {};
  for (const op of OPS) {
    const opStats = stats.byOp.get(op);
    if (opStats === undefined) continue;
    all.merge(opStats.histogram);
    ops[op] = {
      requests: opStats.requests,
      ok: opStats.ok,
      okPerSecond: roundTo(opStats.ok / seconds, 1),
      latencyMs: opStats.histogram.summaryMs(),
    };
  }
  return {
    ...settings,
    seed,
    elapsedSeconds: roundTo(seconds, 3),
    requests: stats.requests,
    ok: stats.ok,
    errors: stats.errors.total,
    requestsPerSecond: roundTo(stats.requests / seconds, 1),
    okPerSecond: roundTo(stats.ok / seconds, 1),
    latencyMs: all.summaryMs(),
    ops,
    errorsByKind: stats.errors.toRecord(),
    errorSample: stats.errorSample ?? null,
    generatorCpuPercent: measured.cpuSeconds === undefined
      ? null
      : roundTo((100 * measured.cpuSeconds) / seconds, 1),
  };
}

function row(cells: (string | number)[]): string {
  const widths = [6, 10, 10, 10, 9, 9, 9, 9, 9];
  return cells.map((cell, i) =>
    i === 0 ? String(cell).padEnd(widths[i]) : String(cell).padStart(widths[i])
  )
    .join(" ");
}

function latencyCells(summary: LatencySummaryMs): string[] {
  const ms = [summary.p50Ms, summary.p99Ms, summary.p999Ms, summary.maxMs];
  return summary.count === 0 ? ms.map(() => "-") : ms.map((value) => value.toFixed(2));
}

/** The human table. */
export function formatReport(report: BenchReport): string {
  const mix = OPS.filter((op) => report.mix[op] > 0).map((op) => `${op}=${report.mix[op]}`);
  const lines = [
    `raftkv bench: ${mix.join(",")} (${report.consistency} reads, ${report.params} params), ` +
    `${report.connections} connections, ${report.keys} keys, ${report.valueBytes}-byte values`,
    `servers (${report.target}): ${report.servers.join(", ")}`,
  ];
  if (report.seed !== null) {
    const seed = report.seed;
    lines.push(`seed: ${seed.ok}/${seed.keys} keys written in ${seed.elapsedSeconds} s`);
  }
  lines.push(
    `measured ${report.elapsedSeconds} s after ${report.warmupSeconds} s of warm-up`,
    "",
    row(["op", "requests", "ok", "ok/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms"]),
  );
  for (const op of OPS) {
    const stats = report.ops[op];
    if (stats === undefined) continue;
    lines.push(
      row([
        op,
        stats.requests,
        stats.ok,
        stats.okPerSecond.toFixed(1),
        ...latencyCells(stats.latencyMs),
      ]),
    );
  }
  lines.push(
    row([
      "all",
      report.requests,
      report.ok,
      report.okPerSecond.toFixed(1),
      ...latencyCells(report.latencyMs),
    ]),
    "",
  );
  const kinds = Object.entries(report.errorsByKind).map(([kind, count]) => `${kind}: ${count}`);
  lines.push(`errors: ${kinds.length === 0 ? "none" : kinds.join(", ")}`);
  if (report.errorSample !== null) lines.push(`first error: ${report.errorSample}`);
  if (report.generatorCpuPercent !== null) {
    lines.push(`generator CPU: ${report.generatorCpuPercent} % of one core`);
  }
  return `${lines.join("\n")}\n`;
}

/** CPU seconds (user + system) this process has used, from /proc; undefined elsewhere. */
export function processCpuSeconds(): number | undefined {
  try {
    const stat = Deno.readTextFileSync("/proc/self/stat");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime are fields 14 and 15 of proc(5), in clock ticks of 1/100 s.
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}
