/** `deno task memory [--keys N] [--json] [-- extra raftkv flags]`: measures the
 * memory target of the performance issue ("1,000,000 keys of 100-byte values: RSS of a node
 * ≤ 500 MB; restart to serving ≤ 10 s"). It starts a 3-node cluster in a temporary directory,
 * writes every key once through the leader (scripts/bench.ts's seeding), samples each node's
 * RSS (/proc/PID/status, Linux only) during and after the load, then stops a follower with
 * SIGTERM, restarts it on its directory and times its first linearizable /get. It always stops
 * its nodes and deletes its directory, on Ctrl-C too. */

import { parseArgs } from "node:util";
import { RaftkvClient } from "../http/mod.ts";
import { keyName, runBench } from "./bench.ts";
import type { BenchOptions } from "./bench_stats.ts";

const LEADER_WAIT_MS = 30_000;
const CATCH_UP_WAIT_MS = 120_000;
const SERVING_WAIT_MS = 120_000;
const STOP_GRACE_MS = 10_000;
const POLL_INTERVAL_MS = 50;
const STDERR_LINES_KEPT = 40;

export interface MemoryOptions {
  keys: number;
  valueBytes: number;
  connections: number;
  sampleMs: number;
  /** Seconds to wait after the load (and after the restart) before the "after" samples: long
   * enough for a snapshot begun by the load's last writes to finish and its memory to be given
   * back (a sample in the middle of one shows the transient peak, reported on its own). */
  settleSeconds: number;
  /** Flags for `deno run` before main.ts, e.g. "--v8-flags=--max-old-space-size=256". */
  denoFlags: string[];
  /** Flags for every node after its own (after `--` on the command line). */
  extraArgs: string[];
  json: boolean;
}

/** Resident and peak resident memory of a process, from /proc/PID/status, in MiB. */
export interface ProcMemory {
  rssMb: number;
  hwmMb: number;
  /** The anonymous part of RSS (heaps, buffers) and the file-backed part (the binary, mmaps). */
  anonMb?: number;
  fileMb?: number;
}

/** Where a node's memory goes, in MiB: /proc's split of RSS and V8's (Deno.memoryUsage). */
export interface MemoryBreakdown {
  anonMb: number;
  fileMb: number;
  heapUsedMb: number;
  heapTotalMb: number;
  externalMb: number;
}

export interface NodeReport {
  label: string;
  role: string;
  keys: number;
  /** Largest RSS sampled during the load, and the kernel's high-water mark at its end. */
  loadPeakRssMb: number;
  loadHwmMb: number;
  rssAfterLoadMb: number;
  afterLoad: MemoryBreakdown;
}

export interface MemoryReport {
  keys: number;
  valueBytes: number;
  loadSeconds: number;
  writesOk: number;
  writeErrors: number;
  snapshotBytes: number;
  nodes: NodeReport[];
  restart: {
    label: string;
    /** From spawning the process to its first 200 answer to a linearizable /get. */
    servingMs: number;
    /** From spawning to applying the leader's commit index of when it was serving. */
    caughtUpMs: number;
    rssAfterRestartMb: number;
    hwmAfterRestartMb: number;
    afterRestart: MemoryBreakdown;
  };
}

const USAGE = "Usage: deno task memory [--keys N] [--value-bytes B] " +
  "[--connections C] [--sample-ms MS] [--settle-seconds S] [--deno-flags=FLAGS] [--json] " +
  "[-- extra raftkv flags]";

/** Throws TypeError with one line on a bad command line. */
export function parseMemoryArgs(args: string[]): MemoryOptions | "help" {
  const separator = args.indexOf("--");
  const own = separator < 0 ? args : args.slice(0, separator);
  let values;
  try {
    values = parseArgs({
      args: own,
      options: {
        keys: { type: "string", default: "1000000" },
        "value-bytes": { type: "string", default: "100" },
        connections: { type: "string", default: "64" },
        "sample-ms": { type: "string", default: "500" },
        "settle-seconds": { type: "string", default: "20" },
        "deno-flags": { type: "string", default: "" },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (error) {
    throw new TypeError(`${(error as Error).message.split("\n")[0]}: ${USAGE}`);
  }
  if (values.help) return "help";
  const integer = (name: string, text: string, min: number, max: number): number => {
    const value = Number(text);
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new TypeError(`Invalid value "${text}" for --${name}: expected ${min} to ${max}`);
    }
    return value;
  };
  return {
    keys: integer("keys", values.keys, 1, 10_000_000),
    valueBytes: integer("value-bytes", values["value-bytes"], 1, 524_288),
    connections: integer("connections", values.connections, 1, 1024),
    sampleMs: integer("sample-ms", values["sample-ms"], 10, 60_000),
    settleSeconds: integer("settle-seconds", values["settle-seconds"], 0, 600),
    denoFlags: values["deno-flags"].split(" ").filter((flag) => flag !== ""),
    extraArgs: separator < 0 ? [] : args.slice(separator + 1),
    json: values.json === true,
  };
}

/** VmRSS and VmHWM of a /proc/PID/status text; undefined if either is missing. */
export function parseProcStatus(text: string): ProcMemory | undefined {
  const kib = (field: string) => {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, "m").exec(text);
    return match === null ? undefined : Number(match[1]);
  };
  const rssKib = kib("VmRSS");
  const hwmKib = kib("VmHWM");
  if (rssKib === undefined || hwmKib === undefined) return undefined;
  const memory: ProcMemory = { rssMb: Math.round(rssKib / 1024), hwmMb: Math.round(hwmKib / 1024) };
  const anonKib = kib("RssAnon");
  const fileKib = kib("RssFile");
  if (anonKib !== undefined) memory.anonMb = Math.round(anonKib / 1024);
  if (fileKib !== undefined) memory.fileMb = Math.round(fileKib / 1024);
  return memory;
}

/** The `raftkv_process_memory_bytes` gauges of a /metrics text, in MiB (0 when missing). */
export function parseMemoryMetrics(text: string): Omit<MemoryBreakdown, "anonMb" | "fileMb"> {
  const mb = (kind: string) => {
    const match = new RegExp(`^raftkv_process_memory_bytes\\{kind="${kind}"\\} (\\S+)$`, "m")
      .exec(text);
    return match === null ? 0 : Math.round(Number(match[1]) / 1_048_576);
  };
  return {
    heapUsedMb: mb("heap_used"),
    heapTotalMb: mb("heap_total"),
    externalMb: mb("external"),
  };
}

function readProcMemory(pid: number): ProcMemory | undefined {
  try {
    return parseProcStatus(Deno.readTextFileSync(`/proc/${pid}/status`));
  } catch {
    return undefined; // the process has exited
  }
}

function formatBreakdown(memory: MemoryBreakdown): string {
  return `anon ${memory.anonMb}, file ${memory.fileMb}; V8 heap ${memory.heapUsedMb} used of ` +
    `${memory.heapTotalMb}, external ${memory.externalMb} (MiB)`;
}

export function formatReport(report: MemoryReport): string {
  const lines = [
    `${report.keys} keys of ${report.valueBytes} bytes written in ${report.loadSeconds} s ` +
    `(${report.writesOk} ok, ${report.writeErrors} errors); snapshot ${
      (report.snapshotBytes / 1_048_576).toFixed(1)
    } MiB`,
    "node  role      keys      peak RSS in load  HWM in load  RSS after load",
  ];
  for (const node of report.nodes) {
    lines.push(
      `${node.label.padEnd(6)}${node.role.padEnd(10)}${String(node.keys).padEnd(10)}` +
        `${`${node.loadPeakRssMb} MiB`.padEnd(18)}${`${node.loadHwmMb} MiB`.padEnd(13)}` +
        `${node.rssAfterLoadMb} MiB`,
      `      after load: ${formatBreakdown(node.afterLoad)}`,
    );
  }
  const r = report.restart;
  lines.push(
    `restart of ${r.label}: serving in ${r.servingMs} ms, caught up in ${r.caughtUpMs} ms, ` +
      `RSS ${r.rssAfterRestartMb} MiB (HWM ${r.hwmAfterRestartMb} MiB)`,
    `      after restart: ${formatBreakdown(r.afterRestart)}`,
  );
  return `${lines.join("\n")}\n`;
}

// ---------------------------------------------------------------------------------------------
// Processes.

interface Node {
  label: string;
  url: string;
  args: string[];
  child: Deno.ChildProcess;
  exited: boolean;
  done: Promise<Deno.CommandStatus>;
  /** The last lines of its stderr, shown if something goes wrong. */
  stderrTail: string[];
  peakRssMb: number;
}

const encoder = new TextEncoder();
function writeErr(text: string): void {
  Deno.stderr.writeSync(encoder.encode(text));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Ports free on 127.0.0.1 a moment ago (the OS picks them). */
function freePorts(count: number): number[] {
  const listeners = Array.from(
    { length: count },
    () => Deno.listen({ hostname: "127.0.0.1", port: 0 }),
  );
  const ports = listeners.map((listener) => (listener.addr as Deno.NetAddr).port);
  for (const listener of listeners) listener.close();
  return ports;
}

async function keepTail(stream: ReadableStream<Uint8Array>, tail: string[]): Promise<void> {
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    tail.push(...text.split("\n").filter((line) => line !== ""));
    tail.splice(0, Math.max(0, tail.length - STDERR_LINES_KEPT));
  }
}

function spawnNode(label: string, url: string, args: string[]): Node {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const node: Node = {
    label,
    url,
    args,
    child,
    exited: false,
    done: child.status,
    stderrTail: [],
    peakRssMb: 0,
  };
  node.done = Promise.all([keepTail(child.stderr, node.stderrTail), child.status]).then(
    ([, status]) => {
      node.exited = true;
      return status;
    },
  );
  return node;
}

/** SIGTERM, then SIGKILL after STOP_GRACE_MS. */
async function stopNode(node: Node): Promise<void> {
  const signal = (name: Deno.Signal) => {
    try {
      if (!node.exited) node.child.kill(name);
    } catch {
      // It exited between the check and the kill.
    }
  };
  signal("SIGTERM");
  const timer = setTimeout(() => signal("SIGKILL"), STOP_GRACE_MS);
  await node.done;
  clearTimeout(timer);
}

async function status(url: string): Promise<Record<string, unknown> | undefined> {
  try {
    const answer = await new RaftkvClient({ servers: [url], timeoutMs: 2_000 }).status();
    return answer.status === 200 ? answer.body : undefined;
  } catch {
    return undefined;
  }
}

/** The node's memory now: /proc/PID/status and its /metrics gauges. */
async function breakdown(node: Node): Promise<MemoryBreakdown> {
  const proc = readProcMemory(node.child.pid);
  let text = "";
  try {
    const response = await fetch(`${node.url}/metrics`, { signal: AbortSignal.timeout(5_000) });
    text = await response.text();
  } catch {
    // Reported as zeros.
  }
  return { anonMb: proc?.anonMb ?? 0, fileMb: proc?.fileMb ?? 0, ...parseMemoryMetrics(text) };
}

/** Polls `probe` until it returns a value or `timeoutMs` passes; throws Error `what` then. */
async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>) {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const value = await probe();
    if (value !== undefined) return value;
    await sleep(POLL_INTERVAL_MS);
  }
  throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** The leader's commit index, once every node has applied at least that much. */
function allCaughtUp(nodes: Node[]): Promise<number> {
  return waitFor("every node to apply the leader's commit index", CATCH_UP_WAIT_MS, async () => {
    const statuses = await Promise.all(nodes.map((node) => status(node.url)));
    const commit = statuses.find((s) => s?.role === "leader")?.commitIndex;
    if (typeof commit !== "number") return undefined;
    return statuses.every((s) => Number(s?.appliedIndex) >= commit) ? commit : undefined;
  });
}

function loadOptions(options: MemoryOptions, leaderUrl: string): BenchOptions {
  return {
    servers: [leaderUrl],
    target: "leader",
    connections: options.connections,
    // After seeding, a short phase of linearizable reads: it writes nothing more.
    durationSeconds: 0.1,
    warmupSeconds: 0,
    keys: options.keys,
    valueBytes: options.valueBytes,
    mix: { write: 0, read: 100, stale: 0, cas: 0 },
    consistency: "linearizable",
    params: "json",
    timeoutMs: 10_000,
    seed: true,
    json: false,
  };
}

// ---------------------------------------------------------------------------------------------
// The run.

async function measure(options: MemoryOptions, dir: string, nodes: Node[]): Promise<MemoryReport> {
  const ports = freePorts(3);
  const urls = ports.map((port) => `http://127.0.0.1:${port}`);
  for (const [i, port] of ports.entries()) {
    const args = [
      "run",
      "-A",
      ...options.denoFlags,
      `${import.meta.dirname}/../main.ts`,
      ...["--port", String(port), "--dir", `${dir}/n${i + 1}`, "--peers", urls.join(",")],
      ...["--log-level", "warn", ...options.extraArgs],
    ];
    nodes.push(spawnNode(`n${i + 1}`, urls[i], args));
  }
  const leaderUrl = await waitFor("a leader", LEADER_WAIT_MS, async () => {
    if (nodes.some((node) => node.exited)) throw new Error("A node exited before the load");
    const statuses = await Promise.all(urls.map(status));
    return urls.find((_, i) => statuses[i]?.role === "leader");
  });
  const sample = () => {
    for (const node of nodes) {
      node.peakRssMb = Math.max(node.peakRssMb, readProcMemory(node.child.pid)?.rssMb ?? 0);
    }
  };
  // Sampled at the start and the end as well: a short load may fit between two samples.
  sample();
  const sampler = setInterval(sample, options.sampleMs);
  const startMs = performance.now();
  let seed;
  try {
    seed = (await runBench(loadOptions(options, leaderUrl), [leaderUrl])).seed;
  } finally {
    clearInterval(sampler);
    sample();
  }
  const loadSeconds = Math.round(performance.now() - startMs) / 1000;
  const hwm = nodes.map((node) => readProcMemory(node.child.pid)?.hwmMb ?? 0);
  await allCaughtUp(nodes);
  await sleep(options.settleSeconds * 1000);
  const statuses = await Promise.all(nodes.map((node) => status(node.url)));
  const breakdowns = await Promise.all(nodes.map(breakdown));
  const reports = nodes.map((node, i): NodeReport => ({
    label: node.label,
    role: String(statuses[i]?.role),
    keys: Number(statuses[i]?.keys),
    loadPeakRssMb: node.peakRssMb,
    loadHwmMb: hwm[i],
    rssAfterLoadMb: readProcMemory(node.child.pid)?.rssMb ?? 0,
    afterLoad: breakdowns[i],
  }));
  const followerAt = statuses.findIndex((s) => s?.role !== "leader");
  const restart = await restartFollower(options, nodes, followerAt);
  return {
    keys: options.keys,
    valueBytes: options.valueBytes,
    loadSeconds,
    writesOk: seed?.ok ?? 0,
    writeErrors: seed?.errors ?? 0,
    snapshotBytes: Math.max(...statuses.map((s) => Number(s?.snapshotBytes ?? 0))),
    nodes: reports,
    restart,
  };
}

async function restartFollower(
  options: MemoryOptions,
  nodes: Node[],
  at: number,
): Promise<MemoryReport["restart"]> {
  const old = nodes[at];
  await stopNode(old);
  const node = spawnNode(old.label, old.url, old.args);
  nodes[at] = node;
  const startMs = performance.now();
  const client = new RaftkvClient({ servers: [node.url], timeoutMs: 5_000 });
  const key = keyName(0, options.keys);
  await waitFor(`${node.label} to serve /get`, SERVING_WAIT_MS, async () => {
    if (node.exited) throw new Error(`${node.label} exited after its restart`);
    const answer = await client.get(key, { consistency: "linearizable" }).catch(() => undefined);
    return answer?.status === 200 ? true : undefined;
  });
  const servingMs = Math.round(performance.now() - startMs);
  await allCaughtUp(nodes);
  const caughtUpMs = Math.round(performance.now() - startMs);
  await sleep(options.settleSeconds * 1000);
  const memory = readProcMemory(node.child.pid);
  const afterRestart = await breakdown(node);
  return {
    label: node.label,
    servingMs,
    caughtUpMs,
    rssAfterRestartMb: memory?.rssMb ?? 0,
    hwmAfterRestartMb: memory?.hwmMb ?? 0,
    afterRestart,
  };
}

/** Runs the measurement; always stops the nodes and removes the directory. */
export async function runMemory(options: MemoryOptions): Promise<MemoryReport> {
  const dir = await Deno.makeTempDir({ prefix: "raftkv-memory-" });
  const nodes: Node[] = [];
  const stopAll = () => Promise.all(nodes.map(stopNode));
  const onSignal = () => {
    stopAll().finally(() => Deno.removeSync(dir, { recursive: true })).finally(() =>
      Deno.exit(130)
    );
  };
  Deno.addSignalListener("SIGINT", onSignal);
  try {
    return await measure(options, dir, nodes);
  } catch (error) {
    for (const node of nodes) {
      if (node.stderrTail.length > 0) writeErr(`[${node.label}] ${node.stderrTail.join("\n")}\n`);
    }
    throw error;
  } finally {
    await stopAll();
    Deno.removeSignalListener("SIGINT", onSignal);
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  let options;
  try {
    options = parseMemoryArgs(Deno.args);
  } catch (error) {
    writeErr(`error: ${(error as Error).message}\n`);
    Deno.exit(2);
  }
  if (options === "help") {
    writeErr(`${USAGE}\n`);
    Deno.exit(0);
  }
  const report = await runMemory(options);
  const text = options.json ? `${JSON.stringify(report)}\n` : formatReport(report);
  Deno.stdout.writeSync(encoder.encode(text));
}
