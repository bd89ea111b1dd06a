/**
 * The client API of API.md: /set, /get, /cas, /delete and /kv/{key}. Handlers are thin: read
 * the parameters (params.ts), call KvService on the leader (forward.ts), shape the answer.
 */
import type { Context } from "hono";
import type { RaftNodeApi } from "../raft/mod.ts";
import type { Command } from "../kv/mod.ts";
import {
  Deadline,
  type ForwardDeps,
  FORWARDED_HEADER,
  onLeader,
  type OriginalRequest,
  requestTimeoutMs,
} from "./forward.ts";
import type { KvService, WriteResult } from "./kv_service.ts";
import {
  BODY_BYTES_MAX,
  bodyParams,
  checkKey,
  checkValue,
  consistencyParam,
  decodePercent,
  decodeUtf8,
  expectedParam,
  keyParam,
  minIndexParam,
  type Params,
  queryParams,
  readBody,
  requestIdParam,
  valueParam,
} from "./params.ts";
import { VALUE_BYTES_MAX } from "../kv/mod.ts";

/** One route: its pattern, the methods it serves (others get 405), and its handler. */
export interface RouteSpec {
  path: string;
  methods: string[];
  /** It changes state, so HEAD (which Hono would run as GET) is refused. */
  writes: boolean;
  handler: (c: Context) => Promise<Response> | Response;
}

export interface ClientRouteDeps {
  service: KvService;
  node: RaftNodeApi;
  forward: ForwardDeps;
  requestTimeoutMs: number;
  nowMs: () => number;
}

export const RAFT_INDEX_HEADER = "X-Raft-Index";

/** A request read once: its parameters, its deadline, and what is needed to relay it. */
export interface ClientRequest {
  params: Params;
  deadline: Deadline;
  original: OriginalRequest;
}

/** Reads the body once (bounded), fixes the deadline, and keeps the original for relaying. */
export async function readClientRequest(
  c: Context,
  deps: Pick<ClientRouteDeps, "requestTimeoutMs" | "nowMs">,
  options: { write: boolean; rawBody?: boolean },
): Promise<ClientRequest & { body: Uint8Array }> {
  const headers = c.req.raw.headers;
  const deadline = new Deadline(deps.nowMs, requestTimeoutMs(headers, deps.requestTimeoutMs));
  // A raw body is a value itself (PUT /kv/{key}): over the value limit it is a 413 at once.
  const raw = options.rawBody === true;
  const body = await readBody(c.req.raw, raw ? VALUE_BYTES_MAX : BODY_BYTES_MAX);
  const contentType = headers.get("content-type");
  const params = raw ? queryParams(c.req.url) : await bodyParams(c.req.url, body, contentType);
  // Only PUT /kv/{key} uses its raw body; elsewhere on /kv it is ignored and not relayed.
  const relayedBody = raw && c.req.method !== "PUT" ? new Uint8Array(0) : body;
  const original: OriginalRequest = {
    method: c.req.method,
    url: c.req.url,
    body: relayedBody,
    contentType,
    idempotencyKey: headers.get("idempotency-key"),
    forwarded: headers.has(FORWARDED_HEADER),
    write: options.write,
  };
  return { params, deadline, original, body };
}

function writeAnswer(c: Context, result: WriteResult): Response {
  switch (result.type) {
    case "set":
      return c.json({ ok: true, index: result.index });
    case "cas":
      return result.ok
        ? c.json({ ok: true, index: result.index })
        : c.json({ ok: false, error: "compare failed", current: result.current }, 409);
    case "delete":
      return c.json({ ok: true, deleted: result.deleted });
  }
}

function withRequestId<T extends Command>(command: T, requestId: string | undefined): T {
  return requestId === undefined ? command : { ...command, requestId };
}

/** The key of /kv/{key}: everything after "/kv/", percent-decoded strictly ("a/b" allowed). */
function pathKey(c: Context): string {
  const path = new URL(c.req.url).pathname;
  return checkKey(decodePercent(path.slice("/kv/".length), "the key in the path"));
}

export function clientRoutes(deps: ClientRouteDeps): RouteSpec[] {
  const { service, forward } = deps;

  const write = async (c: Context, request: ClientRequest, command: Command) =>
    await onLeader(request.original, request.deadline, forward, async (timeoutMs) => {
      return writeAnswer(c, await service.write(command, { timeoutMs }));
    });

  const read = async (c: Context, request: ClientRequest, key: string) => {
    const consistency = consistencyParam(request.params);
    const minIndex = minIndexParam(request.params);
    const run = async (timeoutMs: number) => {
      const answer = await service.read(key, { consistency, minIndex, timeoutMs });
      c.header(RAFT_INDEX_HEADER, String(answer.appliedIndex));
      return answer.entry === undefined
        ? c.json({ error: "key not found", key }, 404)
        : c.json({ key, value: answer.entry.value, index: answer.entry.index });
    };
    // Stale reads are served from the local copy by definition: never relayed.
    if (consistency === "stale") return await run(Math.max(1, request.deadline.remainingMs()));
    return await onLeader(request.original, request.deadline, forward, run);
  };

  const requestId = (c: Context, request: ClientRequest) =>
    requestIdParam(request.params, c.req.header("idempotency-key") ?? null);

  const handleSet = async (c: Context) => {
    const request = await readClientRequest(c, deps, { write: true });
    const key = keyParam(request.params);
    const value = valueParam(request.params);
    return await write(
      c,
      request,
      withRequestId({ type: "set", key, value }, requestId(c, request)),
    );
  };

  const handleCas = async (c: Context) => {
    const request = await readClientRequest(c, deps, { write: true });
    const key = keyParam(request.params);
    const expected = expectedParam(request.params);
    const value = valueParam(request.params);
    const command = withRequestId({ type: "cas", key, expected, value }, requestId(c, request));
    return await write(c, request, command);
  };

  const handleDelete = async (c: Context) => {
    const request = await readClientRequest(c, deps, { write: true });
    const key = keyParam(request.params);
    return await write(c, request, withRequestId({ type: "delete", key }, requestId(c, request)));
  };

  const handleGet = async (c: Context) => {
    const request = await readClientRequest(c, deps, { write: false });
    return await read(c, request, keyParam(request.params));
  };

  const handleKv = async (c: Context) => {
    const method = c.req.method;
    const isWrite = method === "PUT" || method === "DELETE";
    const request = await readClientRequest(c, deps, { write: isWrite, rawBody: true });
    const key = pathKey(c);
    if (method === "GET" || method === "HEAD") return await read(c, request, key);
    const id = requestId(c, request);
    if (method === "DELETE") {
      return await write(c, request, withRequestId({ type: "delete", key }, id));
    }
    const value = checkValue(decodeUtf8(request.body, "the body"));
    return await write(c, request, withRequestId({ type: "set", key, value }, id));
  };

  return [
    { path: "/set", methods: ["GET", "POST", "PUT"], writes: true, handler: handleSet },
    { path: "/get", methods: ["GET", "POST"], writes: false, handler: handleGet },
    { path: "/cas", methods: ["GET", "POST", "PUT"], writes: true, handler: handleCas },
    { path: "/delete", methods: ["POST", "DELETE"], writes: true, handler: handleDelete },
    { path: "/kv/:key{.+}", methods: ["GET", "PUT", "DELETE"], writes: false, handler: handleKv },
  ];
}
