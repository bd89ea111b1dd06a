/**
 * The peer endpoints, mounted at /raft: POST /messages takes a MessagePack array of messages,
 * POST /snapshot one installSnapshot message. Bytes pass parseMessages (the gateway) before
 * anything reaches the node, and the answer does not wait for Raft: 204 means "handed over".
 * A request with X-Raft-Reply whose messages want an answer (appendEntries, heartbeat, vote)
 * may instead get 200 with a MessagePack array: this node's next messages for the sender,
 * produced within a short wait (PeerTransport.replyTo), so they need no request of their own.
 *
 * A snapshot may be too big for one request, so it usually comes in chunks:
 * `POST /snapshot?id=I&offset=N&total=M`, each body one installSnapshot message whose data is
 * the bytes [N, N + length) of the M-byte snapshot (the metadata rides along in every chunk and
 * must not change). Chunks of one transfer come in order; the node gets the whole message only
 * once the last byte arrived. A chunk out of order drops the transfer (409: start again at 0),
 * and a transfer left idle for RAFT_SNAPSHOT_IDLE_MS is dropped. Without the query, the body
 * is one whole installSnapshot (the older, single-request form).
 */
import { AssertionError } from "node:assert/strict";
import { Hono } from "hono";
import type { Clock, Logger, Message, NodeId, RaftNodeApi } from "../raft/mod.ts";
import { encodeMessages, parseMessages } from "../raft/mod.ts";
import { REPLY_HEADER } from "./peer_transport.ts";

/** Body of POST /raft/messages: twice what PeerTransport puts in one batch. */
export const RAFT_MESSAGES_BYTES_MAX = 8 * 1024 * 1024;
/** Body of POST /raft/snapshot: one whole snapshot. */
export const RAFT_SNAPSHOT_BYTES_MAX = 1024 * 1024 * 1024;
/** Body of one chunk on POST /raft/snapshot?offset=...: its data plus the message around it. */
export const RAFT_SNAPSHOT_CHUNK_BODY_BYTES_MAX = 8 * 1024 * 1024;
/** A partial transfer with no chunk for this long is dropped (its sender gave up or died). */
export const RAFT_SNAPSHOT_IDLE_MS = 30_000;
/** Partial transfers kept at once (one per sender): a cluster has one leader at a time. */
export const RAFT_SNAPSHOT_TRANSFERS_MAX = 2;
/** Characters of a transfer id. */
const TRANSFER_ID_CHARS_MAX = 512;
/** First buffer for a body of unknown length; it doubles from there. */
const BODY_INITIAL_BYTES = 64 * 1024;
/** Largest buffer allocated on the word of Content-Length alone, before the bytes arrive. */
const BODY_PREALLOCATED_BYTES_MAX = 64 * 1024 * 1024;

export interface RaftRoutesDeps {
  node: Pick<RaftNodeApi, "step">;
  /** This node's id: messages addressed to anyone else are dropped. */
  selfId: NodeId;
  clusterId: string;
  logger: Logger;
  /** A sender's URL from its X-Raft-From-Url header, for peers our membership does not name. */
  learnPeer?: (id: NodeId, url: string) => void;
  /** Our next messages for `from`, to answer its request with (PeerTransport.replyTo). */
  replyTo?: (from: NodeId, signal: AbortSignal) => Promise<Message[]>;
  /** Expires idle snapshot transfers; timers unless given (tests pass a manual clock). */
  clock?: Pick<Clock, "now" | "after">;
  /** Default RAFT_SNAPSHOT_IDLE_MS. */
  snapshotIdleMs?: number;
}

interface Endpoint {
  path: string;
  bytesMax: number;
  /** Checks the parsed messages fit the endpoint; returns a problem, or undefined. */
  check(messages: Message[]): string | undefined;
}

const oneSnapshot = (messages: Message[]) =>
  messages.length === 1 && messages[0].type === "installSnapshot"
    ? undefined
    : `Cannot accept on /raft/snapshot: expected one "installSnapshot" message, got ${messages.length}`;

const MESSAGES: Endpoint = {
  path: "/messages",
  bytesMax: RAFT_MESSAGES_BYTES_MAX,
  check: () => undefined,
};
const WHOLE_SNAPSHOT: Endpoint = {
  path: "/snapshot",
  bytesMax: RAFT_SNAPSHOT_BYTES_MAX,
  check: oneSnapshot,
};
const SNAPSHOT_CHUNK: Endpoint = {
  path: "/snapshot",
  bytesMax: RAFT_SNAPSHOT_CHUNK_BODY_BYTES_MAX,
  check: oneSnapshot,
};

const JSON_HEADERS = { "content-type": "application/json" };
const MSGPACK_HEADERS = { "content-type": "application/msgpack" };

/** Messages whose receiver sends one back: worth holding the answer for. */
const ANSWERED = new Set<Message["type"]>(["appendEntries", "heartbeat", "vote"]);

function json(body: Record<string, unknown>, status: number, headers?: Record<string, string>) {
  return new Response(JSON.stringify(body), {
    status,
    headers: headers === undefined ? JSON_HEADERS : { ...JSON_HEADERS, ...headers },
  });
}

const methodNotAllowed = () => json({ error: "method not allowed" }, 405, { Allow: "POST" });

/**
 * POST /raft/messages as a plain function of the request: the busiest peer route, so the app
 * can call it before any router runs (app.ts) as well as mount it here.
 */
export function raftMessagesHandler(deps: RaftRoutesDeps): (request: Request) => Promise<Response> {
  return async (request) => {
    if (request.method !== "POST") return methodNotAllowed();
    const parsed = await receive(request, deps, MESSAGES);
    if (parsed instanceof Response) return parsed;
    const answer = stepAll(deps, parsed);
    const from = parsed.find((message) => ANSWERED.has(message.type))?.from;
    if (
      answer.status !== 204 || from === undefined || deps.replyTo === undefined ||
      request.headers.get(REPLY_HEADER) === null
    ) {
      return answer;
    }
    const replies = await deps.replyTo(from, request.signal);
    if (replies.length === 0) return answer;
    return new Response(encodeMessages(replies), { status: 200, headers: MSGPACK_HEADERS });
  };
}

/** The /raft/* routes, with paths relative to where the app mounts them. */
export function createRaftRoutes(deps: RaftRoutesDeps): Hono {
  const app = new Hono();
  const assembler = new SnapshotAssembler({
    clock: deps.clock ?? timerClock,
    idleMs: deps.snapshotIdleMs ?? RAFT_SNAPSHOT_IDLE_MS,
    logger: deps.logger,
  });
  const messages = raftMessagesHandler(deps);
  app.all(MESSAGES.path, (c) => messages(c.req.raw));
  app.post(WHOLE_SNAPSHOT.path, async (c) => {
    const query = c.req.query();
    if (query.id === undefined && query.offset === undefined && query.total === undefined) {
      const parsed = await receive(c.req.raw, deps, WHOLE_SNAPSHOT);
      return parsed instanceof Response ? parsed : stepAll(deps, parsed);
    }
    const chunk = parseChunkQuery(query);
    if (typeof chunk === "string") return json({ error: chunk }, 400);
    const parsed = await receive(c.req.raw, deps, SNAPSHOT_CHUNK);
    if (parsed instanceof Response) return parsed;
    const outcome = assembler.accept(chunk, parsed[0] as SnapshotMessage);
    if (outcome.kind === "refused") {
      const restart = outcome.status === 409 ? { expectedOffset: 0 } : {};
      return json({ error: outcome.error, ...restart }, outcome.status);
    }
    if (outcome.kind === "partial") return new Response(null, { status: 204 });
    return stepAll(deps, [outcome.message]);
  });
  app.all(WHOLE_SNAPSHOT.path, methodNotAllowed);
  return app;
}

/** Checks the headers, reads and parses the body: the messages, or the error answer. */
async function receive(
  request: Request,
  deps: RaftRoutesDeps,
  endpoint: Endpoint,
): Promise<Message[] | Response> {
  const headers = request.headers;
  const cluster = headers.get("X-Raft-Cluster");
  if (cluster !== null && cluster !== deps.clusterId) {
    deps.logger.warn("peer message from another cluster refused", {
      from: headers.get("X-Raft-From"),
      cluster,
    });
    return json({ error: "cluster id mismatch", expected: deps.clusterId, received: cluster }, 409);
  }
  const contentType = headers.get("Content-Type");
  if (contentType !== null && contentType.split(";")[0].trim() !== "application/msgpack") {
    return json({ error: "unsupported content type", expected: "application/msgpack" }, 415);
  }
  const body = await readBody(request, endpoint.bytesMax);
  if (body === "tooLarge") {
    return json({ error: "request body too large", bytesMax: endpoint.bytesMax }, 413);
  }
  if (body === "unreadable") return json({ error: "cannot read the request body" }, 400);
  let messages: Message[];
  try {
    messages = parseMessages(body);
  } catch (error) {
    if (!(error instanceof TypeError)) throw error;
    return json({ error: error.message }, 400);
  }
  const problem = endpoint.check(messages);
  if (problem !== undefined) return json({ error: problem }, 400);
  const fromUrl = headers.get("X-Raft-From-Url");
  if (fromUrl !== null && deps.learnPeer !== undefined && /^https?:\/\/[^\s]+$/.test(fromUrl)) {
    for (const from of new Set(messages.map((message) => message.from))) {
      deps.learnPeer(from, fromUrl);
    }
  }
  return messages;
}

function stepAll(deps: RaftRoutesDeps, messages: Message[]): Response {
  try {
    stepMessages(deps, messages);
  } catch (error) {
    // Our own bugs must crash the node (STYLE C2.5), not turn into an answer.
    if (error instanceof AssertionError) throw error;
    const reason = error instanceof Error ? error.message : String(error);
    return json({ error: "node is not accepting messages", reason }, 503);
  }
  return new Response(null, { status: 204 });
}

/** Gives the node the messages addressed to it, from a request or from an answer. */
export function stepMessages(
  deps: Pick<RaftRoutesDeps, "node" | "selfId" | "logger">,
  messages: Message[],
): void {
  let misaddressed = 0;
  for (const message of messages) {
    // A message for another node (a peer with a stale address book) would corrupt our state.
    if (message.to !== deps.selfId) {
      misaddressed++;
      continue;
    }
    deps.node.step(message);
  }
  if (misaddressed > 0) {
    deps.logger.debug("peer messages for another node dropped", {
      selfId: deps.selfId,
      misaddressed,
    });
  }
}

/**
 * The request body, read up to `bytesMax` bytes without trusting Content-Length (a body may be
 * chunked, or lie): "tooLarge" as soon as it passes the limit.
 */
async function readBody(
  request: Request,
  bytesMax: number,
): Promise<Uint8Array | "tooLarge" | "unreadable"> {
  const declared = Number(request.headers.get("Content-Length") ?? Number.NaN);
  if (Number.isSafeInteger(declared) && declared > bytesMax) {
    await request.body?.cancel().catch(() => {});
    return "tooLarge";
  }
  if (request.body === null) return new Uint8Array();
  if (Number.isSafeInteger(declared) && declared > 0) {
    // The length is known and within the limit: one read is cheapest (and a body that turns
    // out longer than it said is a broken request, which the server refuses).
    try {
      return await request.bytes();
    } catch {
      return "unreadable";
    }
  }
  const reader = request.body.getReader();
  // Sized from Content-Length when given, so a body is rarely copied while it arrives; but a
  // header alone does not get a huge allocation.
  let buffer = new Uint8Array(
    Number.isSafeInteger(declared) && declared >= 0
      ? Math.min(declared, BODY_PREALLOCATED_BYTES_MAX)
      : BODY_INITIAL_BYTES,
  );
  let length = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return buffer.subarray(0, length);
      if (length + value.byteLength > bytesMax) {
        await reader.cancel().catch(() => {});
        return "tooLarge";
      }
      if (length + value.byteLength > buffer.byteLength) {
        const grown = new Uint8Array(
          Math.min(Math.max(buffer.byteLength * 2, length + value.byteLength), bytesMax),
        );
        grown.set(buffer.subarray(0, length));
        buffer = grown;
      }
      buffer.set(value, length);
      length += value.byteLength;
    }
  } catch {
    return "unreadable";
  } finally {
    reader.releaseLock();
  }
}

// ---- chunked snapshots -------------------------------------------------------------------

type SnapshotMessage = Extract<Message, { type: "installSnapshot" }>;

/** Where one chunk sits in its transfer, from the query string. */
export interface ChunkPosition {
  /** Names the transfer; the sender picks it (sender, term, snapshot index and term). */
  id: string;
  offset: number;
  total: number;
}

/** The query of a chunk, validated: its position, or what is wrong with it. */
function parseChunkQuery(query: Record<string, string>): ChunkPosition | string {
  const { id, offset, total } = query;
  if (id === undefined || id === "" || id.length > TRANSFER_ID_CHARS_MAX) {
    return `Invalid snapshot chunk: parameter "id" must have 1 to ${TRANSFER_ID_CHARS_MAX} characters`;
  }
  for (const [name, text] of [["offset", offset], ["total", total]]) {
    if (text === undefined || !/^\d{1,16}$/.test(text) || !Number.isSafeInteger(Number(text))) {
      return `Invalid snapshot chunk: parameter "${name}" is not a byte count`;
    }
  }
  const position = { id, offset: Number(offset), total: Number(total) };
  if (position.total > RAFT_SNAPSHOT_BYTES_MAX) {
    return `Invalid snapshot chunk: "total" is over ${RAFT_SNAPSHOT_BYTES_MAX} bytes`;
  }
  if (position.offset > position.total) {
    return `Invalid snapshot chunk: "offset" ${position.offset} is past "total" ${position.total}`;
  }
  return position;
}

/** One snapshot arriving from one sender. */
interface Transfer {
  id: string;
  total: number;
  /** Bytes received so far; the next chunk must start here. */
  received: number;
  /** Grows to `total` as chunks arrive (a header alone does not get 1 GiB allocated). */
  buffer: Uint8Array;
  /** The first chunk's message: every later chunk must carry the same metadata. */
  first: SnapshotMessage;
  chunks: number;
  startMs: number;
  cancelTimer: () => void;
}

export type ChunkOutcome =
  | { kind: "partial" }
  | { kind: "complete"; message: SnapshotMessage }
  | { kind: "refused"; status: 400 | 409 | 503; error: string };

/**
 * Puts snapshot chunks together, one transfer per sender, each held once in memory (bounded
 * by its declared total, itself bounded by RAFT_SNAPSHOT_BYTES_MAX). A new transfer from a
 * sender replaces the one it had; an idle transfer is dropped by a timer.
 */
export class SnapshotAssembler {
  readonly #transfers = new Map<NodeId, Transfer>();
  readonly #clock: Pick<Clock, "now" | "after">;
  readonly #idleMs: number;
  readonly #logger: Logger;

  constructor(options: { clock: Pick<Clock, "now" | "after">; idleMs: number; logger: Logger }) {
    this.#clock = options.clock;
    this.#idleMs = options.idleMs;
    this.#logger = options.logger;
  }

  /** Transfers under way, for tests and status. */
  get transfers(): number {
    return this.#transfers.size;
  }

  accept(position: ChunkPosition, message: SnapshotMessage): ChunkOutcome {
    const data = message.snapshot.data;
    if (position.offset + data.byteLength > position.total) {
      this.#drop(message.from, "a chunk runs past the declared total");
      return refused(400, `Invalid snapshot chunk: it runs past "total" ${position.total}`);
    }
    if (position.offset === 0) {
      const started = this.#start(position, message);
      if (started !== undefined) return started;
    }
    const transfer = this.#transfers.get(message.from);
    if (
      transfer === undefined || transfer.id !== position.id || transfer.total !== position.total ||
      transfer.received !== position.offset
    ) {
      this.#drop(message.from, "a chunk came out of order");
      return refused(409, "Snapshot chunk out of order: start the transfer again at offset 0");
    }
    if (!sameSnapshot(transfer.first, message)) {
      this.#drop(message.from, "the metadata changed between chunks");
      return refused(400, "Invalid snapshot chunk: its metadata differs from the first chunk's");
    }
    this.#append(transfer, data);
    if (transfer.received < transfer.total) return { kind: "partial" };
    this.#transfers.delete(message.from);
    transfer.cancelTimer();
    const snapshot = {
      ...transfer.first.snapshot,
      data: transfer.buffer.subarray(0, transfer.total),
    };
    this.#logger.info("snapshot received", {
      from: message.from,
      index: snapshot.metadata.index,
      bytes: transfer.total,
      chunks: transfer.chunks,
      ms: Math.round(this.#clock.now() - transfer.startMs),
    });
    return { kind: "complete", message: { ...transfer.first, snapshot } };
  }

  /** Drops every transfer and its timer. */
  clear(): void {
    for (const from of [...this.#transfers.keys()]) this.#drop(from, "closing");
  }

  /** Starts a transfer at offset 0; an answer if it cannot be taken. */
  #start(position: ChunkPosition, message: SnapshotMessage): ChunkOutcome | undefined {
    this.#drop(message.from, "the sender started again");
    if (this.#transfers.size >= RAFT_SNAPSHOT_TRANSFERS_MAX) {
      return refused(503, "Too many snapshot transfers under way: try again later");
    }
    this.#transfers.set(message.from, {
      id: position.id,
      total: position.total,
      received: 0,
      buffer: new Uint8Array(Math.min(position.total, RAFT_SNAPSHOT_CHUNK_BODY_BYTES_MAX)),
      first: { ...message, snapshot: { ...message.snapshot, data: new Uint8Array() } },
      chunks: 0,
      startMs: this.#clock.now(),
      cancelTimer: () => {},
    });
    return undefined;
  }

  #append(transfer: Transfer, data: Uint8Array): void {
    const end = transfer.received + data.byteLength;
    if (end > transfer.buffer.byteLength) {
      // Doubling keeps the copies few; never past the declared total.
      const grown = new Uint8Array(
        Math.min(transfer.total, Math.max(end, transfer.buffer.byteLength * 2)),
      );
      grown.set(transfer.buffer.subarray(0, transfer.received));
      transfer.buffer = grown;
    }
    transfer.buffer.set(data, transfer.received);
    transfer.received = end;
    transfer.chunks++;
    transfer.cancelTimer();
    if (end < transfer.total) {
      const from = transfer.first.from;
      transfer.cancelTimer = this.#clock.after(this.#idleMs, () => {
        if (this.#transfers.get(from) === transfer) this.#drop(from, "no chunk came in time");
      });
    }
  }

  #drop(from: NodeId, reason: string): void {
    const transfer = this.#transfers.get(from);
    if (transfer === undefined) return;
    this.#transfers.delete(from);
    transfer.cancelTimer();
    this.#logger.warn("snapshot transfer dropped", {
      from,
      id: transfer.id,
      received: transfer.received,
      total: transfer.total,
      reason,
    });
  }
}

function refused(status: 400 | 409 | 503, error: string): ChunkOutcome {
  return { kind: "refused", status, error };
}

/** Chunks of one transfer carry the same message but for their data. */
function sameSnapshot(a: SnapshotMessage, b: SnapshotMessage): boolean {
  const ma = a.snapshot.metadata;
  const mb = b.snapshot.metadata;
  return a.from === b.from && a.to === b.to && a.term === b.term && ma.index === mb.index &&
    ma.term === mb.term && JSON.stringify(ma.confState) === JSON.stringify(mb.confState);
}

/** Idle transfers expire on the process's timers, which must not keep the process alive. */
const timerClock: Pick<Clock, "now" | "after"> = {
  now: () => performance.now(),
  after(delayMs, callback) {
    const timer = setTimeout(callback, delayMs);
    Deno.unrefTimer(timer);
    return () => clearTimeout(timer);
  },
};
