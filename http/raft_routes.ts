/**
 * The peer endpoints, mounted at /raft: POST /messages takes a MessagePack array of messages,
 * POST /snapshot one installSnapshot message. Bytes pass parseMessages (the gateway) before
 * anything reaches the node, and the answer does not wait for Raft: 204 means "handed over".
 */
import { AssertionError } from "node:assert/strict";
import { type Context, Hono } from "hono";
import type { Logger, Message, NodeId, RaftNodeApi } from "../raft/mod.ts";
import { parseMessages } from "../raft/mod.ts";

/** Body of POST /raft/messages: twice what PeerTransport puts in one batch. */
export const RAFT_MESSAGES_BYTES_MAX = 8 * 1024 * 1024;
/** Body of POST /raft/snapshot: one whole snapshot. */
export const RAFT_SNAPSHOT_BYTES_MAX = 1024 * 1024 * 1024;
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
}

interface Endpoint {
  path: string;
  bytesMax: number;
  /** Checks the parsed messages fit the endpoint; returns a problem, or undefined. */
  check(messages: Message[]): string | undefined;
}

const ENDPOINTS: Endpoint[] = [
  { path: "/messages", bytesMax: RAFT_MESSAGES_BYTES_MAX, check: () => undefined },
  {
    path: "/snapshot",
    bytesMax: RAFT_SNAPSHOT_BYTES_MAX,
    check: (messages) =>
      messages.length === 1 && messages[0].type === "installSnapshot"
        ? undefined
        : `Cannot accept on /raft/snapshot: expected one "installSnapshot" message, got ${messages.length}`,
  },
];

/** The /raft/* routes, with paths relative to where the app mounts them. */
export function createRaftRoutes(deps: RaftRoutesDeps): Hono {
  const app = new Hono();
  for (const endpoint of ENDPOINTS) {
    app.post(endpoint.path, (c) => handle(c, deps, endpoint));
    app.all(endpoint.path, (c) => c.json({ error: "method not allowed" }, 405, { Allow: "POST" }));
  }
  return app;
}

async function handle(c: Context, deps: RaftRoutesDeps, endpoint: Endpoint): Promise<Response> {
  const cluster = c.req.header("X-Raft-Cluster");
  if (cluster !== undefined && cluster !== deps.clusterId) {
    deps.logger.warn("peer message from another cluster refused", {
      from: c.req.header("X-Raft-From") ?? null,
      cluster,
    });
    return c.json(
      { error: "cluster id mismatch", expected: deps.clusterId, received: cluster },
      409,
    );
  }
  const contentType = c.req.header("Content-Type");
  if (contentType !== undefined && contentType.split(";")[0].trim() !== "application/msgpack") {
    return c.json({ error: "unsupported content type", expected: "application/msgpack" }, 415);
  }
  const body = await readBody(c.req.raw, endpoint.bytesMax);
  if (body === "tooLarge") {
    return c.json({ error: "request body too large", bytesMax: endpoint.bytesMax }, 413);
  }
  if (body === "unreadable") return c.json({ error: "cannot read the request body" }, 400);
  let messages: Message[];
  try {
    messages = parseMessages(body);
  } catch (error) {
    if (!(error instanceof TypeError)) throw error;
    return c.json({ error: error.message }, 400);
  }
  const problem = endpoint.check(messages);
  if (problem !== undefined) return c.json({ error: problem }, 400);
  const fromUrl = c.req.header("X-Raft-From-Url");
  if (
    fromUrl !== undefined && deps.learnPeer !== undefined && /^https?:\/\/[^\s]+$/.test(fromUrl)
  ) {
    for (const from of new Set(messages.map((message) => message.from))) {
      deps.learnPeer(from, fromUrl);
    }
  }
  return stepAll(c, deps, messages);
}

function stepAll(c: Context, deps: RaftRoutesDeps, messages: Message[]): Response {
  let misaddressed = 0;
  try {
    for (const message of messages) {
      // A message for another node (a peer with a stale address book) would corrupt our state.
      if (message.to !== deps.selfId) {
        misaddressed++;
        continue;
      }
      deps.node.step(message);
    }
  } catch (error) {
    // Our own bugs must crash the node (STYLE C2.5), not turn into an answer.
    if (error instanceof AssertionError) throw error;
    const reason = error instanceof Error ? error.message : String(error);
    return c.json({ error: "node is not accepting messages", reason }, 503);
  }
  if (misaddressed > 0) {
    deps.logger.debug("peer messages for another node dropped", {
      selfId: deps.selfId,
      misaddressed,
    });
  }
  return c.body(null, 204);
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
