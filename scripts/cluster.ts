/** `deno task cluster [--nodes 3] [--base-port 2020] [--dir-prefix data] [-- extra node flags]`:
 * runs a local raftkv cluster on loopback, one `deno run main.ts` process per node, prints
 * their output prefixed with "[n1] " and so on, and stops them all on Ctrl-C or SIGTERM. */

import { parseArgs } from "node:util";
import { RaftkvClient } from "../http/mod.ts";

const LEADER_WAIT_MS = 30_000;
const STOP_GRACE_MS = 5_000;
const POLL_INTERVAL_MS = 250;

export interface ClusterOptions {
  nodes: number;
  basePort: number;
  dirPrefix: string;
  /** Extra flags passed to every node (after `--` on the command line). */
  extraArgs: string[];
  /** The entry point each node runs; default this repository's main.ts. */
  main: string;
}

export interface NodeSpec {
  label: string;
  port: number;
  dir: string;
  url: string;
  args: string[];
}

const USAGE = "Usage: deno task cluster [--nodes N] [--base-port P] [--dir-prefix PREFIX] " +
  "[-- extra raftkv flags]";

/** Throws TypeError with one line on a bad command line. */
export function parseClusterArgs(args: string[]): ClusterOptions | "help" {
  const separator = args.indexOf("--");
  const own = separator < 0 ? args : args.slice(0, separator);
  const extraArgs = separator < 0 ? [] : args.slice(separator + 1);
  let values;
  try {
    values = parseArgs({
      args: own,
      options: {
        nodes: { type: "string", default: "3" },
        "base-port": { type: "string", default: "2020" },
        "dir-prefix": { type: "string", default: "data" },
        main: { type: "string", default: `${import.meta.dirname}/../main.ts` },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (error) {
    throw new TypeError(`${(error as Error).message.split("\n")[0]}: ${USAGE}`);
  }
  if (values.help) return "help";
  const nodes = Number(values.nodes);
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > 9) {
    throw new TypeError(`Invalid value "${values.nodes}" for --nodes: expected 1 to 9`);
  }
  const basePort = Number(values["base-port"]);
  if (!Number.isInteger(basePort) || basePort < 1 || basePort + nodes - 1 > 65535) {
    throw new TypeError(`Invalid value "${values["base-port"]}" for --base-port`);
  }
  if (values["dir-prefix"] === "") throw new TypeError("Invalid value for --dir-prefix: empty");
  return { nodes, basePort, dirPrefix: values["dir-prefix"], extraArgs, main: values.main };
}

/** The command line of each node: the same --peers string for all, as API.md recommends. */
export function nodeSpecs(options: ClusterOptions): NodeSpec[] {
  const ports = Array.from({ length: options.nodes }, (_, i) => options.basePort + i);
  const urls = ports.map((port) => `http://127.0.0.1:${port}`);
  return ports.map((port, i) => ({
    label: `n${i + 1}`,
    port,
    dir: `${options.dirPrefix}${i + 1}`,
    url: urls[i],
    args: [
      "run",
      "-A",
      options.main,
      "--port",
      String(port),
      "--dir",
      `${options.dirPrefix}${i + 1}`,
      ...(options.nodes > 1 ? ["--peers", urls.join(",")] : []),
      ...options.extraArgs,
    ],
  }));
}

/** The port, if one of them is already taken on 127.0.0.1. */
export function findBusyPort(ports: number[]): number | undefined {
  for (const port of ports) {
    try {
      Deno.listen({ hostname: "127.0.0.1", port }).close();
    } catch (error) {
      if (error instanceof Deno.errors.AddrInUse) return port;
      throw error;
    }
  }
  return undefined;
}

/** The lines the user can paste to try the cluster. */
export function tryLines(specs: NodeSpec[], leaderUrl: string): string[] {
  const follower = specs.find((spec) => spec.url !== leaderUrl) ?? specs[0];
  return [
    `curl "${leaderUrl}/set?key=x&value=42"`,
    `curl "${follower.url}/get?key=x"`,
    `curl "${follower.url}/get?key=x&consistency=stale"`,
    `curl "${leaderUrl}/cas?key=x&expected=42&value=43"`,
    `curl "${leaderUrl}/status"`,
  ];
}

async function pipeLines(
  stream: ReadableStream<Uint8Array>,
  prefix: string,
  write: (text: string) => void,
): Promise<void> {
  let pending = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    pending += chunk;
    const lines = pending.split("\n");
    pending = lines.pop() ?? "";
    for (const line of lines) write(`${prefix}${line}\n`);
  }
  if (pending !== "") write(`${prefix}${pending}\n`);
}

const encoder = new TextEncoder();
function writeOut(text: string): void {
  Deno.stdout.writeSync(encoder.encode(text));
}
function writeErr(text: string): void {
  Deno.stderr.writeSync(encoder.encode(text));
}

interface RunningNode {
  spec: NodeSpec;
  child: Deno.ChildProcess;
  exited: boolean;
  /** Resolves when the process has exited and its output is drained. */
  done: Promise<Deno.CommandStatus>;
}

function startNode(spec: NodeSpec): RunningNode {
  const child = new Deno.Command(Deno.execPath(), {
    args: spec.args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const node: RunningNode = { spec, child, exited: false, done: Promise.resolve(child.status) };
  const prefix = `[${spec.label}] `;
  node.done = Promise.all([
    pipeLines(child.stdout, prefix, writeOut),
    pipeLines(child.stderr, prefix, writeErr),
    child.status,
  ]).then(([, , status]) => {
    node.exited = true;
    return status;
  });
  return node;
}

/** SIGTERM, then SIGKILL for those still running after STOP_GRACE_MS. */
async function stopNodes(nodes: RunningNode[]): Promise<void> {
  for (const node of nodes) {
    if (!node.exited) signal(node.child, "SIGTERM");
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const grace = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), STOP_GRACE_MS);
  });
  const all = Promise.all(nodes.map((node) => node.done));
  if (await Promise.race([all, grace]) === "timeout") {
    for (const node of nodes) {
      if (!node.exited) {
        writeErr(`cluster: ${node.spec.label} did not stop in ${STOP_GRACE_MS} ms: SIGKILL\n`);
        signal(node.child, "SIGKILL");
      }
    }
    await all;
  }
  clearTimeout(timer);
}

function signal(child: Deno.ChildProcess, name: Deno.Signal): void {
  try {
    child.kill(name);
  } catch {
    // Already exited between the check and the kill.
  }
}

/** Polls /status of every node until one says it is the leader; its URL, or undefined. */
async function waitForLeader(
  nodes: RunningNode[],
  stopped: () => boolean,
): Promise<string | undefined> {
  const deadline = Date.now() + LEADER_WAIT_MS;
  while (Date.now() < deadline && !stopped()) {
    if (nodes.some((node) => node.exited)) return undefined;
    for (const node of nodes) {
      const client = new RaftkvClient({ servers: [node.spec.url], timeoutMs: 1_000 });
      try {
        const status = await client.status();
        if (status.body.role === "leader") return node.spec.url;
      } catch {
        // Not listening yet.
      }
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
  }
  return undefined;
}

async function runCluster(options: ClusterOptions): Promise<number> {
  const specs = nodeSpecs(options);
  const busy = findBusyPort(specs.map((spec) => spec.port));
  if (busy !== undefined) {
    writeErr(
      `error: Port ${busy} on 127.0.0.1 is busy: stop what uses it or pass --base-port\n`,
    );
    return 1;
  }
  writeErr(`cluster: starting ${specs.length} nodes: ${specs.map((s) => s.url).join(" ")}\n`);
  const nodes = specs.map(startNode);
  let stopRequested = false;
  const stopSignal = Promise.withResolvers<void>();
  const onSignal = () => {
    stopRequested = true;
    stopSignal.resolve();
  };
  const signals: Deno.Signal[] = Deno.build.os === "windows"
    ? ["SIGINT", "SIGBREAK"]
    : ["SIGINT", "SIGTERM"];
  for (const name of signals) Deno.addSignalListener(name, onSignal);
  try {
    const leader = await waitForLeader(nodes, () => stopRequested);
    if (leader === undefined && !stopRequested) {
      const dead = nodes.filter((node) => node.exited).map((node) => node.spec.label);
      writeErr(
        dead.length > 0
          ? `error: Node ${dead.join(", ")} exited before a leader was elected\n`
          : `error: No leader elected within ${LEADER_WAIT_MS} ms\n`,
      );
      return 1;
    }
    if (leader !== undefined) {
      writeOut(`\ncluster: leader is ${leader}; try:\n`);
      for (const line of tryLines(specs, leader)) writeOut(`  ${line}\n`);
      writeOut(`  deno run -A main.ts status --server ${leader}\nCtrl-C stops the cluster.\n\n`);
    }
    // Run until a signal, or until a node exits on its own.
    const anyExit = Promise.race(nodes.map((node) => node.done.then(() => node)));
    const first = await Promise.race([stopSignal.promise, anyExit]);
    if (first !== undefined && !stopRequested) {
      const status = await first.done;
      writeErr(`error: Node ${first.spec.label} exited with code ${status.code}\n`);
      return 1;
    }
    return 0;
  } finally {
    writeErr("cluster: stopping all nodes\n");
    await stopNodes(nodes);
    for (const name of signals) Deno.removeSignalListener(name, onSignal);
  }
}

if (import.meta.main) {
  let options;
  try {
    options = parseClusterArgs(Deno.args);
  } catch (error) {
    writeErr(`error: ${(error as Error).message}\n`);
    Deno.exit(2);
  }
  if (options === "help") {
    writeOut(`${USAGE}\n`);
    Deno.exit(0);
  }
  Deno.exit(await runCluster(options));
}
