/**
 * The Raft `Transport` over HTTP: each peer gets a bounded queue and a pump that POSTs what is
 * queued as one MessagePack array to `<url>/raft/messages`, a few requests in flight at a time.
 * Raft tolerates loss, so the transport drops rather than waits: a full queue drops its oldest
 * messages, a failed request drops its batch, and a peer that keeps failing is backed off.
 *
 * A request that carries messages wanting an answer (appendEntries, heartbeat, vote) says so
 * with X-Raft-Reply, and the peer may hold its answer a moment to put its own next messages
 * for us in it (replyTo): one HTTP exchange per round trip instead of two, on both sides.
 * Messages in an answer reach the node through `onMessages`, like those of a request.
 *
 * An installSnapshot goes to `<url>/raft/snapshot` in chunks of PEER_SNAPSHOT_CHUNK_BYTES, one
 * request after the other (see http/raft_routes.ts), one transfer per peer at a time. The
 * chunks are views of the snapshot's bytes: only the chunk being encoded is copied.
 */
import { AssertionError } from "node:assert/strict";
import type { Logger, Message, NodeId, Transport } from "../raft/mod.ts";
import { Http1Client, requestHeadWithoutLength } from "./http1_client.ts";
import {
  Peer,
  type Queued,
  releaseResponders,
  type Responder,
  takeBatch,
  takeOne,
} from "./_peer_pipe.ts";
export { PEER_BATCH_BYTES_MAX, PEER_BATCH_MESSAGES_MAX } from "./_peer_pipe.ts";
import { encodeMessages, estimateMessageBytes, parseMessages } from "../raft/mod.ts";

/** Messages waiting for one peer; more drops the oldest. */
export const PEER_QUEUE_MESSAGES_MAX = 4_096;
/** Estimated bytes waiting for one peer; more drops the oldest (one message always fits). */
export const PEER_QUEUE_BYTES_MAX = 64 * 1024 * 1024;
/** Requests in flight to one healthy peer (pipelining); a failing peer gets one probe. */
export const PEER_REQUESTS_INFLIGHT_MAX = 4;
/** Back-off after the first failure, doubled per failure up to PEER_BACKOFF_MAX_MS. */
export const PEER_BACKOFF_MIN_MS = 50;
/** A restarted peer waits at most this long to hear from us; trying a dead one is cheap. */
export const PEER_BACKOFF_MAX_MS = 250;
export const PEER_REQUEST_TIMEOUT_MS = 5_000;
/** Deadline of one snapshot chunk: the last one waits while the peer takes the whole. */
export const PEER_SNAPSHOT_TIMEOUT_MS = 30_000;
/** Snapshot bytes in one request to /raft/snapshot (the route takes up to 8 MiB). */
export const PEER_SNAPSHOT_CHUNK_BYTES = 1024 * 1024;
/** Times a transfer starts again at offset 0 when the peer lost its place (it restarted). */
export const PEER_SNAPSHOT_RESTARTS_MAX = 2;
/**
 * How long the answer to a peer's request waits for our next messages to that peer. A follower
 * answers an appendEntries once its write is durable: a few ms, more under load; past this the
 * answer goes empty (the peer's request slot is held meanwhile) and the messages take a request.
 */
export const PEER_REPLY_WAIT_MS = 20;
/**
 * Estimated bytes in one answer (more waits for a request of its own): acknowledgements are
 * small, and the sender's HTTP client keeps a connection's buffer as large as its largest answer.
 */
export const PEER_ANSWER_BYTES_MAX = 256 * 1024;
/** The request header by which a sender accepts messages in the answer. */
export const REPLY_HEADER = "X-Raft-Reply";
/** Characters of a peer's error answer kept for the log. */
const ANSWER_CHARS_MAX = 200;

export interface PeerTransportOptions {
  selfId: NodeId;
  /** This node's advertised URL, sent along so that a peer that does not know it can answer. */
  selfUrl?: string;
  clusterId: string;
  logger: Logger;
  /** Deadline of one request to /raft/messages; default PEER_REQUEST_TIMEOUT_MS. */
  requestTimeoutMs?: number;
  /** Deadline of one request to /raft/snapshot; default PEER_SNAPSHOT_TIMEOUT_MS. */
  snapshotTimeoutMs?: number;
  /** Snapshot bytes per chunk; default PEER_SNAPSHOT_CHUNK_BYTES (tests use small ones). */
  snapshotChunkBytes?: number;
  /** Messages that came in the answer to one of our requests (given to the node as received). */
  onMessages?: (messages: Message[]) => void;
  /** Called once when a peer starts failing (not again until it has answered). */
  onUnreachable?: (peer: NodeId) => void;
  /** The global fetch unless given: tests inject broken connections through it. */
  fetch?: typeof fetch;
}

/** What one peer's pipe looks like now, for /metrics and /status. */
export interface PeerStats {
  peer: NodeId;
  url: string;
  queuedMessages: number;
  inflightRequests: number;
  sentMessages: number;
  droppedMessages: number;
  /** Failed requests in the current failure streak; 0 when the peer answers. */
  failures: number;
  unreachable: boolean;
}

type Outcome =
  /** `replies`: the answer's body, our peer's messages for us (a 200 to /raft/messages). */
  | { kind: "delivered"; replies?: Uint8Array }
  | { kind: "rejected"; status: number; answer: string }
  | { kind: "failed"; reason: string; status?: number };

/** Statuses that mean "the peer is up but refused these bytes": no reason to back off. */
const REJECTED_STATUSES = new Set([400, 413, 415]);
/** The answer of /raft/snapshot to a chunk out of order (also of a node of another cluster). */
const CONFLICT_STATUS = 409;

export class PeerTransport implements Transport {
  readonly #selfId: NodeId;
  readonly #clusterId: string;
  readonly #logger: Logger;
  readonly #requestTimeoutMs: number;
  readonly #snapshotTimeoutMs: number;
  readonly #snapshotChunkBytes: number;
  readonly #onUnreachable: ((peer: NodeId) => void) | undefined;
  readonly #onMessages: ((messages: Message[]) => void) | undefined;
  /** A test's fetch; otherwise requests go through #http's cheap post(). */
  readonly #fetch: typeof fetch | undefined;
  readonly #http = new Http1Client();
  /** Encoded request heads by URL (the /raft/messages URL of each peer). */
  readonly #heads = new Map<string, { origin: string; head: Uint8Array }>();
  readonly #peers = new Map<NodeId, Peer>();
  /** Aborts every request in flight at close(). */
  readonly #closing = new AbortController();
  /** Every request in flight, so close() can wait for all of them. */
  readonly #pending = new Set<Promise<void>>();
  #closed = false;
  readonly #selfUrl: string | undefined;
  /** Messages for a node with no known URL, or for this node. */
  #unroutable = 0;

  constructor(options: PeerTransportOptions) {
    this.#selfId = options.selfId;
    this.#selfUrl = options.selfUrl;
    this.#clusterId = options.clusterId;
    this.#logger = options.logger;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? PEER_REQUEST_TIMEOUT_MS;
    this.#snapshotTimeoutMs = Math.max(
      options.snapshotTimeoutMs ?? PEER_SNAPSHOT_TIMEOUT_MS,
      this.#requestTimeoutMs,
    );
    this.#snapshotChunkBytes = Math.max(1, options.snapshotChunkBytes ?? PEER_SNAPSHOT_CHUNK_BYTES);
    this.#onUnreachable = options.onUnreachable;
    this.#onMessages = options.onMessages;
    // Our own HTTP/1.1 client unless a test injects a fetch: fetch costs several times more
    // CPU per request, and peer traffic is one request per batch of messages.
    this.#fetch = options.fetch;
  }

  /**
   * A peer that wrote to us from `url` while our membership does not name it yet (a node that
   * joined and has not received the log): answers can reach it. Known peers keep their URL.
   */
  learnPeer(id: NodeId, url: string): void {
    if (this.#closed || id === this.#selfId || this.#peers.has(id)) return;
    this.#peers.set(id, new Peer(id, url.replace(/\/+$/, "")));
  }

  setPeers(peers: ReadonlyMap<NodeId, string>): void {
    for (const [id, peer] of this.#peers) {
      if (peers.has(id)) continue;
      // Requests in flight finish on their own; what is queued is for a member that left.
      clearTimeout(peer.backoffTimer);
      releaseResponders(peer);
      this.#peers.delete(id);
    }
    for (const [id, url] of peers) {
      if (id === this.#selfId) continue;
      const base = url.replace(/\/+$/, "");
      const peer = this.#peers.get(id);
      if (peer === undefined) this.#peers.set(id, new Peer(id, base));
      else peer.url = base;
    }
  }

  /** Queues each message for its peer and returns at once; delivery happens in the background. */
  send(messages: Message[]): void {
    if (this.#closed) return;
    for (const message of messages) {
      const peer = this.#peers.get(message.to);
      if (peer === undefined) {
        this.#unroutable++;
        this.#logger.debug("no URL for peer, message dropped", {
          peer: message.to,
          type: message.type,
        });
        continue;
      }
      this.#enqueue(peer, { message, bytes: estimateMessageBytes(message) });
      this.#schedulePump(peer);
    }
  }

  /**
   * The messages to put in the answer to a request from `from`: our next ones for that peer,
   * or none after `waitMs` (at once for a peer we have no pipe to, or once closing).
   */
  replyTo(
    from: NodeId,
    options: { waitMs?: number; signal?: AbortSignal } = {},
  ): Promise<Message[]> {
    const peer = this.#peers.get(from);
    if (this.#closed || peer === undefined || options.signal?.aborted) return Promise.resolve([]);
    return new Promise((resolve) => {
      // Gone (timed out, or the request's connection closed): nothing more goes in this answer.
      const drop = () => {
        clearTimeout(responder.timer);
        options.signal?.removeEventListener("abort", drop);
        const at = peer.responders.indexOf(responder);
        if (at >= 0) peer.responders.splice(at, 1);
        resolve([]);
      };
      const responder: Responder = {
        resolve: (messages) => {
          options.signal?.removeEventListener("abort", drop);
          resolve(messages);
        },
        timer: setTimeout(drop, options.waitMs ?? PEER_REPLY_WAIT_MS),
      };
      options.signal?.addEventListener("abort", drop, { once: true });
      peer.responders.push(responder);
      if (peer.queue.length > 0) this.#schedulePump(peer);
    });
  }

  stats(): PeerStats[] {
    return [...this.#peers.values()].map((peer) => ({
      peer: peer.id,
      url: peer.url,
      queuedMessages: peer.queue.length,
      inflightRequests: peer.inflight,
      sentMessages: peer.sent,
      droppedMessages: peer.dropped,
      failures: peer.failures,
      unreachable: peer.unreachable,
    }));
  }

  /** Messages dropped because no URL was known for their destination. */
  unroutableMessages(): number {
    return this.#unroutable;
  }

  /** Aborts every request, drops every queue and resolves once nothing is in flight. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#closing.abort(new DOMException("The peer transport is closing", "AbortError"));
    this.#http.close();
    for (const peer of this.#peers.values()) {
      clearTimeout(peer.backoffTimer);
      peer.backoffTimer = undefined;
      peer.queue = [];
      peer.queuedBytes = 0;
      releaseResponders(peer);
    }
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
  }

  #enqueue(peer: Peer, item: Queued): void {
    peer.queue.push(item);
    peer.queuedBytes += item.bytes;
    let droppedNow = 0;
    while (
      peer.queue.length > PEER_QUEUE_MESSAGES_MAX ||
      (peer.queuedBytes > PEER_QUEUE_BYTES_MAX && peer.queue.length > 1)
    ) {
      // The oldest goes first: Raft re-sends what matters, and the newest carries the latest term.
      const oldest = peer.queue.shift()!;
      peer.queuedBytes -= oldest.bytes;
      droppedNow++;
    }
    if (droppedNow === 0) return;
    peer.dropped += droppedNow;
    if (!peer.overflowReported) {
      peer.overflowReported = true;
      this.#logger.warn("peer queue full, dropping oldest messages", {
        peer: peer.id,
        url: peer.url,
        queuedMessages: peer.queue.length,
        droppedMessages: peer.dropped,
      });
    }
  }

  /** Pumps once the current task is done, so everything sent in one driver turn is one batch. */
  #schedulePump(peer: Peer): void {
    if (peer.pumpScheduled) return;
    peer.pumpScheduled = true;
    queueMicrotask(() => {
      peer.pumpScheduled = false;
      this.#pump(peer);
    });
  }

  #pump(peer: Peer): void {
    while (!this.#closed && this.#peers.get(peer.id) === peer && peer.queue.length > 0) {
      // The peer is waiting on an answer of ours: that is the cheapest way there, and proof
      // that it is up. One message per waiting answer keeps each with the request it answers.
      // A snapshot, or a message over the answer limit (a catch-up batch), takes a request.
      const head = peer.queue[0];
      if (
        peer.responders.length > 0 && head.message.type !== "installSnapshot" &&
        head.bytes <= PEER_ANSWER_BYTES_MAX
      ) {
        const responder = peer.responders.shift()!;
        const batch = peer.responders.length > 0
          ? takeOne(peer)
          : takeBatch(peer, PEER_ANSWER_BYTES_MAX);
        clearTimeout(responder.timer);
        peer.sent += batch.length;
        // The peer reached us: if our own requests to it had failed, it is back.
        this.#onAnswer(peer);
        responder.resolve(batch);
        continue;
      }
      if (
        peer.backoffTimer !== undefined ||
        peer.inflight >= (peer.failures > 0 ? 1 : PEER_REQUESTS_INFLIGHT_MAX)
      ) {
        return;
      }
      const batch = takeBatch(peer);
      const snapshot = batch.length === 1 && batch[0].type === "installSnapshot";
      if (snapshot && peer.sendingSnapshot) {
        // The leader asks again while the first transfer runs: Raft asks again if it fails.
        peer.dropped++;
        continue;
      }
      if (snapshot) peer.sendingSnapshot = true;
      peer.inflight++;
      const request = this.#deliver(peer, batch, snapshot).catch((error) => {
        // Our own bug: an assertion must still crash the process (STYLE C2.5).
        if (error instanceof AssertionError) throw error;
        this.#logger.error("peer delivery failed", { peer: peer.id, error: String(error) });
      }).finally(() => {
        if (snapshot) peer.sendingSnapshot = false;
        peer.inflight--;
        this.#pending.delete(request);
        this.#pump(peer);
      });
      this.#pending.add(request);
    }
  }

  async #deliver(peer: Peer, batch: Message[], snapshot: boolean): Promise<void> {
    const url = `${peer.url}/raft/${snapshot ? "snapshot" : "messages"}`;
    const outcome = snapshot && batch[0].type === "installSnapshot"
      ? await this.#sendSnapshot(peer, batch[0])
      : await this.#post(url, encodeMessages(batch), false);
    // A peer removed meanwhile keeps no state worth updating (and must not start a timer).
    if (this.#closed || this.#peers.get(peer.id) !== peer) return;
    switch (outcome.kind) {
      case "delivered":
        peer.sent += batch.length;
        peer.lastRejectedStatus = 0;
        this.#onAnswer(peer);
        // Outside #post's error handling: a failure here is not the network's (an assertion
        // must still stop the node, see #pump).
        if (outcome.replies !== undefined) this.#received(outcome.replies);
        return;
      case "rejected":
        this.#onAnswer(peer);
        peer.dropped += batch.length;
        if (outcome.status !== peer.lastRejectedStatus) {
          peer.lastRejectedStatus = outcome.status;
          this.#logger.warn("peer rejected messages", {
            peer: peer.id,
            url,
            status: outcome.status,
            answer: outcome.answer,
            messages: batch.length,
          });
        }
        return;
      case "failed":
        peer.dropped += batch.length;
        return this.#onFailure(peer, outcome.reason);
    }
  }

  /**
   * Sends a snapshot chunk by chunk, each after the previous one was taken. A 409 means the
   * peer lost the transfer (it restarted, or the transfer went idle): start again at 0.
   */
  async #sendSnapshot(
    peer: Peer,
    message: Extract<Message, { type: "installSnapshot" }>,
  ): Promise<Outcome> {
    const { metadata, data } = message.snapshot;
    const total = data.byteLength;
    const id = `${message.from}.${message.term}.${metadata.index}.${metadata.term}`;
    const startMs = performance.now();
    let outcome: Outcome = { kind: "delivered" };
    let chunks = 0;
    for (let restarts = 0; restarts <= PEER_SNAPSHOT_RESTARTS_MAX; restarts++) {
      chunks = 0;
      let offset = 0;
      do {
        const end = Math.min(total, offset + this.#snapshotChunkBytes);
        const chunk = { ...message, snapshot: { metadata, data: data.subarray(offset, end) } };
        const query = new URLSearchParams({ id, offset: String(offset), total: String(total) });
        outcome = await this.#post(
          `${peer.url}/raft/snapshot?${query}`,
          encodeMessages([chunk]),
          true,
        );
        if (outcome.kind !== "delivered" || this.#closed || this.#peers.get(peer.id) !== peer) {
          break;
        }
        chunks++;
        offset = end;
      } while (offset < total);
      const outOfOrder = outcome.kind === "failed" && outcome.status === CONFLICT_STATUS &&
        outcome.reason.includes("out of order");
      if (!outOfOrder || this.#closed || this.#peers.get(peer.id) !== peer) break;
      this.#logger.info("peer lost the snapshot transfer; starting again", {
        peer: peer.id,
        index: metadata.index,
        restarts: restarts + 1,
      });
    }
    if (outcome.kind === "delivered") {
      this.#logger.info("snapshot sent", {
        peer: peer.id,
        index: metadata.index,
        bytes: total,
        chunks,
        ms: Math.round(performance.now() - startMs),
      });
    }
    return outcome;
  }

  /** One POST, retried once at once when the connection broke before any answer came. */
  async #post(url: string, body: Uint8Array<ArrayBuffer>, snapshot: boolean): Promise<Outcome> {
    const timeoutMs = snapshot ? this.#snapshotTimeoutMs : this.#requestTimeoutMs;
    for (let attempt = 1;; attempt++) {
      try {
        return await this.#postOnce(url, body, timeoutMs);
      } catch (error) {
        // A TypeError is a network error: most often a kept-alive connection the peer closed
        // when it restarted. A fresh connection settles that; a second failure is real.
        if (error instanceof TypeError && attempt === 1 && !this.#closed) continue;
        return { kind: "failed", reason: describeError(error, timeoutMs) };
      }
    }
  }

  async #postOnce(url: string, body: Uint8Array<ArrayBuffer>, timeoutMs: number) {
    if (this.#fetch !== undefined) {
      const signal = AbortSignal.any([this.#closing.signal, AbortSignal.timeout(timeoutMs)]);
      const init = { method: "POST", headers: this.#headers(), body, signal };
      const response = await this.#fetch(url, init);
      if (response.status === 200) {
        return { kind: "delivered", replies: await response.bytes() } as const;
      }
      return await readOutcome(response);
    }
    const { origin, head } = this.#head(url);
    const answer = await this.#http.post(origin, head, body, timeoutMs);
    if (answer.status === 200) return { kind: "delivered", replies: answer.body } as const;
    return outcomeOf(answer.status, () => decoder.decode(answer.body));
  }

  /** Messages in the answer to one of our requests: through the gateway, then to the node. */
  #received(body: Uint8Array): void {
    if (body.byteLength === 0 || this.#closed) return;
    let messages: Message[];
    try {
      messages = parseMessages(body);
    } catch (error) {
      if (!(error instanceof TypeError)) throw error;
      this.#logger.warn("peer answered with messages that do not parse", {
        error: error.message,
      });
      return;
    }
    this.#onMessages?.(messages);
  }

  #headers(): Record<string, string> {
    return {
      "Content-Type": "application/msgpack",
      "X-Raft-Cluster": this.#clusterId,
      [REPLY_HEADER]: "1",
      // For the peer's logs only; encoded since a header value must be Latin-1.
      "X-Raft-From": encodeURIComponent(this.#selfId),
      ...(this.#selfUrl === undefined ? {} : { "X-Raft-From-Url": this.#selfUrl }),
    };
  }

  #head(url: string): { origin: string; head: Uint8Array } {
    const known = this.#heads.get(url);
    if (known !== undefined) return known;
    const parsed = new URL(url);
    const head = encoder.encode(requestHeadWithoutLength("POST", parsed, this.#headers()));
    const target = { origin: parsed.origin, head };
    // Snapshot chunk URLs differ by their query: only the fixed ones are worth keeping.
    if (parsed.search === "") this.#heads.set(url, target);
    return target;
  }

  #onAnswer(peer: Peer): void {
    if (peer.unreachable) {
      this.#logger.info("peer reachable again", {
        peer: peer.id,
        url: peer.url,
        failures: peer.failures,
      });
    }
    peer.failures = 0;
    peer.unreachable = false;
    peer.overflowReported = false;
  }

  #onFailure(peer: Peer, reason: string): void {
    peer.failures++;
    const backoffMs = Math.min(
      PEER_BACKOFF_MIN_MS * 2 ** Math.min(peer.failures - 1, 20),
      PEER_BACKOFF_MAX_MS,
    );
    const fields = {
      peer: peer.id,
      url: peer.url,
      error: reason,
      failures: peer.failures,
      backoffMs,
    };
    // What waited behind the failure is stale by the time the peer answers; Raft re-sends.
    peer.dropped += peer.queue.length;
    peer.queue = [];
    peer.queuedBytes = 0;
    clearTimeout(peer.backoffTimer);
    peer.backoffTimer = setTimeout(() => {
      peer.backoffTimer = undefined;
      this.#pump(peer);
    }, backoffMs);
    if (peer.unreachable) {
      this.#logger.debug("peer still unreachable", fields);
      return;
    }
    peer.unreachable = true;
    peer.lastRejectedStatus = 0;
    this.#logger.warn("peer unreachable", fields);
    // Last, once the back-off is set: a throwing callback cannot leave the peer without a timer.
    this.#onUnreachable?.(peer.id);
  }
}

/** Reads what the answer means, and always consumes or cancels its body. */
async function readOutcome(response: Response): Promise<Outcome> {
  if (response.ok) {
    if (!response.bodyUsed) await response.body?.cancel();
    return { kind: "delivered" };
  }
  const text = await response.text();
  return outcomeOf(response.status, () => text);
}

/** What an answer with `status` means; `text` gives its body for the log. */
function outcomeOf(status: number, text: () => string): Outcome {
  if (status >= 200 && status < 300) return { kind: "delivered" };
  const answer = text().slice(0, ANSWER_CHARS_MAX);
  if (REJECTED_STATUSES.has(status)) return { kind: "rejected", status, answer };
  return { kind: "failed", reason: `HTTP ${status}: ${answer}`, status };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function describeError(error: unknown, timeoutMs: number): string {
  if (error instanceof DOMException && error.name === "TimeoutError") {
    return `no answer within ${timeoutMs} ms`;
  }
  return error instanceof Error ? error.message : String(error);
}
