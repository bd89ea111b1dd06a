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
import { clientRoutes, RAFT_INDEX_HEADER, type RouteSpec } from "./client_routes.ts";
import { errorReply } from "./errors.ts";
import { Forwarder } from "./forward.ts";
import { KvService } from "./kv_service.ts";
import { type Metrics, type RaftkvMetrics, raftkvMetrics } from "./metrics.ts";
import { opsRoutes } from "./ops_routes.ts";
import { uiRoutes } from "./ui_routes.ts";

export const RAFT_LEADER_HEADER = "X-Raft-Leader";
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

/**
 * Middleware for every request: names the applied index and the leader on client answers, and
 * records the latency by route pattern (never the raw path: bounded label values).
 */
function observe(
  deps: { node: RaftNodeApi; metrics: RaftkvMetrics; nowMs: () => number },
): MiddlewareHandler {
  const { node, nowMs } = deps;
  return async (c, next) => {
    const startMs = nowMs();
    await next();
    const route = routePath(c);
    if (!route.startsWith("/raft")) {
      const headers = c.res.headers;
      if (!headers.has(RAFT_INDEX_HEADER)) {
        headers.set(RAFT_INDEX_HEADER, String(node.appliedIndex()));
      }
      const leaderUrl = node.leader()?.url;
      if (!headers.has(RAFT_LEADER_HEADER) && leaderUrl !== undefined) {
        headers.set(RAFT_LEADER_HEADER, leaderUrl);
      }
    }
    const label = route === "/*" || route === "*" ? "unmatched" : route;
    const seconds = (nowMs() - startMs) / 1000;
    deps.metrics.requestDuration.observe({ route: label, status: String(c.res.status) }, seconds);
  };
}

function answerError(
  c: Context,
  context: { error: Error; logger: Logger; exit: (code: number) => void },
): Response {
  const { error, logger } = context;
  if (error instanceof AssertionError) {
    // An invariant of our own is broken: serving on would risk corrupt state (STYLE C2.5).
    logger.error("invariant violated", { error: error.message, stack: error.stack });
    context.exit(ASSERTION_EXIT_CODE);
    return c.json({ error: "internal error" }, 500);
  }
  const reply = errorReply(error);
  if (reply.unexpected) {
    logger.error("request failed", { path: c.req.path, error: String(error), stack: error.stack });
  }
  return c.json(reply.body, reply.status as ContentfulStatusCode, reply.headers);
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
  const app = new Hono();

  app.use("*", observe({ node, metrics, nowMs }));

  const routeDeps = { forwarder, requestTimeoutMs: deps.requestTimeoutMs, nowMs };
  for (const spec of clientRoutes({ ...routeDeps, service })) register(app, spec);
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

  app.onError((error, c) => answerError(c, { error, logger, exit }));
  return app;
}
