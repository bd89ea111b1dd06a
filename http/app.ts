/**
 * createApp(): the Hono application every node serves. It mounts the client and operating
 * routes (and the peer routes at /raft), answers JSON for everything (404 and 405 included),
 * maps errors through http/errors.ts, and records latency by route pattern.
 */
import { AssertionError } from "node:assert/strict";
import { type Context, Hono, type MiddlewareHandler } from "hono";
import { routePath } from "hono/route";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { Logger, RaftNodeApi } from "../raft/mod.ts";
import type { KvStateMachine } from "../kv/mod.ts";
import { clientRoutes, type ClientRouteSpec, type RouteSpec } from "./client_routes.ts";
import { errorReply } from "./errors.ts";
import {
  type AnswerHeaders,
  Exchange,
  pathOf,
  RAFT_INDEX_HEADER,
  RAFT_LEADER_HEADER,
} from "./exchange.ts";
import { Forwarder } from "./forward.ts";
import { KvService } from "./kv_service.ts";
import { type Metrics, type RaftkvMetrics, raftkvMetrics } from "./metrics.ts";
import { opsRoutes } from "./ops_routes.ts";
import { uiRoutes } from "./ui_routes.ts";

/** Exit code when an assertion (our own bug) fires while serving: EX_SOFTWARE. */
export const ASSERTION_EXIT_CODE = 70;
const PATH_ECHO_CHARS_MAX = 1024;

export interface AppDeps {
  node: RaftNodeApi;
  stateMachine: KvStateMachine;
  logger: Logger;
  metrics: Metrics;
  /** Deadline of each client request, forwarding included. */
  requestTimeoutMs: number;
  /** Peer routes, mounted at /raft (written in http/raft_routes.ts). */
  raftRoutes?: Hono;
  /** POST /raft/messages as a function, to serve it before Hono's router (the busiest route). */
  raftMessages?: (request: Request) => Promise<Response>;
  clusterId: string;
  /** Used to relay requests to the leader and to probe new members; default global fetch. */
  fetch?: typeof fetch;
  /** Called when an assertion fires: the node must not keep serving. Default Deno.exit. */
  exit?: (code: number) => void;
  /** Updates metrics kept outside the app (node, transport, storage) before a scrape. */
  collectMetrics?: () => void;
  /** Monotonic clock in ms for deadlines and latency; default performance.now. */
  nowMs?: () => number;
}

function methodNotAllowed(c: Context, methods: string[]): Response {
  return c.json({ error: "method not allowed", method: c.req.method, allowed: methods }, 405, {
    Allow: methods.join(", "),
  });
}

function register(app: Hono, spec: RouteSpec): void {
  app.on(spec.methods, spec.path, (c) => {
    // Hono serves HEAD with the GET handler; a GET that writes must not run for a HEAD.
    if (c.req.method === "HEAD" && spec.writes) return methodNotAllowed(c, spec.methods);
    return spec.handler(c);
  });
  app.all(spec.path, (c) => methodNotAllowed(c, spec.methods));
}

/** Latency by route pattern and status, each series resolved once. */
class RouteDurations {
  #metrics: RaftkvMetrics;
  #observers = new Map<string, (seconds: number) => void>();

  constructor(metrics: RaftkvMetrics) {
    this.#metrics = metrics;
  }

  observe(route: string, status: number, seconds: number): void {
    const key = `${status} ${route}`;
    let observer = this.#observers.get(key);
    if (observer === undefined) {
      observer = this.#metrics.requestDuration.observer({ route, status: String(status) });
      this.#observers.set(key, observer);
    }
    observer(seconds);
  }
}

interface ServeDeps {
  node: RaftNodeApi;
  answer: AnswerHeaders;
  durations: RouteDurations;
  nowMs: () => number;
  logger: Logger;
  exit: (code: number) => void;
}

/** Names the applied index and the leader on an answer that does not name them yet. */
function nameIndexAndLeader(headers: Headers, answer: AnswerHeaders): void {
  if (!headers.has(RAFT_INDEX_HEADER)) {
    headers.set(RAFT_INDEX_HEADER, String(answer.appliedIndex()));
  }
  const leaderUrl = answer.leaderUrl();
  if (!headers.has(RAFT_LEADER_HEADER) && leaderUrl !== undefined) {
    headers.set(RAFT_LEADER_HEADER, leaderUrl);
  }
}

/**
 * Middleware for the routes Hono dispatches (all but the client routes): names the applied
 * index and the leader on answers, and records the latency by route pattern (never the raw
 * path: bounded label values).
 */
function observe(deps: ServeDeps): MiddlewareHandler {
  const { nowMs } = deps;
  return async (c, next) => {
    const startMs = nowMs();
    await next();
    const route = routePath(c);
    if (!route.startsWith("/raft")) nameIndexAndLeader(c.res.headers, deps.answer);
    const label = route === "/*" || route === "*" ? "unmatched" : route;
    deps.durations.observe(label, c.res.status, (nowMs() - startMs) / 1000);
  };
}

/**
 * Serves one client request from start to end: method check, handler, error answer, the
 * X-Raft-* headers and the latency metric, all without a framework context per request.
 */
async function serveClient(
  spec: ClientRouteSpec,
  request: Request,
  deps: ServeDeps,
): Promise<Response> {
  const startMs = deps.nowMs();
  const exchange = new Exchange(request, deps.answer);
  const method = exchange.method;
  // HEAD runs a GET that only reads, then loses its body (as Hono does for its routes).
  const served = spec.methods.includes(method) ||
    (method === "HEAD" && !spec.writes && spec.methods.includes("GET"));
  let response: Response;
  if (!served) {
    response = exchange.json(
      { error: "method not allowed", method, allowed: spec.methods },
      405,
      { Allow: spec.methods.join(", ") },
    );
  } else {
    try {
      response = await spec.handler(exchange);
    } catch (error) {
      const reply = errorAnswer(error as Error, { path: exchange.path(), ...deps });
      response = exchange.json(reply.body, reply.status, reply.headers);
    }
    // A relayed answer was built by the leader's reply, not by the exchange.
    if (!exchange.built(response)) nameIndexAndLeader(response.headers, deps.answer);
  }
  deps.durations.observe(spec.path, response.status, (deps.nowMs() - startMs) / 1000);
  return method === "HEAD" ? new Response(null, response) : response;
}

function errorAnswer(
  error: Error,
  context: { path: string; logger: Logger; exit: (code: number) => void },
): { status: number; body: Record<string, unknown>; headers: Record<string, string> } {
  const { logger } = context;
  if (error instanceof AssertionError) {
    // An invariant of our own is broken: serving on would risk corrupt state (STYLE C2.5).
    logger.error("invariant violated", { error: error.message, stack: error.stack });
    context.exit(ASSERTION_EXIT_CODE);
    return { status: 500, body: { error: "internal error" }, headers: {} };
  }
  const reply = errorReply(error);
  if (reply.unexpected) {
    logger.error("request failed", {
      path: context.path,
      error: String(error),
      stack: error.stack,
    });
  }
  return reply;
}

export function createApp(deps: AppDeps): Hono {
  const { node, logger } = deps;
  const nowMs = deps.nowMs ?? (() => performance.now());
  const exit = deps.exit ?? ((code: number) => Deno.exit(code));
  const metrics = raftkvMetrics(deps.metrics);
  const fetcher: typeof fetch = deps.fetch ?? ((input, init) => fetch(input, init));
  const forwarder = new Forwarder({ node, fetch: fetcher, logger, forwards: metrics.forwards });
  const service = new KvService({
    node,
    stateMachine: deps.stateMachine,
    proposals: metrics.proposals,
  });
  const serveDeps: ServeDeps = {
    node,
    answer: { appliedIndex: () => node.appliedIndex(), leaderUrl: () => node.leader()?.url },
    durations: new RouteDurations(metrics),
    nowMs,
    logger,
    exit,
  };
  const app = new Hono();

  const routeDeps = { forwarder, requestTimeoutMs: deps.requestTimeoutMs, nowMs };
  const clientSpecs = clientRoutes({ ...routeDeps, service });
  // Before the middleware: serveClient records its own metrics and headers.
  for (const spec of clientSpecs) {
    app.all(spec.path, (c) => serveClient(spec, c.req.raw, serveDeps));
  }
  app.use("*", observe(serveDeps));
  const opsDeps = {
    ...routeDeps,
    node,
    stateMachine: deps.stateMachine,
    fetch: fetcher,
    registry: deps.metrics,
    metrics,
    clusterId: deps.clusterId,
    collectMetrics: deps.collectMetrics,
  };
  for (const spec of opsRoutes(opsDeps)) register(app, spec);
  for (const spec of uiRoutes(opsDeps)) register(app, spec);
  if (deps.raftRoutes !== undefined) app.route("/raft", deps.raftRoutes);

  app.notFound((c) => {
    return c.json({ error: "not found", path: c.req.path.slice(0, PATH_ECHO_CHARS_MAX) }, 404);
  });

  app.onError((error, c) => {
    const reply = errorAnswer(error, { path: c.req.path, logger, exit });
    return c.json(reply.body, reply.status as ContentfulStatusCode, reply.headers);
  });
  fastLane(app, { specs: clientSpecs, raftMessages: deps.raftMessages }, serveDeps);
  return app;
}

/**
 * The client routes and POST /raft/messages are the hot path: a request for one of them goes
 * straight to its handler, before Hono's router builds a context (Hono would call the same
 * function for that path).
 */
function fastLane(
  app: Hono,
  lanes: { specs: ClientRouteSpec[]; raftMessages?: (request: Request) => Promise<Response> },
  deps: ServeDeps,
): void {
  const { specs, raftMessages } = lanes;
  const exact = new Map(specs.filter((spec) => !spec.path.includes(":")).map((s) => [s.path, s]));
  const kv = specs.find((spec) => spec.path.startsWith("/kv/"));
  const honoFetch = app.fetch;
  app.fetch = (request, ...rest) => {
    const path = pathOf(request.url);
    if (path === RAFT_MESSAGES_PATH && raftMessages !== undefined) {
      return servePeer(raftMessages, request, deps);
    }
    const spec = exact.get(path) ?? (kv !== undefined && path.startsWith("/kv/") ? kv : undefined);
    return spec === undefined ? honoFetch(request, ...rest) : serveClient(spec, request, deps);
  };
}

const RAFT_MESSAGES_PATH = "/raft/messages";

async function servePeer(
  handler: (request: Request) => Promise<Response>,
  request: Request,
  deps: ServeDeps,
): Promise<Response> {
  const startMs = deps.nowMs();
  let response: Response;
  try {
    response = await handler(request);
  } catch (error) {
    // Only our own bugs get here (an assertion: errorAnswer stops the node).
    const reply = errorAnswer(error as Error, { path: RAFT_MESSAGES_PATH, ...deps });
    response = Response.json(reply.body, { status: reply.status, headers: reply.headers });
  }
  deps.durations.observe(RAFT_MESSAGES_PATH, response.status, (deps.nowMs() - startMs) / 1000);
  return response;
}
