/**
 * The dashboard at /ui: a static page (http/ui/) and GET /ui/cluster.json, which this node
 * assembles from its own status and from each member's /status. The browser polls one origin
 * only, so no node needs CORS, and a member that does not answer in time shows as unreachable
 * instead of stalling the page.
 */
import type { Context } from "hono";
import type { KvStateMachine } from "../kv/mod.ts";
import type { NodeStatus, RaftNodeApi, Role } from "../raft/mod.ts";
import type { RouteSpec } from "./client_routes.ts";
import { APP_JS } from "./ui/app_js.ts";
import { INDEX_HTML } from "./ui/index_html.ts";
import { STYLE_CSS } from "./ui/style_css.ts";

/** How long the dashboard waits for one member's /status: less than the page's poll interval. */
export const MEMBER_STATUS_TIMEOUT_MS = 800;
/** A view younger than this is shared, so that many open pages cost one fan-out, not many. */
export const CLUSTER_VIEW_REUSE_MS = 250;
/** Members beyond this are listed without being asked for their status. */
export const MEMBERS_PROBED_MAX = 32;
/** A member's /status longer than this is refused rather than parsed. */
export const MEMBER_STATUS_BYTES_MAX = 1_048_576;
const ERROR_CHARS_MAX = 160;
const ROLES: readonly string[] = ["follower", "preCandidate", "candidate", "leader"];

/** The page is self-contained: nothing may load from another origin (no internet on a node). */
const PAGE_HEADERS = {
  "Cache-Control": "no-cache",
  "X-Content-Type-Options": "nosniff",
  "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; base-uri 'none'; " +
    "form-action 'none'; frame-ancestors 'none'",
};

export interface UiRouteDeps {
  node: RaftNodeApi;
  stateMachine: KvStateMachine;
  /** Reaches the other members' /status. */
  fetch: typeof fetch;
  clusterId: string;
  nowMs: () => number;
}

/** What a member says of itself in its /status (validated: it came over the network). */
export interface MemberReport {
  role: Role;
  term: number;
  leader: string | null;
  commitIndex: number;
  appliedIndex: number;
  lastLogIndex: number;
  snapshotIndex: number;
  /** Keys in its state machine, when it says. */
  keys: number | null;
}

/** The leader's record of one member's replication. */
interface Progress {
  matchIndex: number;
  lastContactMs: number | null;
}

export interface MemberView {
  id: string;
  url: string;
  voter: boolean;
  /** This is the node that served the view. */
  self: boolean;
  reachable: boolean;
  /** Why the member's status could not be read; null when reachable. */
  error: string | null;
  /** How long its /status took to answer (0 for this node). */
  responseMs: number | null;
  report: MemberReport | null;
  /** Leader's view: the highest index known to be stored on this member. */
  matchIndex: number | null;
  /** Leader's view: its lastLogIndex minus the member's matchIndex. */
  lagEntries: number | null;
  /** Leader's view: ms since the member last answered it (null for the leader itself). */
  lastContactMs: number | null;
}

export interface ClusterView {
  clusterId: string;
  servedBy: string;
  /** The reachable member that reports itself leader with the highest term; null: none. */
  leaderId: string | null;
  members: MemberView[];
}

interface Probe {
  reachable: boolean;
  error: string | null;
  responseMs: number | null;
  report: MemberReport | null;
  progress: Map<string, Progress>;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function count(record: Record<string, unknown>, name: string): number {
  const value = record[name];
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new TypeError(`Invalid status: field "${name}" is not a count`);
  }
  return value;
}

/** The gateway for a member's /status: everything the dashboard uses is checked here. */
export function parseMemberStatus(value: unknown): Omit<Probe, "responseMs" | "reachable"> {
  if (!isRecord(value)) throw new TypeError("Invalid status: not a JSON object");
  const role = value.role;
  if (typeof role !== "string" || !ROLES.includes(role)) {
    throw new TypeError(`Invalid status: unknown role "${String(role).slice(0, 32)}"`);
  }
  const leader = value.leader;
  if (leader !== null && typeof leader !== "string") {
    throw new TypeError('Invalid status: field "leader" is not a string or null');
  }
  const report: MemberReport = {
    role: role as Role,
    term: count(value, "term"),
    leader,
    commitIndex: count(value, "commitIndex"),
    appliedIndex: count(value, "appliedIndex"),
    lastLogIndex: count(value, "lastLogIndex"),
    snapshotIndex: count(value, "snapshotIndex"),
    keys: value.keys === undefined ? null : count(value, "keys"),
  };
  const progress = new Map<string, Progress>();
  const members = Array.isArray(value.members) ? value.members : [];
  for (const member of members.slice(0, MEMBERS_PROBED_MAX * 4)) {
    if (!isRecord(member) || typeof member.id !== "string" || member.matchIndex === undefined) {
      continue;
    }
    const lastContactMs = member.lastContactMs === undefined
      ? null
      : count(member, "lastContactMs");
    progress.set(member.id, { matchIndex: count(member, "matchIndex"), lastContactMs });
  }
  return { error: null, report, progress };
}

/** One short line a person can read: fetch's messages carry a whole chain of causes. */
function describeFailure(error: unknown, timeoutMs: number): string {
  if (error instanceof DOMException && error.name === "TimeoutError") {
    return `no answer within ${timeoutMs} ms`;
  }
  // Deno's fetch says only "fetch failed"; the reason is in the cause.
  const cause = error instanceof Error && error.cause instanceof Error ? error.cause : error;
  const message = cause instanceof Error ? cause.message : String(cause);
  if (/connection refused/i.test(message)) return "connection refused";
  if (/connection reset/i.test(message)) return "connection reset";
  if (/dns error|failed to lookup/i.test(message)) return "host not found";
  return message.slice(0, ERROR_CHARS_MAX);
}

function probeFailed(error: string): Probe {
  return { reachable: false, error, responseMs: null, report: null, progress: new Map() };
}

async function probeMember(url: string, deps: UiRouteDeps): Promise<Probe> {
  const startMs = deps.nowMs();
  let text: string;
  try {
    const signal = AbortSignal.timeout(MEMBER_STATUS_TIMEOUT_MS);
    const response = await deps.fetch(`${url}/status`, { signal });
    const declaredBytes = Number(response.headers.get("content-length") ?? 0);
    if (declaredBytes > MEMBER_STATUS_BYTES_MAX) {
      await response.body?.cancel();
      return probeFailed("/status answer is too large");
    }
    text = await response.text();
    if (!response.ok) return probeFailed(`/status answered ${response.status}`);
  } catch (error) {
    return probeFailed(describeFailure(error, MEMBER_STATUS_TIMEOUT_MS));
  }
  const responseMs = Math.round(deps.nowMs() - startMs);
  if (text.length > MEMBER_STATUS_BYTES_MAX) return probeFailed("/status answer is too large");
  try {
    return { ...parseMemberStatus(JSON.parse(text)), reachable: true, responseMs };
  } catch (error) {
    return probeFailed((error as Error).message.slice(0, ERROR_CHARS_MAX));
  }
}

/** This node's own status needs no HTTP round trip, nor parsing: it is typed already. */
function probeSelf(status: NodeStatus, deps: UiRouteDeps): Probe {
  const progress = new Map<string, Progress>();
  for (const member of status.members) {
    if (member.matchIndex === undefined) continue;
    progress.set(member.id, {
      matchIndex: member.matchIndex,
      lastContactMs: member.lastContactMs ?? null,
    });
  }
  const report: MemberReport = {
    role: status.role,
    term: status.term,
    leader: status.leader,
    commitIndex: status.commitIndex,
    appliedIndex: status.appliedIndex,
    lastLogIndex: status.lastLogIndex,
    snapshotIndex: status.snapshotIndex,
    keys: deps.stateMachine.keyCount(),
  };
  return { reachable: true, error: null, responseMs: 0, report, progress };
}

/** The leader is the reachable member that says so with the highest term (an old, cut-off
 * leader may still believe it leads in an earlier term). */
function findLeader(ids: string[], probes: Probe[]): number {
  let found = -1;
  for (let i = 0; i < ids.length; i++) {
    const report = probes[i].report;
    if (report?.role !== "leader") continue;
    if (found < 0 || report.term > probes[found].report!.term) found = i;
  }
  return found;
}

export async function assembleClusterView(deps: UiRouteDeps): Promise<ClusterView> {
  const status = deps.node.status();
  const members = [...status.members].sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  const probes = await Promise.all(members.map((member, i) => {
    if (member.id === status.id) return probeSelf(status, deps);
    if (i >= MEMBERS_PROBED_MAX) return probeFailed("not probed: too many members");
    return probeMember(member.url, deps);
  }));
  const leaderAt = findLeader(members.map((member) => member.id), probes);
  const leaderProbe = leaderAt < 0 ? undefined : probes[leaderAt];
  const leaderLastIndex = leaderProbe?.report?.lastLogIndex ?? 0;
  const views = members.map((member, i): MemberView => {
    const probe = probes[i];
    const isLeader = i === leaderAt;
    const progress = leaderProbe?.progress.get(member.id);
    const matchIndex = isLeader ? leaderLastIndex : progress?.matchIndex ?? null;
    return {
      id: member.id,
      url: member.url,
      voter: member.voter,
      self: member.id === status.id,
      reachable: probe.reachable,
      error: probe.error,
      responseMs: probe.responseMs,
      report: probe.report,
      matchIndex,
      lagEntries: matchIndex === null ? null : Math.max(0, leaderLastIndex - matchIndex),
      lastContactMs: isLeader ? null : progress?.lastContactMs ?? null,
    };
  });
  return {
    clusterId: deps.clusterId,
    servedBy: status.id,
    leaderId: leaderAt < 0 ? null : members[leaderAt].id,
    members: views,
  };
}

/** Shares one fan-out among concurrent pollers and among polls closer than the reuse window. */
function sharedClusterView(deps: UiRouteDeps): () => Promise<ClusterView> {
  let pending: Promise<ClusterView> | undefined;
  let latest: { atMs: number; view: ClusterView } | undefined;
  return () => {
    if (pending !== undefined) return pending;
    if (latest !== undefined && deps.nowMs() - latest.atMs < CLUSTER_VIEW_REUSE_MS) {
      return Promise.resolve(latest.view);
    }
    pending = assembleClusterView(deps).then((view) => {
      latest = { atMs: deps.nowMs(), view };
      return view;
    }).finally(() => {
      pending = undefined;
    });
    return pending;
  };
}

function text(body: string, contentType: string): (c: Context) => Response {
  return (c) => c.body(body, 200, { ...PAGE_HEADERS, "Content-Type": contentType });
}

export function uiRoutes(deps: UiRouteDeps): RouteSpec[] {
  const clusterView = sharedClusterView(deps);
  const page = text(INDEX_HTML, "text/html; charset=utf-8");
  const get = (path: string, handler: RouteSpec["handler"]): RouteSpec => ({
    path,
    methods: ["GET"],
    writes: false,
    handler,
  });
  return [
    get("/ui", page),
    get("/ui/", page),
    get("/ui/app.js", text(APP_JS, "text/javascript; charset=utf-8")),
    get("/ui/style.css", text(STYLE_CSS, "text/css; charset=utf-8")),
    get("/ui/cluster.json", async (c) => {
      return c.json(await clusterView(), 200, { "Cache-Control": "no-store" });
    }),
  ];
}
