/**
 * Real raftkv processes for end-to-end tests: free loopback ports, temporary dirs, and cleanup
 * that always runs (SIGKILL on whatever is left).
 */
import { RaftkvClient, UnavailableError } from "../../http/mod.ts";

const MAIN_TS = new URL("../../main.ts", import.meta.url).pathname;
const decoder = new TextDecoder();

/** A port that was free a moment ago (bind port 0, read it, close). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` until it returns a value other than undefined, or throws at the deadline. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  options: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    await sleep(options.intervalMs ?? 50);
  }
  throw new Error(`Timed out waiting for ${what}${lastError ? `: ${lastError}` : ""}`);
}

export interface NodeSpec {
  port: number;
  dir: string;
  /** Extra flags, e.g. ["--peers", "..."] or ["--join", url]. */
  args: string[];
}

/** One raftkv process. Its output is kept for the test's failure messages. */
export class NodeProcess {
  readonly spec: NodeSpec;
  readonly url: string;
  #child: Deno.ChildProcess | undefined;
  #output = "";
  #exit: Promise<Deno.CommandStatus> | undefined;
  #exitedSinceStart = false;

  constructor(spec: NodeSpec) {
    this.spec = spec;
    this.url = `http://127.0.0.1:${spec.port}`;
  }

  get running(): boolean {
    return this.#child !== undefined;
  }

  get output(): string {
    return this.#output;
  }

  start(command: string[] = [Deno.execPath(), "run", "-A", MAIN_TS]): void {
    if (this.#child !== undefined) throw new Error(`node ${this.url} is already running`);
    const [program, ...rest] = command;
    this.#child = new Deno.Command(program, {
      args: [
        ...rest,
        "--port",
        String(this.spec.port),
        "--dir",
        this.spec.dir,
        "--election-timeout-ms",
        "1000",
        ...this.spec.args,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#collect(this.#child.stdout);
    this.#collect(this.#child.stderr);
    this.#exitedSinceStart = false;
    const exit = this.#child.status;
    this.#exit = exit;
    exit.then(() => {
      if (this.#exit === exit) this.#exitedSinceStart = true;
    });
  }

  /** True once the process started last has exited (by itself or stopped), until a restart. */
  get exitedSinceStart(): boolean {
    return this.#exitedSinceStart;
  }

  async #collect(stream: ReadableStream<Uint8Array>): Promise<void> {
    try {
      for await (const chunk of stream) {
        this.#output += decoder.decode(chunk);
        if (this.#output.length > 1_000_000) this.#output = this.#output.slice(-500_000);
      }
    } catch {
      // the process is gone
    }
  }

  /** Sends a signal and waits for the exit; returns the exit code. */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<number> {
    const child = this.#child;
    if (child === undefined) return 0;
    try {
      child.kill(signal);
    } catch {
      // already exited
    }
    const status = await this.#exit!;
    this.#child = undefined;
    return status.code;
  }

  kill(): Promise<number> {
    return this.stop("SIGKILL");
  }

  /** Waits for the process to exit by itself; returns the exit code. */
  async exited(): Promise<number> {
    const status = await this.#exit!;
    this.#child = undefined;
    return status.code;
  }

  client(timeoutMs = 10_000): RaftkvClient {
    return new RaftkvClient({ servers: [this.url], timeoutMs });
  }

  async status(): Promise<Record<string, unknown>> {
    const response = await fetch(`${this.url}/status`, { signal: AbortSignal.timeout(2_000) });
    return await response.json();
  }
}

/** Cluster starts tried on fresh ports when a node finds its port taken. */
export const CLUSTER_START_ATTEMPTS = 3;

/**
 * Waits until every node answers /status. A node that exits first failed to start: "portTaken"
 * when its port was bound by someone else in the meantime (freePort() only saw it free a moment
 * ago), so the caller can start again on fresh ports; any other exit throws.
 */
export async function waitServing(
  nodes: NodeProcess[],
  timeoutMs = 30_000,
): Promise<"serving" | "portTaken"> {
  return await waitFor("every node to serve", async () => {
    for (const node of nodes) {
      if (!node.exitedSinceStart) continue;
      if (/address in use/i.test(node.output)) return "portTaken";
      throw new Error(`node ${node.url} exited while starting:\n${node.output.slice(-2000)}`);
    }
    const answers = await Promise.all(nodes.map((node) => node.status().catch(() => undefined)));
    return answers.every((answer) => answer !== undefined) ? "serving" : undefined;
  }, { timeoutMs });
}

/**
 * Starts a cluster built by `build` on fresh ports, again (up to CLUSTER_START_ATTEMPTS times)
 * when a node lost its port to another process; `ready` then waits for what the test needs.
 * Whatever fails is destroyed.
 */
export async function startOnFreshPorts<
  C extends { nodes: NodeProcess[]; destroy(): Promise<void> },
>(
  build: () => Promise<C>,
  ready: (cluster: C) => Promise<unknown>,
): Promise<C> {
  for (let attempt = 1;; attempt++) {
    const cluster = await build();
    try {
      for (const node of cluster.nodes) node.start();
      if (await waitServing(cluster.nodes) === "serving") {
        await ready(cluster);
        return cluster;
      }
      if (attempt === CLUSTER_START_ATTEMPTS) {
        throw new Error(`A node's port was taken in each of ${attempt} starts`);
      }
    } catch (error) {
      await cluster.destroy();
      throw error;
    }
    await cluster.destroy();
  }
}

/** A cluster of raftkv processes on free loopback ports, in one temporary directory. */
export class Cluster {
  readonly nodes: NodeProcess[];
  readonly root: string;

  private constructor(root: string, nodes: NodeProcess[]) {
    this.root = root;
    this.nodes = nodes;
  }

  /** Starts `size` nodes with the same --peers list and waits for a leader. */
  static start(size: number, options: { extraArgs?: string[] } = {}): Promise<Cluster> {
    return startOnFreshPorts(async () => {
      const root = await Deno.makeTempDir({ prefix: "raftkv-e2e-" });
      const ports = Array.from({ length: size }, () => freePort());
      const peers = ports.map((port) => `http://127.0.0.1:${port}`).join(",");
      const nodes = ports.map((port, i) =>
        new NodeProcess({
          port,
          dir: `${root}/node${i + 1}`,
          args: ["--peers", peers, ...(options.extraArgs ?? [])],
        })
      );
      return new Cluster(root, nodes);
    }, (cluster) => cluster.leader());
  }

  /** The node that every running node agrees leads, once there is one. */
  leader(timeoutMs = 30_000): Promise<NodeProcess> {
    return waitFor("a leader", async () => {
      for (const node of this.nodes.filter((n) => n.running)) {
        const status = await node.status().catch(() => undefined);
        if (status?.role === "leader") return node;
      }
      return undefined;
    }, { timeoutMs });
  }

  followers(leader: NodeProcess): NodeProcess[] {
    return this.nodes.filter((node) => node !== leader && node.running);
  }

  /** A client that knows every node. */
  client(timeoutMs = 10_000): RaftkvClient {
    return new RaftkvClient({ servers: this.nodes.map((node) => node.url), timeoutMs });
  }

  /** Kills every process and removes the directory. Safe to call twice. */
  async destroy(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.kill()));
    await Deno.remove(this.root, { recursive: true }).catch(() => {});
  }

  /** Every node's output, for a failing test's message. */
  logs(): string {
    return this.nodes.map((node, i) =>
      `--- node${i + 1} (${node.url})\n${node.output.slice(-4000)}`
    ).join("\n");
  }
}

// ---------------------------------------------------------------------------------------------
// Additions for the API, crash, identity, idempotency and bad-input tests.

/** An HTTP answer read to the end: status, headers, raw text and the JSON body if it is one. */
export interface HttpAnswer {
  status: number;
  headers: Headers;
  text: string;
  /** The body parsed as a JSON object, or undefined when it is not one. */
  json: Record<string, unknown> | undefined;
}

/** One HTTP request whose body is always read (an unread body leaks the connection). */
export async function httpRequest(
  url: string,
  init: RequestInit & { timeoutMs?: number } = {},
): Promise<HttpAnswer> {
  const { timeoutMs, ...rest } = init;
  const response = await fetch(url, {
    ...rest,
    signal: AbortSignal.timeout(timeoutMs ?? 15_000),
  });
  const text = await response.text();
  let json: Record<string, unknown> | undefined;
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value === "object" && value !== null && !Array.isArray(value)) {
      json = value as Record<string, unknown>;
    }
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json };
}

/** Waits until `node` answers 200 on /ready (it knows a leader and applied what is committed). */
export function waitReady(node: NodeProcess, timeoutMs = 30_000): Promise<true> {
  return waitFor(`${node.url}/ready`, async () => {
    const answer = await httpRequest(`${node.url}/ready`, { timeoutMs: 2_000 });
    return answer.status === 200 ? true : undefined;
  }, { timeoutMs, intervalMs: 100 });
}

/** Waits until `node` has applied at least `index`; returns its applied index. */
export function waitApplied(node: NodeProcess, index: number, timeoutMs = 30_000): Promise<number> {
  return waitFor(`${node.url} to apply index ${index}`, async () => {
    const applied = (await node.status()).appliedIndex;
    return typeof applied === "number" && applied >= index ? applied : undefined;
  }, { timeoutMs, intervalMs: 100 });
}

/** Runs `task` on every item with at most `limit` running at once; results in input order. */
export async function mapConcurrent<T, R>(
  items: readonly T[],
  limit: number,
  task: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await task(items[index], index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** Waits for `node` to exit by itself; kills it and throws if it is still running at the deadline. */
export async function waitExit(node: NodeProcess, timeoutMs = 30_000): Promise<number> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), timeoutMs);
  });
  try {
    const code = await Promise.race([node.exited(), timeout]);
    if (code !== "timeout") return code;
  } finally {
    clearTimeout(timer);
  }
  await node.kill();
  throw new Error(`${node.url} was still running after ${timeoutMs} ms:\n${node.output}`);
}

/**
 * Sends `head` (request line and headers, without the blank line) and `body` over a raw TCP
 * connection with "Connection: close", for requests fetch would normalize or refuse (paths with
 * "..", very long URLs, bytes that are not UTF-8). Returns the status and the decoded body.
 */
export async function rawHttp(
  port: number,
  head: string,
  body: Uint8Array = new Uint8Array(0),
  timeoutMs = 15_000,
): Promise<HttpAnswer> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = setTimeout(() => conn.close(), timeoutMs);
  const chunks: Uint8Array[] = [];
  try {
    const headText = `${head}\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n` +
      `Content-Length: ${body.length}\r\n\r\n`;
    const request = new Uint8Array([...latin1(headText), ...body]);
    for (let written = 0; written < request.length;) {
      written += await conn.write(request.subarray(written));
    }
    const buffer = new Uint8Array(64 * 1024);
    for (let reads = 0; reads < 100_000; reads++) {
      const count = await conn.read(buffer).catch(() => null);
      if (count === null) break;
      chunks.push(buffer.slice(0, count));
    }
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // closed by the timer
    }
  }
  return parseRawResponse(concat(chunks));
}

function latin1(text: string): Uint8Array {
  return Uint8Array.from(text, (char) => char.charCodeAt(0) & 0xff);
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const bytes = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return bytes;
}

function indexOfCrlf(bytes: Uint8Array, from: number, double: boolean): number {
  for (let i = from; i + (double ? 3 : 1) < bytes.length; i++) {
    if (bytes[i] !== 13 || bytes[i + 1] !== 10) continue;
    if (!double || (bytes[i + 2] === 13 && bytes[i + 3] === 10)) return i;
  }
  return -1;
}

/** The body of a chunked response, decoded (sizes count bytes, not characters). */
function dechunk(bytes: Uint8Array): Uint8Array {
  const chunks: Uint8Array[] = [];
  for (let offset = 0; offset < bytes.length;) {
    const lineEnd = indexOfCrlf(bytes, offset, false);
    if (lineEnd < 0) break;
    const size = parseInt(new TextDecoder().decode(bytes.subarray(offset, lineEnd)), 16);
    if (!(size > 0)) break;
    chunks.push(bytes.subarray(lineEnd + 2, lineEnd + 2 + size));
    offset = lineEnd + 2 + size + 2;
  }
  return concat(chunks);
}

function parseRawResponse(bytes: Uint8Array): HttpAnswer {
  const decoder = new TextDecoder();
  const end = indexOfCrlf(bytes, 0, true);
  if (end < 0) {
    throw new Error(
      `Incomplete HTTP response: ${JSON.stringify(decoder.decode(bytes).slice(0, 200))}`,
    );
  }
  const [statusLine, ...headerLines] = decoder.decode(bytes.subarray(0, end)).split("\r\n");
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1]);
  if (!Number.isInteger(status)) throw new Error(`Bad status line: ${JSON.stringify(statusLine)}`);
  const headers = new Headers();
  for (const line of headerLines) {
    const colon = line.indexOf(":");
    if (colon > 0) headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  const rawBody = bytes.subarray(end + 4);
  const chunked = /chunked/i.test(headers.get("transfer-encoding") ?? "");
  const text = decoder.decode(chunked ? dechunk(rawBody) : rawBody);
  let json: Record<string, unknown> | undefined;
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value === "object" && value !== null && !Array.isArray(value)) {
      json = value as Record<string, unknown>;
    }
  } catch {
    json = undefined;
  }
  return { status, headers, text, json };
}

/** A request that no server received (every connection was refused): it did not happen. */
export function neverSent(error: unknown): boolean {
  return error instanceof UnavailableError &&
    error.failures.every((failure) => failure.reason === "connection refused");
}
