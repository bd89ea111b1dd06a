/** ApiError and the one table that turns an error into an HTTP status, body and headers. */
import { HTTPException } from "hono/http-exception";
import {
  MembershipError,
  NoLeaderError,
  NotLeaderError,
  ProposalDroppedError,
  ProposalTimeoutError,
  ReadTimeoutError,
  StoppedError,
  StorageError,
} from "../raft/mod.ts";

export type JsonBody = Record<string, unknown>;

/** A client-visible failure decided by http/ itself (bad input, unknown member, relay failure). */
export class ApiError extends Error {
  override name = "ApiError";
  readonly status: number;
  readonly body: JsonBody;
  readonly headers: Record<string, string>;

  constructor(
    status: number,
    message: string,
    options: { body?: JsonBody; headers?: Record<string, string> } = {},
  ) {
    super(message);
    this.status = status;
    this.body = { error: message, ...options.body };
    this.headers = options.headers ?? {};
  }
}

export interface ErrorReply {
  status: number;
  body: JsonBody;
  headers: Record<string, string>;
  /** An unexpected error: worth logging with its stack. */
  unexpected: boolean;
}

// A 503 promises that nothing was changed, so the client may retry: Retry-After says when.
const RETRY = { "Retry-After": "1" };

/** 503 answered when no leader could be found before the deadline; nothing was proposed. */
export function noLeaderError(message: string, leaderUrl: string | null = null): ApiError {
  return new ApiError(503, "no leader", {
    body: { message, leader: leaderUrl },
    headers: RETRY,
  });
}

/** 504 answered when a write was sent but its fate is not known in time. */
export function outcomeUnknownError(message: string): ApiError {
  return new ApiError(504, "timeout", { body: { outcome: "unknown", message } });
}

/**
 * THE mapping from errors to HTTP answers. NotLeaderError is normally turned into a forward
 * by http/forward.ts; it only reaches this table when forwarding is impossible (the request
 * was already forwarded once), so it means "no usable leader".
 */
/** Every 503 says `"error":"no leader"` (API.md); `reason` tells which way it came about. */
export function errorReply(error: unknown): ErrorReply {
  const reply = (status: number, body: JsonBody, headers: Record<string, string> = {}) => ({
    status,
    body,
    headers,
    unexpected: false,
  });
  if (error instanceof ApiError) return reply(error.status, error.body, error.headers);
  if (error instanceof NotLeaderError) {
    return reply(503, {
      error: "no leader",
      message: error.message,
      leader: error.leaderUrl ?? null,
    }, RETRY);
  }
  if (error instanceof NoLeaderError) {
    return reply(503, { error: "no leader", message: error.message, leader: null }, RETRY);
  }
  if (error instanceof ProposalDroppedError) {
    return reply(
      503,
      { error: "no leader", reason: "proposal dropped", outcome: "none", message: error.message },
      RETRY,
    );
  }
  if (error instanceof ProposalTimeoutError) {
    return reply(504, { error: "timeout", outcome: "unknown", message: error.message });
  }
  if (error instanceof ReadTimeoutError) {
    // A read that timed out changed nothing (the leader could not confirm a quorum, or this
    // node has not applied min_index yet): like "no leader", it is safe to retry, so 503.
    return reply(
      503,
      { error: "no leader", reason: "read timeout", message: error.message },
      RETRY,
    );
  }
  if (error instanceof MembershipError) {
    // The change is well formed (params.ts checked it) but not possible now: a conflict.
    return reply(409, { error: "membership change refused", message: error.message });
  }
  if (error instanceof StoppedError) {
    return reply(503, { error: "no leader", reason: "stopping", message: error.message }, RETRY);
  }
  if (error instanceof StorageError) {
    // The entry may have reached followers before the local write failed.
    return { ...reply(500, { error: "storage failure", outcome: "unknown" }), unexpected: true };
  }
  if (error instanceof HTTPException) {
    return reply(error.status, { error: error.message || "bad request" });
  }
  return { ...reply(500, { error: "internal error" }), unexpected: true };
}
