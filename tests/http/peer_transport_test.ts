import assert from "node:assert/strict";
import { Hono } from "hono";
import {
  PEER_QUEUE_MESSAGES_MAX,
  PEER_REQUESTS_INFLIGHT_MAX,
  PeerTransport,
} from "../../http/peer_transport.ts";
import { createRaftRoutes } from "../../http/raft_routes.ts";
import type { LogFields, Logger } from "../../raft/logger.ts";
import type { Message } from "../../raft/types.ts";
import { parseMessages } from "../../raft/wire.ts";

const CLUSTER = "cluster-a";

interface Received {
  path: string;
  cluster: string | null;
  contentType: string | null;
  messages: Message[];
}

/** A peer: a real HTTP server on a loopback port that records what reaches it. */
class FakePeer {
  received: Received[] = [];
  #server: Deno.HttpServer<Deno.NetAddr>;
  /** While set, requests wait on it: a peer that accepts but does not answer. */
  hang: Promise<void> | undefined;

  constructor(port = 0) {
    this.#server = Deno.serve(
      { port, hostname: "127.0.0.1", onListen() {} },
      (request) => this.#handle(request),
    );
  }

  get port(): number {
    return this.#server.addr.port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  messages(): Message[] {
    return this.received.flatMap((request) => request.messages);
  }

  stop(): Promise<void> {
    return this.#server.shutdown();
  }

  async #handle(request: Request): Promise<Response> {
    const bytes = new Uint8Array(await request.arrayBuffer());
    await this.hang;
    this.received.push({
      path: new URL(request.url).pathname,
      cluster: request.headers.get("X-Raft-Cluster"),
      contentType: request.headers.get("Content-Type"),
      messages: parseMessages(bytes),
    });
    return new Response(null, { status: 204 });
  }
}

class RecordingLogger implements Logger {
  records: { level: string; message: string; fields: LogFields }[] = [];
  debug(message: string, fields: LogFields = {}): void {
    this.records.push({ level: "debug", message, fields });
  }
  info(message: string, fields: LogFields = {}): void {
    this.records.push({ level: "info", message, fields });
  }
  warn(message: string, fields: LogFields = {}): void {
    this.records.push({ level: "warn", message, fields });
  }
  error(message: string, fields: LogFields = {}): void {
    this.records.push({ level: "error", message, fields });
  }
  count(message: string): number {
    return this.records.filter((record) => record.message === message).length;
  }
}

function heartbeat(to: string, commit: number): Message {
  return { type: "heartbeat", from: "n1", to, term: 2, commit, readRound: 0 };
}

function snapshotFor(to: string): Message {
  return {
    type: "installSnapshot",
    from: "n1",
    to,
    term: 2,
    snapshot: {
      metadata: { index: 40, term: 2, confState: { members: [] } },
      data: new Uint8Array(100_000).fill(7),
    },
  };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitFor(condition: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  for (let waitedMs = 0; !condition(); waitedMs += 10) {
    if (waitedMs >= timeoutMs) throw new Error(`Timed out waiting for ${what}`);
    await delay(10);
  }
}

function setup(
  peers: Record<string, string>,
  options: { requestTimeoutMs?: number; fetch?: typeof fetch } = {},
): { transport: PeerTransport; logger: RecordingLogger; unreachable: string[] } {
  const logger = new RecordingLogger();
  const unreachable: string[] = [];
  const transport = new PeerTransport({
    selfId: "n1",
    clusterId: CLUSTER,
    logger,
    onUnreachable: (peer) => unreachable.push(peer),
    ...options,
  });
  transport.setPeers(new Map(Object.entries({ n1: "http://127.0.0.1:1", ...peers })));
  return { transport, logger, unreachable };
}

/** A loopback port nothing listens on (bound, then released). */
function closedPort(): number {
  const listener = Deno.listen({ port: 0, hostname: "127.0.0.1" });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

Deno.test("PeerTransport sends one turn's messages as one ordered batch", async () => {
  const peer = new FakePeer();
  const { transport } = setup({ n2: peer.url });
  const messages = Array.from({ length: 200 }, (_, i) => heartbeat("n2", i));
  transport.send(messages.slice(0, 120));
  transport.send(messages.slice(120));
  await waitFor(() => peer.messages().length === 200, "200 messages");
  assert.equal(peer.received.length, 1);
  assert.deepStrictEqual(peer.received[0], {
    path: "/raft/messages",
    cluster: CLUSTER,
    contentType: "application/msgpack",
    messages,
  });
  await transport.close();
  await peer.stop();
});

Deno.test("PeerTransport keeps order within each request across many turns", async () => {
  const peer = new FakePeer();
  const { transport } = setup({ n2: peer.url });
  for (let i = 0; i < 300; i++) {
    transport.send([heartbeat("n2", 2 * i), heartbeat("n2", 2 * i + 1)]);
    if (i % 10 === 0) await delay(0);
  }
  await waitFor(() => peer.messages().length === 600, "600 messages");
  for (const request of peer.received) {
    const commits = request.messages.map((m) => (m as { commit: number }).commit);
    assert.deepStrictEqual(commits, [...commits].sort((a, b) => a - b));
  }
  assert(peer.received.length < 300, "turns are batched while requests are in flight");
  assert.equal(transport.stats()[0].sentMessages, 600);
  await transport.close();
  await peer.stop();
});

Deno.test("PeerTransport sends installSnapshot alone to /raft/snapshot", async () => {
  const peer = new FakePeer();
  const { transport } = setup({ n2: peer.url });
  transport.send([heartbeat("n2", 1), snapshotFor("n2"), heartbeat("n2", 2)]);
  await waitFor(() => peer.messages().length === 3, "3 messages");
  const snapshots = peer.received.filter((request) => request.path === "/raft/snapshot");
  assert.equal(snapshots.length, 1);
  assert.deepStrictEqual(snapshots[0].messages, [snapshotFor("n2")]);
  assert(
    peer.received.filter((request) => request.path === "/raft/messages")
      .every((request) => request.messages.every((message) => message.type === "heartbeat")),
  );
  await transport.close();
  await peer.stop();
});

Deno.test("PeerTransport drops messages for unknown peers and for itself", async () => {
  const { transport } = setup({});
  transport.send([heartbeat("n9", 1), heartbeat("n1", 1)]);
  assert.equal(transport.unroutableMessages(), 2);
  assert.deepStrictEqual(transport.stats(), []);
  await transport.close();
});

Deno.test("PeerTransport backs off a down peer, then recovers on the same port", async () => {
  const first = new FakePeer();
  const port = first.port;
  const { transport, logger, unreachable } = setup({ n2: first.url });
  transport.send([heartbeat("n2", 1)]);
  await waitFor(() => first.messages().length === 1, "the first message");
  await first.stop();

  // Down: many sends, one report for the whole streak, and few requests thanks to back-off.
  for (let i = 0; i < 20; i++) {
    transport.send([heartbeat("n2", 100 + i)]);
    await delay(20);
  }
  assert.deepStrictEqual(unreachable, ["n2"]);
  assert.equal(logger.count("peer unreachable"), 1);
  const failures = transport.stats()[0].failures;
  assert(failures >= 2 && failures <= 8, `${failures} failures in 400 ms of back-off`);

  const second = new FakePeer(port);
  for (let i = 0; second.messages().length === 0; i++) {
    transport.send([heartbeat("n2", 200 + i)]);
    await delay(20);
    assert(i < 100, "the peer got a message within 2 s of coming back");
  }
  await waitFor(() => logger.count("peer reachable again") === 1, "the recovery log");
  const stats = transport.stats()[0];
  assert.equal(stats.failures, 0);
  assert.equal(stats.unreachable, false);
  assert.deepStrictEqual(unreachable, ["n2"]);
  await transport.close();
  await second.stop();
});

Deno.test("PeerTransport reports nothing when a peer restarts between two sends", async () => {
  const first = new FakePeer();
  const { transport, logger, unreachable } = setup({ n2: first.url });
  transport.send([heartbeat("n2", 1)]);
  await waitFor(() => first.messages().length === 1, "the first message");
  // The fetch client keeps the connection alive; the restart leaves it stale.
  await first.stop();
  const second = new FakePeer(first.port);
  transport.send([heartbeat("n2", 2)]);
  await waitFor(() => second.messages().length === 1, "the message after the restart");
  assert.deepStrictEqual(unreachable, []);
  assert.equal(logger.count("peer unreachable"), 0);
  await transport.close();
  await second.stop();
});

/**
 * A raw HTTP/1.1 peer that answers the first request on each connection with keep-alive, then
 * closes the connection when a second request arrives on it: what a client sees when the peer
 * restarted while its connection sat idle in the pool.
 */
class StaleConnectionPeer {
  delivered = 0;
  #listener = Deno.listen({ port: 0, hostname: "127.0.0.1" });
  #conns = new Set<Deno.Conn>();
  #done: Promise<void>;

  constructor() {
    this.#done = this.#accept();
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#listener.addr as Deno.NetAddr).port}`;
  }

  async stop(): Promise<void> {
    this.#listener.close();
    for (const conn of this.#conns) conn.close();
    await this.#done;
  }

  async #accept(): Promise<void> {
    const serving: Promise<void>[] = [];
    try {
      for await (const conn of this.#listener) serving.push(this.#serve(conn));
    } catch {
      // The listener was closed.
    }
    await Promise.allSettled(serving);
  }

  async #serve(conn: Deno.Conn): Promise<void> {
    this.#conns.add(conn);
    const buffer = new Uint8Array(64 * 1024);
    let pending = "";
    let requests = 0;
    try {
      for (;;) {
        const read = await conn.read(buffer);
        if (read === null) break;
        pending += new TextDecoder("latin1").decode(buffer.subarray(0, read));
        const end = pending.indexOf("\r\n\r\n");
        if (end < 0) continue;
        const length = Number(/content-length: *(\d+)/i.exec(pending.slice(0, end))?.[1] ?? 0);
        if (pending.length < end + 4 + length) continue;
        pending = pending.slice(end + 4 + length);
        requests++;
        if (requests > 1) break;
        this.delivered++;
        await conn.write(new TextEncoder().encode("HTTP/1.1 204 No Content\r\n\r\n"));
      }
    } catch {
      // Closed by stop().
    }
    if (this.#conns.delete(conn)) conn.close();
  }
}

Deno.test("PeerTransport reports nothing when the peer closes a kept-alive connection", async () => {
  const peer = new StaleConnectionPeer();
  const { transport, logger, unreachable } = setup({ n2: peer.url });
  for (let i = 1; i <= 3; i++) {
    transport.send([heartbeat("n2", i)]);
    await waitFor(() => peer.delivered === i, `message ${i}`);
  }
  assert.deepStrictEqual(unreachable, []);
  assert.equal(logger.count("peer unreachable"), 0);
  await transport.close();
  await peer.stop();
});

Deno.test("PeerTransport retries once at once on a network error before counting a failure", async () => {
  const peer = new FakePeer();
  let calls = 0;
  let breaking = 1;
  const flaky: typeof fetch = (input, init) => {
    calls++;
    if (breaking-- > 0) return Promise.reject(new TypeError("connection reset by peer"));
    return fetch(input, init);
  };
  const { transport, unreachable } = setup({ n2: peer.url }, { fetch: flaky });
  transport.send([heartbeat("n2", 1)]);
  await waitFor(() => peer.messages().length === 1, "the message after one reset");
  assert.equal(calls, 2);
  assert.deepStrictEqual(unreachable, []);
  // Two resets in a row are a real failure.
  breaking = 2;
  transport.send([heartbeat("n2", 2)]);
  await waitFor(() => unreachable.length === 1, "the failure");
  assert.equal(calls, 4);
  await transport.close();
  await peer.stop();
});

Deno.test("PeerTransport keeps serving a healthy peer while another is down", async () => {
  const healthy = new FakePeer();
  const { transport, unreachable } = setup({
    n2: `http://127.0.0.1:${closedPort()}`,
    n3: healthy.url,
  });
  for (let i = 0; i < 10; i++) {
    transport.send([heartbeat("n2", i), heartbeat("n3", i)]);
    await delay(10);
  }
  await waitFor(() => healthy.messages().length === 10, "10 messages to the healthy peer");
  assert.deepStrictEqual(unreachable, ["n2"]);
  await transport.close();
  await healthy.stop();
});

Deno.test("PeerTransport gives up on a request after requestTimeoutMs", async () => {
  const peer = new FakePeer();
  let release = () => {};
  peer.hang = new Promise((resolve) => release = resolve);
  const { transport, logger, unreachable } = setup({ n2: peer.url }, { requestTimeoutMs: 150 });
  transport.send([heartbeat("n2", 1)]);
  await waitFor(() => unreachable.length === 1, "the timeout");
  const warning = logger.records.find((record) => record.message === "peer unreachable");
  assert.match(String(warning?.fields.error), /no answer within 150 ms/);
  await transport.close();
  release();
  await peer.stop();
});

Deno.test("PeerTransport bounds a peer's queue and drops the oldest", async () => {
  const { transport } = setup({ n2: `http://127.0.0.1:${closedPort()}` });
  transport.send([heartbeat("n2", 0)]);
  await waitFor(() => transport.stats()[0].failures === 1, "the first failure");
  // Backing off now: what is sent waits in the queue.
  const extra = 100;
  transport.send(
    Array.from({ length: PEER_QUEUE_MESSAGES_MAX + extra }, (_, i) => heartbeat("n2", i)),
  );
  const stats = transport.stats()[0];
  assert.equal(stats.queuedMessages, PEER_QUEUE_MESSAGES_MAX);
  assert(stats.droppedMessages >= extra);
  await transport.close();
});

Deno.test("PeerTransport.close() aborts requests in flight and resolves when idle", async () => {
  const peer = new FakePeer();
  let release = () => {};
  peer.hang = new Promise((resolve) => release = resolve);
  const { transport, unreachable } = setup({ n2: peer.url });
  transport.send([heartbeat("n2", 1), snapshotFor("n2")]);
  await waitFor(() => transport.stats()[0].inflightRequests === 2, "2 requests in flight");
  const started = performance.now();
  await transport.close();
  assert(performance.now() - started < 1_000, "close() does not wait for the peer");
  assert.equal(transport.stats()[0].inflightRequests, 0);
  transport.send([heartbeat("n2", 2)]);
  assert.equal(transport.stats()[0].queuedMessages, 0);
  assert.deepStrictEqual(unreachable, []);
  release();
  await peer.stop();
});

Deno.test("PeerTransport pipelines at most PEER_REQUESTS_INFLIGHT_MAX requests per peer", async () => {
  const peer = new FakePeer();
  let release = () => {};
  peer.hang = new Promise((resolve) => release = resolve);
  const { transport } = setup({ n2: peer.url });
  for (let i = 0; i < 10; i++) {
    transport.send([heartbeat("n2", i)]);
    await delay(5);
  }
  await waitFor(
    () => transport.stats()[0].inflightRequests === PEER_REQUESTS_INFLIGHT_MAX,
    "a full pipe",
  );
  await delay(20);
  assert.equal(transport.stats()[0].inflightRequests, PEER_REQUESTS_INFLIGHT_MAX);
  assert(transport.stats()[0].queuedMessages > 0, "the rest waits in the queue");
  release();
  peer.hang = undefined;
  await waitFor(() => peer.messages().length === 10, "all 10 messages");
  await transport.close();
  await peer.stop();
});

Deno.test("PeerTransport survives an onUnreachable callback that throws", async () => {
  const logger = new RecordingLogger();
  const transport = new PeerTransport({
    selfId: "n1",
    clusterId: CLUSTER,
    logger,
    onUnreachable: () => {
      throw new Error("callback failed");
    },
  });
  transport.setPeers(new Map([["n2", `http://127.0.0.1:${closedPort()}`]]));
  transport.send([heartbeat("n2", 1)]);
  await waitFor(() => logger.count("peer delivery failed") === 1, "the logged callback error");
  // The back-off still runs, and the next message probes again.
  transport.send([heartbeat("n2", 2)]);
  await waitFor(() => transport.stats()[0].failures >= 2, "a second probe after the back-off");
  await transport.close();
});

/** A real node's /raft routes on a loopback port, stepping into `stepped`. */
function servePeerNode(clusterId: string, stepped: Message[]): Deno.HttpServer<Deno.NetAddr> {
  const app = new Hono();
  const node = { step: (message: Message) => void stepped.push(message) };
  app.route(
    "/raft",
    createRaftRoutes({ node, selfId: "n2", clusterId, logger: new RecordingLogger() }),
  );
  return Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, app.fetch);
}

Deno.test("PeerTransport and the /raft routes deliver messages end to end", async () => {
  const stepped: Message[] = [];
  const server = servePeerNode(CLUSTER, stepped);
  const { transport, unreachable } = setup({ n2: `http://127.0.0.1:${server.addr.port}` });
  const messages = [heartbeat("n2", 1), snapshotFor("n2"), heartbeat("n2", 2)];
  transport.send(messages);
  await waitFor(() => stepped.length === 3, "3 stepped messages");
  assert.deepStrictEqual(
    stepped.map((message) => message.type).sort(),
    ["heartbeat", "heartbeat", "installSnapshot"],
  );
  assert.deepStrictEqual(unreachable, []);
  await transport.close();
  await server.shutdown();
});

Deno.test("PeerTransport counts a node of another cluster as unreachable", async () => {
  const stepped: Message[] = [];
  const server = servePeerNode("cluster-b", stepped);
  const { transport, logger, unreachable } = setup({ n2: `http://127.0.0.1:${server.addr.port}` });
  transport.send([heartbeat("n2", 1)]);
  await waitFor(() => unreachable.length === 1, "the refusal");
  const warning = logger.records.find((record) => record.message === "peer unreachable");
  assert.match(String(warning?.fields.error), /HTTP 409: .*cluster id mismatch/);
  assert.deepStrictEqual(stepped, []);
  await transport.close();
  await server.shutdown();
});
