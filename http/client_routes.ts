/**
 * The client API of API.md: /set, /get, /cas, /delete and /kv/{key}. Handlers are thin: read
 * the parameters (params.ts), call KvService on the leader (forward.ts), shape the answer.
 * They are the hot path, so they see an Exchange (exchange.ts), not a framework context.
 */
import type { Context } from "hono";
import type { Command } from "../kv/mod.ts";
import type { Exchange } from "./exchange.ts";
import type { Forwarder } from "./forward.ts";
import type { KvService, WriteResult } from "./kv_service.ts";
import {
  checkKey,
  checkValue,
  type ClientRequest,
  consistencyParam,
  decodePercent,
  decodeUtf8,
  expectedParam,
  keyParam,
  minIndexParam,
  readClientRequest,
  requestIdParam,
  valueParam,
} from "./params.ts";

/** One route: its pattern, the methods it serves (others get 405), and its handler. */
export interface RouteSpec {
  path: string;
  methods: string[];
  /** It changes state, so HEAD (which Hono would run as GET) is refused. */
  writes: boolean;
  handler: (c: Context) => Promise<Response> | Response;
}

/** A client route: as RouteSpec, with a handler that takes an Exchange. */
export interface ClientRouteSpec extends Omit<RouteSpec, "handler"> {
  handler: (exchange: Exchange) => Promise<Response>;
}

export interface ClientRouteDeps {
  service: KvService;
  forwarder: Forwarder;
  requestTimeoutMs: number;
  nowMs: () => number;
}

/** One request being served: the exchange, what was read from it, and the route's deps. */
interface Call {
  c: Exchange;
  request: ClientRequest;
  deps: ClientRouteDeps;
}

async function readCall(c: Exchange, deps: ClientRouteDeps, write: boolean): Promise<Call> {
  return { c, deps, request: await readClientRequest(c.request, { ...deps, write }) };
}

function writeAnswer(c: Exchange, result: WriteResult): Response {
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

/** The command, with the request_id (or Idempotency-Key) that makes a retry safe, if any. */
function withRequestId(call: Call, command: Command): Command {
  const header = call.c.header("idempotency-key");
  const requestId = requestIdParam(call.request.params, header);
  return requestId === undefined ? command : { ...command, requestId };
}

async function write(call: Call, command: Command): Promise<Response> {
  const { c, request, deps } = call;
  const withId = withRequestId(call, command);
  return await deps.forwarder.onLeader(request, async (timeoutMs) => {
    return writeAnswer(c, await deps.service.write(withId, { timeoutMs }));
  });
}

async function read(call: Call, key: string): Promise<Response> {
  const { c, request, deps } = call;
  const consistency = consistencyParam(request.params);
  const minIndex = minIndexParam(request.params);
  const run = async (timeoutMs: number) => {
    const answer = await deps.service.read(key, { consistency, minIndex, timeoutMs });
    c.setIndex(answer.appliedIndex);
    return answer.entry === undefined
      ? c.json({ error: "key not found", key }, 404)
      : c.json({ key, value: answer.entry.value, index: answer.entry.index });
  };
  // Stale reads are served from the local copy by definition: never relayed.
  if (consistency === "stale") return await run(Math.max(1, request.deadline.remainingMs()));
  return await deps.forwarder.onLeader(request, run);
}

async function handleSet(c: Exchange, deps: ClientRouteDeps): Promise<Response> {
  const call = await readCall(c, deps, true);
  const key = keyParam(call.request.params);
  const value = valueParam(call.request.params);
  return await write(call, { type: "set", key, value });
}

async function handleCas(c: Exchange, deps: ClientRouteDeps): Promise<Response> {
  const call = await readCall(c, deps, true);
  const key = keyParam(call.request.params);
  const expected = expectedParam(call.request.params);
  const value = valueParam(call.request.params);
  return await write(call, { type: "cas", key, expected, value });
}

async function handleDelete(c: Exchange, deps: ClientRouteDeps): Promise<Response> {
  const call = await readCall(c, deps, true);
  return await write(call, { type: "delete", key: keyParam(call.request.params) });
}

async function handleGet(c: Exchange, deps: ClientRouteDeps): Promise<Response> {
  const call = await readCall(c, deps, false);
  return await read(call, keyParam(call.request.params));
}

/** /kv/{key}: the key is everything after "/kv/", percent-decoded strictly ("a/b" allowed). */
async function handleKv(c: Exchange, deps: ClientRouteDeps): Promise<Response> {
  const method = c.method;
  const writes = method === "PUT" || method === "DELETE";
  const request = await readClientRequest(c.request, { ...deps, write: writes, rawBody: true });
  const call: Call = { c, request, deps };
  const path = c.path();
  const key = checkKey(decodePercent(path.slice("/kv/".length), "the key in the path"));
  if (method === "DELETE") return await write(call, { type: "delete", key });
  if (method === "PUT") {
    const value = checkValue(decodeUtf8(request.body, "the body"));
    return await write(call, { type: "set", key, value });
  }
  return await read(call, key);
}

export function clientRoutes(deps: ClientRouteDeps): ClientRouteSpec[] {
  return [
    {
      path: "/set",
      methods: ["GET", "POST", "PUT"],
      writes: true,
      handler: (c) => handleSet(c, deps),
    },
    { path: "/get", methods: ["GET", "POST"], writes: false, handler: (c) => handleGet(c, deps) },
    {
      path: "/cas",
      methods: ["GET", "POST", "PUT"],
      writes: true,
      handler: (c) => handleCas(c, deps),
    },
    {
      path: "/delete",
      methods: ["POST", "DELETE"],
      writes: true,
      handler: (c) => handleDelete(c, deps),
    },
    {
      path: "/kv/:key{.*}",
      methods: ["GET", "PUT", "DELETE"],
      writes: false,
      handler: (c) => handleKv(c, deps),
    },
  ];
}
