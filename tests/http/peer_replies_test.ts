/**
 * Answers that carry messages: a node holds the answer to a peer's request for a moment and
 * puts its own next messages for that peer in it, so a round trip is one HTTP exchange.
 */
import assert from "node:assert/strict";
import { Hono } from "hono";
import { PEER_ANSWER_BYTES_MAX, PeerTransport, REPLY_HEADER } from "../../http/peer_transport.ts";
import { createRaftRoutes } from "../../http/raft_routes.ts";
import type { Logger } from "../../raft/logger.ts";
import type { Message } from "../../raft/types.ts";
import { encodeMessages } from "../../raft/wire.ts";
import { waitFor } from "../e2e/_harness.ts";

const CLUSTER = "cluster-a";

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };

function heartbeat(from: string, to: string, readRound: number): Message {
  return { type: "heartbeat", from, to, term: 2, commit: 0, readRound };
}

function heartbeatResponse(from: string, to: string, readRound: number): Message {
  return { type: "heartbeatResponse", from, to, term: 2, readRound };
}

/** Waits until `condition` holds (polling every 5 ms). */
function until(condition: () => boolean, what: string): Promise<true> {
  return waitFor(what, () => condition() || undefined, { intervalMs: 5 });
}

/**
 * A node on a loopback port: its transport, the /raft routes answering with replyTo, the
 * messages it was given (from requests and from answers alike) and the requests it served.
 */
class PeerNode {
  readonly stepped: Message[] = [];
  requests = 0;
  transport: PeerTransport;
  /** Called for each message stepped: a test makes the node answer like Raft would. */
  onStep: (message: Message) => void = () => {};
  #server: Deno.HttpServer<Deno.NetAddr>;

  constructor(readonly id: string, options: { replies?: boolean; replyWaitMs?: number } = {}) {
    const logger = quiet;
    this.transport = new PeerTransport({
      selfId: id,
      clusterId: CLUSTER,
      logger,
      onMessages: (messages) => messages.forEach((message) => this.#step(message)),
    });
    const node = { step: (message: Message) => this.#step(message) };
    const app = new Hono().route(
      "/raft",
      createRaftRoutes({
        node,
        selfId: id,
        clusterId: CLUSTER,
        logger,
        replyTo: options.replies === false
          ? undefined
          : (from, signal) => this.transport.replyTo(from, { waitMs: options.replyWaitMs, signal }),
      }),
    );
    this.#server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (request) => {
      this.requests++;
      return app.fetch(request);
    });
  }

  get url(): string {
    return `http://127.0.0.1:${this.#server.addr.port}`;
  }

  async stop(): Promise<void> {
    await this.transport.close();
    await this.#server.shutdown();
  }

  #step(message: Message): void {
    this.stepped.push(message);
    this.onStep(message);
  }
}

async function pair(
  options: { replies?: boolean; replyWaitMs?: number } = {},
): Promise<[PeerNode, PeerNode]> {
  const a = new PeerNode("n1");
  const b = new PeerNode("n2", options);
  a.transport.setPeers(new Map([["n2", b.url]]));
  b.transport.setPeers(new Map([["n1", a.url]]));
  await Promise.resolve();
  return [a, b];
}

Deno.test("a heartbeat's answer carries the heartbeatResponse: no request comes back", async () => {
  // A wait far longer than the answer takes, so a slow machine cannot make this a request.
  const [a, b] = await pair({ replyWaitMs: 30_000 });
  b.onStep = (message) => {
    // The node answers in a later turn, as Raft does after its write.
    if (message.type === "heartbeat") {
      setTimeout(() => b.transport.send([heartbeatResponse("n2", "n1", message.readRound)]), 2);
    }
  };
  for (let round = 1; round <= 5; round++) {
    a.transport.send([heartbeat("n1", "n2", round)]);
    await until(() => a.stepped.length === round, `response ${round}`);
  }
  assert.deepStrictEqual(
    a.stepped.map((
      message,
    ) => [message.type, message.from, "readRound" in message && message.readRound]),
    [1, 2, 3, 4, 5].map((round) => ["heartbeatResponse", "n2", round]),
  );
  assert.equal(a.requests, 0, "every response rode in an answer");
  assert.equal(b.requests, 5);
  await a.stop();
  await b.stop();
});

Deno.test("an answer goes out empty after the wait; later messages take a request", async () => {
  const [a, b] = await pair();
  a.transport.send([heartbeat("n1", "n2", 1)]);
  await until(() => b.stepped.length === 1, "the heartbeat");
  await until(() => a.transport.stats()[0].inflightRequests === 0, "the empty answer");
  // Delivered, not timed out (the request's deadline is far longer than the wait).
  assert.equal(a.transport.stats()[0].failures, 0);
  assert.equal(a.transport.stats()[0].sentMessages, 1);
  b.transport.send([heartbeatResponse("n2", "n1", 1)]);
  await until(() => a.stepped.length === 1, "the response by request");
  assert.equal(a.requests, 1);
  await a.stop();
  await b.stop();
});

Deno.test("a peer that holds no answers gets requests both ways", async () => {
  const [a, b] = await pair({ replies: false });
  b.onStep = (message) => {
    if (message.type === "heartbeat") b.transport.send([heartbeatResponse("n2", "n1", 1)]);
  };
  a.transport.send([heartbeat("n1", "n2", 1)]);
  await until(() => a.stepped.length === 1, "the response");
  assert.equal(a.requests, 1);
  await a.stop();
  await b.stop();
});

Deno.test("waiting answers take one message each, in order, the last one the rest", async () => {
  const transport = new PeerTransport({ selfId: "n2", clusterId: CLUSTER, logger: quiet });
  transport.setPeers(new Map([["n1", "http://127.0.0.1:1"]]));
  const first = transport.replyTo("n1", { waitMs: 10_000 });
  const second = transport.replyTo("n1", { waitMs: 10_000 });
  transport.send([1, 2, 3].map((round) => heartbeatResponse("n2", "n1", round)));
  const rounds = async (answer: Promise<Message[]>) =>
    (await answer).map((message) => "readRound" in message && message.readRound);
  assert.deepStrictEqual(await rounds(first), [1]);
  assert.deepStrictEqual(await rounds(second), [2, 3]);
  assert.equal(transport.stats()[0].sentMessages, 3);
  await transport.close();
});

Deno.test("close() and a removed peer release waiting answers at once, empty", async () => {
  const transport = new PeerTransport({ selfId: "n2", clusterId: CLUSTER, logger: quiet });
  transport.setPeers(new Map([["n1", "http://127.0.0.1:1"], ["n3", "http://127.0.0.1:2"]]));
  const removed = transport.replyTo("n3", { waitMs: 60_000 });
  transport.setPeers(new Map([["n1", "http://127.0.0.1:1"]]));
  assert.deepStrictEqual(await removed, []);
  assert.deepStrictEqual(await transport.replyTo("n9", { waitMs: 60_000 }), [], "unknown peer");
  const open = transport.replyTo("n1", { waitMs: 60_000 });
  await transport.close();
  assert.deepStrictEqual(await open, []);
  assert.deepStrictEqual(await transport.replyTo("n1", { waitMs: 60_000 }), [], "closed");
});

Deno.test("an answer whose messages do not parse is logged and steps nothing", async () => {
  const warnings: string[] = [];
  const logger: Logger = { ...quiet, warn: (message) => void warnings.push(message) };
  const stepped: Message[] = [];
  const transport = new PeerTransport({
    selfId: "n1",
    clusterId: CLUSTER,
    logger,
    onMessages: (messages) => stepped.push(...messages),
  });
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    async (request) => {
      assert.equal(request.headers.get(REPLY_HEADER), "1");
      await request.arrayBuffer();
      const garbage = encodeMessages([heartbeat("n2", "n1", 1)]).fill(0xc1, 1);
      return new Response(garbage, { status: 200 });
    },
  );
  transport.setPeers(new Map([["n2", `http://127.0.0.1:${server.addr.port}`]]));
  transport.send([heartbeat("n1", "n2", 1)]);
  await until(() => warnings.length > 0, "the warning");
  assert.deepStrictEqual(warnings, ["peer answered with messages that do not parse"]);
  assert.deepStrictEqual(stepped, []);
  assert.equal(transport.stats()[0].unreachable, false);
  await transport.close();
  await server.shutdown();
});

Deno.test("a peer that had failed is reachable again once an answer to it carries messages", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const closedPort = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const transport = new PeerTransport({ selfId: "n2", clusterId: CLUSTER, logger: quiet });
  transport.setPeers(new Map([["n1", `http://127.0.0.1:${closedPort}`]]));
  transport.send([heartbeatResponse("n2", "n1", 1)]);
  await until(() => transport.stats()[0].unreachable, "the failed request");
  // The peer is back and writes to us: our next message rides in that answer.
  const answer = transport.replyTo("n1", { waitMs: 60_000 });
  transport.send([heartbeatResponse("n2", "n1", 2)]);
  assert.equal((await answer).length, 1);
  assert.equal(transport.stats()[0].unreachable, false);
  assert.equal(transport.stats()[0].failures, 0);
  await transport.close();
});

Deno.test("an answer whose request went away gets no messages: they wait for a request", async () => {
  const transport = new PeerTransport({ selfId: "n2", clusterId: CLUSTER, logger: quiet });
  transport.setPeers(new Map([["n1", "http://127.0.0.1:1"]]));
  const gone = new AbortController();
  const answer = transport.replyTo("n1", { waitMs: 60_000, signal: gone.signal });
  gone.abort();
  assert.deepStrictEqual(await answer, []);
  const aborted = new AbortController();
  aborted.abort();
  assert.deepStrictEqual(await transport.replyTo("n1", { signal: aborted.signal }), []);
  await transport.close();
});

Deno.test("the answer is held only for a request that accepts messages and wants an answer", async () => {
  const stepped: Message[] = [];
  let holds = 0;
  const app = new Hono().route(
    "/raft",
    createRaftRoutes({
      node: { step: (message) => void stepped.push(message) },
      selfId: "n2",
      clusterId: CLUSTER,
      logger: quiet,
      // Never answers: a request that is held would not come back.
      replyTo: () => {
        holds++;
        return new Promise<Message[]>(() => {});
      },
    }),
  );
  const post = (messages: Message[], headers: Record<string, string>) =>
    app.request("/raft/messages", {
      method: "POST",
      headers: { "Content-Type": "application/msgpack", ...headers },
      body: encodeMessages(messages),
    });
  const withoutHeader = await post([heartbeat("n1", "n2", 1)], {});
  assert.equal(withoutHeader.status, 204);
  const onlyResponses = await post([heartbeatResponse("n1", "n2", 1)], { [REPLY_HEADER]: "1" });
  assert.equal(onlyResponses.status, 204);
  assert.equal(holds, 0);
  assert.equal(stepped.length, 2);
});

Deno.test("an answer waits for the node's messages before it goes out empty", async () => {
  const [a, b] = await pair({ replyWaitMs: 300 });
  const startMs = performance.now();
  a.transport.send([heartbeat("n1", "n2", 1)]);
  await until(() => b.stepped.length === 1, "the heartbeat");
  await until(() => a.transport.stats()[0].inflightRequests === 0, "the empty answer");
  // A lower bound only: a timer never fires early, however loaded the machine.
  assert.ok(performance.now() - startMs >= 290, "the answer did not wait");
  await a.stop();
  await b.stop();
});

Deno.test("a message over the answer limit takes a request, and the answer stays for the next", async () => {
  const transport = new PeerTransport({ selfId: "n2", clusterId: CLUSTER, logger: quiet });
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const closedPort = (listener.addr as Deno.NetAddr).port;
  listener.close();
  transport.setPeers(new Map([["n1", `http://127.0.0.1:${closedPort}`]]));
  const answer = transport.replyTo("n1", { waitMs: 60_000 });
  const big: Message = {
    type: "appendEntries",
    from: "n2",
    to: "n1",
    term: 2,
    prevLogIndex: 0,
    prevLogTerm: 0,
    leaderCommit: 0,
    entries: [{
      type: "command",
      index: 1,
      term: 2,
      data: new Uint8Array(PEER_ANSWER_BYTES_MAX + 1),
    }],
  };
  transport.send([big]);
  await until(() => transport.stats()[0].failures > 0, "the request for the big message");
  transport.send([heartbeatResponse("n2", "n1", 7)]);
  const carried = await answer;
  assert.deepStrictEqual(carried.map((message) => message.type), ["heartbeatResponse"]);
  await transport.close();
});
