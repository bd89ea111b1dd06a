/**
 * One peer's pipe in the peer transport: its queue of messages, the requests in flight, its
 * failure streak, and the answers to its own requests that wait for our messages (see
 * http/peer_transport.ts). Plain data and the functions that take from the queue.
 */
import type { Message, NodeId } from "../raft/mod.ts";

/** Messages in one request to /raft/messages. */
export const PEER_BATCH_MESSAGES_MAX = 1_024;
/** Estimated bytes in one request to /raft/messages: half the 8 MiB the route accepts. */
export const PEER_BATCH_BYTES_MAX = 4 * 1024 * 1024;

export interface Queued {
  message: Message;
  bytes: number;
}

export class Peer {
  queue: Queued[] = [];
  queuedBytes = 0;
  inflight = 0;
  sent = 0;
  dropped = 0;
  failures = 0;
  unreachable = false;
  /** Set while backing off: no request starts until it fires. */
  backoffTimer: ReturnType<typeof setTimeout> | undefined = undefined;
  pumpScheduled = false;
  /** So a full queue is reported once per episode, not once per message. */
  overflowReported = false;
  /** So a peer that keeps refusing our bytes is reported once per status. */
  lastRejectedStatus = 0;
  /** A snapshot transfer is under way: another one would only make the peer start over. */
  sendingSnapshot = false;
  /** Answers to this peer's requests waiting for our next messages to it, oldest first. */
  responders: Responder[] = [];

  constructor(readonly id: NodeId, public url: string) {}
}

export interface Responder {
  resolve: (messages: Message[]) => void;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * The head of the queue as one request: an installSnapshot alone (it has its own route and
 * deadline), otherwise the messages up to the next snapshot within the batch limits, in order.
 */
export function takeBatch(peer: Peer, bytesMax = PEER_BATCH_BYTES_MAX): Message[] {
  const first = peer.queue[0];
  let count = 1;
  let bytes = first.bytes;
  if (first.message.type !== "installSnapshot") {
    while (count < peer.queue.length && count < PEER_BATCH_MESSAGES_MAX) {
      const next = peer.queue[count];
      if (next.message.type === "installSnapshot" || bytes + next.bytes > bytesMax) {
        break;
      }
      bytes += next.bytes;
      count++;
    }
  }
  const taken = peer.queue.splice(0, count);
  peer.queuedBytes -= bytes;
  return taken.map((item) => item.message);
}

/** Answers to a peer's requests get no more messages: they go out empty, now. */
export function releaseResponders(peer: Peer): void {
  for (const responder of peer.responders) {
    clearTimeout(responder.timer);
    responder.resolve([]);
  }
  peer.responders = [];
}

/** The head of the queue alone. */
export function takeOne(peer: Peer): Message[] {
  const taken = peer.queue.shift()!;
  peer.queuedBytes -= taken.bytes;
  return [taken.message];
}
