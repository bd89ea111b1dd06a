/** `deno task bench [flags]`: raftkv's own closed-loop load generator, for users without wrk.
 * N workers, one keep-alive HTTP/1.1 connection each, send /set, /get or /cas on uniformly
 * random keys: seed every key, warm up, measure for a fixed time, then print throughput,
 * latency percentiles and errors by kind (a table, or one JSON object with --json).
 *
 * It speaks HTTP/1.1 itself over Deno.connect instead of using fetch: measured on this
 * machine, fetch at c=64 held 64 sockets but reached about a quarter of wrk's rate on the same
 * node, while a small client of our own matches wrk with a fraction of a core. */

import { parseArgs } from "node:util";
import { ErrorCounts, LatencyHistogram, type LatencySummaryMs, roundTo } from "./bench_stats.ts";

export type Op = "write" | "read" | "stale" | "cas";
export const OPS: readonly Op[] = ["write", "read", "stale", "cas"];
export type Mix = Record<Op, number>;

export interface BenchOptions {
  connections: number;
  durationSeconds: number;
  warmupSeconds: number;
  valueBytes: number;
  keys: number;
  mix: Mix;
  consistency: "linearizable" | "stale";
  servers: string[];
  target: "all" | "leader";
  params: "json" | "query";
  seed: boolean;
  timeoutMs: number;
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
const HEAD_BYTES_MAX = 65_536;
const BODY_BYTES_MAX = 8 * 1024 * 1024;
/** A worker whose server refuses connections waits this long, not to spin on a dead port. */
const NETWORK_BACKOFF_MS = 50;
const LEADER_WAIT_MS = 5_000;
const PROGRESS_INTERVAL_MS = 1_000;
/** Bounds the seeding phase even if every write were slow. */
const SEED_SECONDS_MAX = 600;

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
  { name: "connections", short: "c", type: "string", default: "16", help: "Concurrent connections" },
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
  { name: "consistency", type: "string", default: "linearizable", help: "Of reads: or stale" },
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
      FLAGS.map((f) => [f.name, { type: f.type, short: f.short }]),
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
  const head = (method: string, path: string) => `${method} ${path} HTTP/1.1\r\nHost: ${shape.host}`;
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

export class ProtocolError extends Error {
  override name = "ProtocolError";
}

export interface HttpAnswer {
  status: number;
  body: Uint8Array;
}

const decoder = new TextDecoder();

function indexOfCrlf(bytes: Uint8Array, from: number, end: number): number {
  for (let i = from; i + 1 < end; i++) if (bytes[i] === 13 && bytes[i + 1] === 10) return i;
  return -1;
}

/** The offset just past a complete chunked body starting at `start`, or -1 if more bytes are
 * needed (RFC 9112 §7.1). */
export function chunkedBodyEnd(bytes: Uint8Array, start: number, end: number): number {
  let position = start;
  for (;;) {
    const lineEnd = indexOfCrlf(bytes, position, end);
    if (lineEnd < 0) return -1;
    const sizeText = decoder.decode(bytes.subarray(position, lineEnd)).split(";")[0].trim();
    if (!/^[0-9a-fA-F]{1,8}$/.test(sizeText)) {
      throw new ProtocolError(`Invalid chunk size "${sizeText.slice(0, 20)}"`);
    }
    const size = parseInt(sizeText, 16);
    position = lineEnd + 2;
    if (size === 0) break;
    if (position + size + 2 > end) return -1;
    position += size + 2;
  }
  for (;;) { // trailer lines, then an empty line
    const lineEnd = indexOfCrlf(bytes, position, end);
    if (lineEnd < 0) return -1;
    if (lineEnd === position) return position + 2;
    position = lineEnd + 2;
  }
}

export interface ResponseHead {
  status: number;
  headBytes: number;
  contentLength: number | undefined;
  chunked: boolean;
  close: boolean;
}

/** Parses the status line and headers if `bytes[0, end)` holds all of them. */
export function parseResponseHead(bytes: Uint8Array, end: number): ResponseHead | undefined {
  let headEnd = -1;
  for (let i = 0; i + 3 < end; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) {
      headEnd = i;
      break;
    }
  }
  if (headEnd < 0) {
    if (end > HEAD_BYTES_MAX) throw new ProtocolError("Response head is too large");
    return undefined;
  }
  const lines = decoder.decode(bytes.subarray(0, headEnd)).split("\r\n");
  const statusMatch = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
  if (statusMatch === null) throw new ProtocolError(`Invalid status line "${lines[0].slice(0, 40)}"`);
  const head: ResponseHead = {
    status: Number(statusMatch[1]),
    headBytes: headEnd + 4,
    contentLength: undefined,
    chunked: false,
    close: lines[0].startsWith("HTTP/1.0"),
  };
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim().toLowerCase();
    if (name === "content-length") {
      if (!/^\d+$/.test(value)) throw new ProtocolError(`Invalid content-length "${value}"`);
      head.contentLength = Number(value);
    } else if (name === "transfer-encoding") head.chunked = value.includes("chunked");
    else if (name === "connection") head.close = value.includes("close");
  }
  return head;
}

export class HttpConnection {
  #hostname: string;
  #port: number;
  #conn: Deno.TcpConn | undefined;
  #buffer = new Uint8Array(16_384);
  #length = 0;
  /** Bumped by close(): an exchange that awaited across a close() gives up. */
  #generation = 0;

  constructor(origin: string) {
    const url = new URL(origin);
    this.#hostname = url.hostname.replace(/^\[(.*)\]$/, "$1");
    this.#port = Number(url.port || 80);
  }

  close(): void {
    this.#generation += 1;
    try {
      this.#conn?.close();
    } catch {
      // Already closed by the peer or by an earlier close().
    }
    this.#conn = undefined;
    this.#length = 0;
  }

  /** Sends one request and reads its whole answer. Throws ProtocolError on a malformed answer
   * and a Deno error when the connection fails; either way the connection is closed. */
  async exchange(request: Uint8Array): Promise<HttpAnswer> {
    const generation = this.#generation;
    try {
      return await this.#exchange(request, generation);
    } catch (error) {
      if (generation === this.#generation) this.close();
      throw error;
    }
  }

  async #exchange(request: Uint8Array, generation: number): Promise<HttpAnswer> {
    if (this.#conn === undefined) {
      const conn = await Deno.connect({ hostname: this.#hostname, port: this.#port });
      if (generation !== this.#generation) {
        conn.close();
        throw new Deno.errors.Interrupted("Connection closed while connecting");
      }
      conn.setNoDelay(true);
      this.#conn = conn;
    }
    const conn = this.#conn;
    for (let written = 0; written < request.length;) {
      written += await conn.write(request.subarray(written));
      this.#check(generation);
    }
    this.#length = 0;
    let head = parseResponseHead(this.#buffer, 0);
    // 1xx answers are interim (RFC 9110 §15.2): skip them.
    while (head === undefined || (head.status >= 100 && head.status < 200)) {
      if (head !== undefined) this.#discard(head.headBytes);
      else if (!await this.#fill(conn, generation)) throw new Deno.errors.UnexpectedEof();
      head = parseResponseHead(this.#buffer, this.#length);
    }
    const end = await this.#readBody(conn, generation, head);
    const answer = { status: head.status, body: this.#buffer.slice(head.headBytes, end) };
    // Nothing is pipelined, so extra bytes mean the connection is out of step: drop it.
    if (head.close || end !== this.#length) this.close();
    return answer;
  }

  async #readBody(conn: Deno.TcpConn, generation: number, head: ResponseHead): Promise<number> {
    const start = head.headBytes;
    const noBody = head.status === 204 || head.status === 304;
    if (noBody) return start;
    if (head.chunked) {
      let end = chunkedBodyEnd(this.#buffer, start, this.#length);
      while (end < 0) {
        if (!await this.#fill(conn, generation)) throw new Deno.errors.UnexpectedEof();
        end = chunkedBodyEnd(this.#buffer, start, this.#length);
      }
      return end;
    }
    if (head.contentLength !== undefined) {
      if (head.contentLength > BODY_BYTES_MAX) throw new ProtocolError("Response body too large");
      while (this.#length < start + head.contentLength) {
        if (!await this.#fill(conn, generation)) throw new Deno.errors.UnexpectedEof();
      }
      return start + head.contentLength;
    }
    head.close = true; // the body runs to the end of the connection
    while (await this.#fill(conn, generation));
    return this.#length;
  }

  /** Reads more bytes into the buffer; false at the end of the stream. */
  async #fill(conn: Deno.TcpConn, generation: number): Promise<boolean> {
    if (this.#length === this.#buffer.length) {
      if (this.#buffer.length >= HEAD_BYTES_MAX + BODY_BYTES_MAX) {
        throw new ProtocolError("Response too large");
      }
      const grown = new Uint8Array(this.#buffer.length * 2);
      grown.set(this.#buffer);
      this.#buffer = grown;
    }
    const count = await conn.read(this.#buffer.subarray(this.#length));
    this.#check(generation);
    if (count === null) return false;
    this.#length += count;
    return true;
  }

  #discard(count: number): void {
    this.#buffer.copyWithin(0, count, this.#length);
    this.#length -= count;
  }

  #check(generation: number): void {
    if (generation !== this.#generation) {
      throw new Deno.errors.Interrupted("Connection closed during the request");
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Running: phases of closed-loop workers, one connection each.

type Outcome =
  | { kind: "answer"; answer: HttpAnswer }
  | { kind: "timeout" | "network" | "protocol"; detail: string }
  | { kind: "cut" }; // still in flight at the end of the phase: not counted

/** One exchange that settles by `deadlineMs` at the latest (a hard stop) and by the request
 * timeout; the connection is closed if its answer did not come. */
async function timedExchange(
  connection: HttpConnection,
  request: Uint8Array,
  options: { timeoutMs: number; deadlineMs: number },
): Promise<Outcome> {
  const startMs = performance.now();
  const waitMs = Math.max(0, Math.min(options.timeoutMs, options.deadlineMs - startMs));
  let timer: number | undefined;
  const expired = new Promise<Outcome>((resolve) => {
    timer = setTimeout(() => {
      connection.close();
      resolve(waitMs < options.timeoutMs ? { kind: "cut" } : { kind: "timeout", detail: "" });
    }, waitMs);
  });
  const exchanged = connection.exchange(request).then(
    (answer): Outcome => ({ kind: "answer", answer }),
    (error: Error): Outcome => ({
      kind: error instanceof ProtocolError ? "protocol" : "network",
      detail: `${error.name}: ${error.message}`,
    }),
  );
  try {
    return await Promise.race([exchanged, expired]);
  } finally {
    clearTimeout(timer);
  }
}

interface OpStats {
  histogram: LatencyHistogram;
  ok: number;
  requests: number;
}

class PhaseStats {
  byOp = new Map<Op, OpStats>();
  errors = new ErrorCounts();
  requests = 0;
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
    // Every HTTP answer is timed, whatever its status, as wrk does.
    stats.histogram.record(latencyUs);
    const status = outcome.answer.status;
    if (status >= 200 && status < 300) {
      stats.ok += 1;
      return;
    }
    this.errors.add(`status ${status}`);
    this.errorSample ??= `${op}: ${status} ${decoder.decode(outcome.answer.body.slice(0, 160))}`;
  }
}

interface Job {
  op: Op;
  request: Uint8Array;
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
      if (outcome.kind === "network") await sleep(Math.min(NETWORK_BACKOFF_MS, deadlineMs - sentMs));
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

function seedJobs(pool: Pool): (worker: number) => Job | undefined {
  const { keys, valueBytes } = pool.options;
  let next = 0;
  return (worker) => {
    if (next >= keys) return undefined;
    const index = next++;
    const value = valueOf(index, valueBytes);
    return { op: "write", request: requestBytes("write", keyName(index, keys), value, pool.shapes[worker]) };
  };
}

/** CPU seconds (user + system) this process has used, from /proc; undefined elsewhere. */
function processCpuSeconds(): number | undefined {
  try {
    const stat = Deno.readTextFileSync("/proc/self/stat");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime are fields 14 and 15 of proc(5), in clock ticks of 1/100 s.
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}
