/**
 * Forwarding in one place: a request that needs the leader runs locally, and if this node is
 * not the leader, the original request is relayed to the leader within what is left of its
 * deadline and the leader's answer is relayed back. A relayed request carries
 * X-Raft-Forwarded and is never relayed a second time (no loops during elections).
 */
import { type Logger, NotLeaderError, type RaftNodeApi } from "../raft/mod.ts";
import { ApiError, noLeaderError, outcomeUnknownError } from "./errors.ts";
import type { Counter } from "./metrics.ts";

export const FORWARDED_HEADER = "X-Raft-Forwarded";
/** What is left of the deadline when a follower relays: the leader answers within it. */
export const TIMEOUT_HEADER = "X-Raft-Timeout-Ms";
/** Times a request may find "not leader" locally before it gives up (leadership flapping). */
const LOCAL_ATTEMPTS_MAX = 3;
/** Kept from the relayed deadline so the leader's answer has time to come back. */
const RELAY_MARGIN_MS_MAX = 100;
const RELAYED_RESPONSE_HEADERS = [
  "content-type",
  "x-raft-index",
  "x-raft-leader",
  "retry-after",
  "allow",
];

/** A request's deadline, fixed when it arrives. */
export class Deadline {
  #now: () => number;
  #atMs: number;

  constructor(now: () => number, timeoutMs: number) {
    this.#now = now;
    this.#atMs = now() + timeoutMs;
  }

  remainingMs(): number {
    return Math.max(0, Math.round(this.#atMs - this.#now()));
  }
}

/** The request as it arrived, kept to relay it unchanged. */
export interface OriginalRequest {
  method: string;
  url: string;
  body: Uint8Array;
  contentType: string | null;
  idempotencyKey: string | null;
  /** It came from another node: never relay it again. */
  forwarded: boolean;
  /** It may change state: once sent, no answer means the outcome is unknown. */
  write: boolean;
}

export interface ForwardDeps {
  node: RaftNodeApi;
  fetch: typeof fetch;
  logger: Logger;
  /** raftkv_forwarded_requests_total{result}. */
  forwards: Counter;
}

/** The timeout of a request: a relayed one brings what is left of the follower's deadline. */
export function requestTimeoutMs(headers: Headers, defaultMs: number): number {
  const relayed = headers.get(TIMEOUT_HEADER);
  if (relayed === null || !headers.has(FORWARDED_HEADER)) return defaultMs;
  const timeoutMs = /^[0-9]{1,9}$/.test(relayed) ? Number(relayed) : defaultMs;
  return Math.max(1, Math.min(timeoutMs, defaultMs));
}

/** A request on its way to the leader: what to relay, and until when. */
export interface LeaderRequest {
  original: OriginalRequest;
  deadline: Deadline;
}

/** Runs requests on the leader: locally when this node leads, else relayed to the leader. */
export class Forwarder {
  #deps: ForwardDeps;

  constructor(deps: ForwardDeps) {
    this.#deps = deps;
  }

  /**
   * Runs `local` (given the remaining time); if this node is not the leader, relays the request
   * to the leader, waiting for one to be known if needed. Other errors go to the mapping.
   */
  async onLeader(
    request: LeaderRequest,
    local: (timeoutMs: number) => Promise<Response>,
  ): Promise<Response> {
    const { node } = this.#deps;
    const { deadline } = request;
    for (let attempt = 0; attempt < LOCAL_ATTEMPTS_MAX; attempt++) {
      let notLeader: NotLeaderError;
      try {
        return await local(Math.max(1, deadline.remainingMs()));
      } catch (error) {
        if (!(error instanceof NotLeaderError)) throw error;
        notLeader = error;
      }
      let leader = notLeader.leaderUrl !== undefined && notLeader.leaderId !== node.id
        ? { id: notLeader.leaderId, url: notLeader.leaderUrl }
        : undefined;
      if (leader === undefined) {
        // Throws NoLeaderError (503) if no leader appears before the deadline.
        leader = await node.waitLeader({ timeoutMs: Math.max(1, deadline.remainingMs()) });
        if (leader.id === node.id) continue;
      }
      if (request.original.forwarded) {
        throw noLeaderError(
          "This node received a forwarded request but is not the leader",
          leader.url,
        );
      }
      return await this.#relay(request, leader.url);
    }
    throw noLeaderError("Leadership kept changing until the deadline");
  }

  async #relay(request: LeaderRequest, leaderUrl: string): Promise<Response> {
    const { original } = request;
    const url = new URL(original.url);
    const remainingMs = request.deadline.remainingMs();
    const signal = AbortSignal.timeout(Math.max(1, remainingMs));
    try {
      const response = await this.#deps.fetch(
        `${leaderUrl.replace(/\/+$/, "")}${url.pathname}${url.search}`,
        { ...relayInit(original, { nodeId: this.#deps.node.id, remainingMs }), signal },
      );
      const body = await response.arrayBuffer();
      const headers = new Headers();
      for (const name of RELAYED_RESPONSE_HEADERS) {
        const value = response.headers.get(name);
        if (value !== null) headers.set(name, value);
      }
      if (!headers.has("x-raft-leader")) headers.set("x-raft-leader", leaderUrl);
      this.#deps.forwards.inc({ result: "relayed" });
      return new Response(body, { status: response.status, headers });
    } catch (error) {
      throw this.#relayFailure(original, { leaderUrl, error, timedOut: signal.aborted });
    }
  }

  #relayFailure(
    original: OriginalRequest,
    failure: { leaderUrl: string; error: unknown; timedOut: boolean },
  ): ApiError {
    const { leaderUrl, error, timedOut } = failure;
    this.#deps.forwards.inc({ result: timedOut ? "timeout" : "unreachable" });
    this.#deps.logger.warn("cannot relay to the leader", {
      leader: leaderUrl,
      path: new URL(original.url).pathname,
      error: String(error),
    });
    const message = `No answer from the leader "${leaderUrl}" in time`;
    // fetch may resend a request on a fresh connection when a kept-alive one closes under it,
    // so even "connection refused" can follow a first attempt the leader received and
    // proposed: a write that failed on the way has an unknown outcome, never "not proposed".
    if (original.write) return outcomeUnknownError(message);
    if (timedOut) return noLeaderError(message, leaderUrl);
    return noLeaderError(`The leader "${leaderUrl}" is unreachable`, leaderUrl);
  }
}

/** The relayed request: the original method, body and the headers that matter. */
function relayInit(
  original: OriginalRequest,
  options: { nodeId: string; remainingMs: number },
): RequestInit {
  const { remainingMs } = options;
  const margin = Math.min(RELAY_MARGIN_MS_MAX, remainingMs / 10);
  const headers = new Headers({
    [FORWARDED_HEADER]: options.nodeId,
    [TIMEOUT_HEADER]: String(Math.max(1, Math.floor(remainingMs - margin))),
  });
  if (original.contentType !== null) headers.set("content-type", original.contentType);
  if (original.idempotencyKey !== null) headers.set("idempotency-key", original.idempotencyKey);
  // fetch cannot send a body with GET; every client route that takes GET also takes POST.
  const hasBody = original.body.length > 0;
  const method = hasBody && (original.method === "GET" || original.method === "HEAD")
    ? "POST"
    : original.method;
  return {
    method,
    headers,
    body: hasBody ? original.body as Uint8Array<ArrayBuffer> : undefined,
    redirect: "manual",
  };
}
