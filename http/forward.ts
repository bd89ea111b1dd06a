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

/**
 * Runs `local` (given the remaining time); if this node is not the leader, relays `request` to
 * the leader, waiting for one to be known if needed. Other errors propagate to the mapping.
 */
export async function onLeader(
  request: OriginalRequest,
  deadline: Deadline,
  deps: ForwardDeps,
  local: (timeoutMs: number) => Promise<Response>,
): Promise<Response> {
  for (let attempt = 0; attempt < LOCAL_ATTEMPTS_MAX; attempt++) {
    let notLeader: NotLeaderError;
    try {
      return await local(Math.max(1, deadline.remainingMs()));
    } catch (error) {
      if (!(error instanceof NotLeaderError)) throw error;
      notLeader = error;
    }
    if (request.forwarded) {
      throw noLeaderError(
        "This node received a forwarded request but is not the leader",
        notLeader.leaderUrl ?? null,
      );
    }
    let leader = notLeader.leaderUrl !== undefined && notLeader.leaderId !== deps.node.id
      ? { id: notLeader.leaderId, url: notLeader.leaderUrl }
      : undefined;
    if (leader === undefined) {
      // Throws NoLeaderError (503) if no leader appears before the deadline.
      leader = await deps.node.waitLeader({ timeoutMs: Math.max(1, deadline.remainingMs()) });
      if (leader.id === deps.node.id) continue;
    }
    return await relay(request, leader.url, deadline, deps);
  }
  throw noLeaderError("Leadership kept changing until the deadline");
}

/** Connection failures that happen before a byte of the request could reach the leader. */
function failedBeforeSending(error: unknown): boolean {
  const text = error instanceof Error ? `${error.message} ${String(error.cause ?? "")}` : "";
  return /connect(?!ion)|refused|dns|lookup|resolve|unreachable|invalid url/i.test(text);
}

async function relay(
  request: OriginalRequest,
  leaderUrl: string,
  deadline: Deadline,
  deps: ForwardDeps,
): Promise<Response> {
  const original = new URL(request.url);
  const target = `${leaderUrl.replace(/\/+$/, "")}${original.pathname}${original.search}`;
  const remainingMs = deadline.remainingMs();
  const headers = new Headers({
    [FORWARDED_HEADER]: deps.node.id,
    [TIMEOUT_HEADER]: String(
      Math.max(1, remainingMs - Math.min(RELAY_MARGIN_MS_MAX, remainingMs / 10)),
    ),
  });
  if (request.contentType !== null) headers.set("content-type", request.contentType);
  if (request.idempotencyKey !== null) headers.set("idempotency-key", request.idempotencyKey);
  // fetch cannot send a body with GET; every client route that takes GET also takes POST.
  const hasBody = request.body.length > 0;
  const method = hasBody && (request.method === "GET" || request.method === "HEAD")
    ? "POST"
    : request.method;
  const signal = AbortSignal.timeout(Math.max(1, remainingMs));
  let sent = false;
  try {
    const response = await deps.fetch(target, {
      method,
      headers,
      body: hasBody ? request.body as Uint8Array<ArrayBuffer> : undefined,
      signal,
      redirect: "manual",
    });
    sent = true;
    const body = await response.arrayBuffer();
    const relayed = new Headers();
    for (const name of RELAYED_RESPONSE_HEADERS) {
      const value = response.headers.get(name);
      if (value !== null) relayed.set(name, value);
    }
    if (!relayed.has("x-raft-leader")) relayed.set("x-raft-leader", leaderUrl);
    deps.forwards.inc({ result: "relayed" });
    return new Response(body, { status: response.status, headers: relayed });
  } catch (error) {
    const timedOut = signal.aborted;
    deps.forwards.inc({ result: timedOut ? "timeout" : "unreachable" });
    deps.logger.warn("cannot relay to the leader", {
      leader: leaderUrl,
      path: original.pathname,
      error: String(error),
    });
    if (request.write && (sent || timedOut || !failedBeforeSending(error))) {
      throw outcomeUnknownError(`No answer from the leader "${leaderUrl}" in time`);
    }
    if (timedOut) {
      throw new ApiError(503, "timeout", {
        body: {
          outcome: "none",
          message: `No answer from the leader "${leaderUrl}" in time`,
          leader: leaderUrl,
        },
        headers: { "Retry-After": "1" },
      });
    }
    throw noLeaderError(`The leader "${leaderUrl}" is unreachable`, leaderUrl);
  }
}
