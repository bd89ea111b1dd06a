/**
 * The operating API of API.md: /health, /ready, /status, /metrics and /cluster/*. Membership
 * and leadership changes run on the leader (a follower relays them, see forward.ts).
 */
import type { Context } from "hono";
import { type Member, NotLeaderError, type RaftNodeApi, type Role } from "../raft/mod.ts";
import type { KvStateMachine } from "../kv/mod.ts";
import { ApiError } from "./errors.ts";
import type { Forwarder } from "./forward.ts";
import { type Metrics, PROMETHEUS_CONTENT_TYPE, type RaftkvMetrics } from "./metrics.ts";
import type { RouteSpec } from "./client_routes.ts";
import { decodePercent, type Params, readClientRequest, utf8ByteLength } from "./params.ts";

/** How long adding a member waits for the new node's /status. */
export const MEMBER_PROBE_TIMEOUT_MS = 2_000;
const MEMBER_ID_BYTES_MAX = 256;
const ROLES: Role[] = ["follower", "preCandidate", "candidate", "leader"];

export interface OpsRouteDeps {
  node: RaftNodeApi;
  stateMachine: KvStateMachine;
  forwarder: Forwarder;
  /** Probes a new member's /status. */
  fetch: typeof fetch;
  requestTimeoutMs: number;
  nowMs: () => number;
  registry: Metrics;
  metrics: RaftkvMetrics;
  clusterId: string;
  /** Updates metrics kept outside the app (node, transport, storage) before a scrape. */
  collectMetrics?: () => void;
}

function publicMembers(node: RaftNodeApi): Member[] {
  return node.status().members.map(({ id, url, voter }) => ({ id, url, voter }));
}

/** Membership and leadership changes only make sense on the leader: relay them otherwise. */
function ensureLeader(node: RaftNodeApi): void {
  const leader = node.leader();
  if (leader === undefined || leader.id !== node.id) {
    throw new NotLeaderError(leader?.id ?? null, leader?.url);
  }
}

function stringParam(params: Params, name: string): string {
  const value = params.get(name);
  if (value === undefined || value === null || value === "") {
    throw new ApiError(400, `Missing parameter "${name}"`);
  }
  return value;
}

/** A member URL: absolute http(s), no credentials, query or fragment; no trailing slash. */
function memberUrl(params: Params): string {
  const text = stringParam(params, "url");
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ApiError(400, `Invalid parameter "url": "${text.slice(0, 256)}"`);
  }
  const ok = (url.protocol === "http:" || url.protocol === "https:") && url.username === "" &&
    url.password === "" && url.search === "" && url.hash === "";
  if (!ok) throw new ApiError(400, `Invalid parameter "url": "${text.slice(0, 256)}"`);
  return url.href.replace(/\/+$/, "");
}

function memberId(text: string): string {
  if (text === "" || utf8ByteLength(text) > MEMBER_ID_BYTES_MAX) {
    throw new ApiError(400, `Invalid member id "${text.slice(0, 64)}"`);
  }
  return text;
}

function ensureMember(node: RaftNodeApi, id: string): void {
  if (!node.status().members.some((member) => member.id === id)) {
    throw new ApiError(404, "member not found", { body: { id } });
  }
}

/** Asks a node for its id through its /status: how a new member is named before it joins. */
async function probeNodeId(
  url: string,
  options: { fetch: typeof fetch; timeoutMs: number },
): Promise<string> {
  let status: unknown;
  try {
    const signal = AbortSignal.timeout(options.timeoutMs);
    const response = await options.fetch(`${url}/status`, { signal });
    if (!response.ok) throw new Error(`status ${response.status}`);
    status = await response.json();
  } catch (error) {
    throw new ApiError(400, `Cannot reach the new member at "${url}": ${(error as Error).message}`);
  }
  const id = typeof status === "object" && status !== null && "id" in status
    ? status.id
    : undefined;
  if (typeof id !== "string" || id === "" || utf8ByteLength(id) > MEMBER_ID_BYTES_MAX) {
    throw new ApiError(400, `The node at "${url}" did not report a valid id in its /status`);
  }
  return id;
}

function updateGauges(deps: OpsRouteDeps): void {
  const status = deps.node.status();
  const m = deps.metrics;
  m.term.set({}, status.term);
  for (const role of ROLES) m.role.set({ role }, status.role === role ? 1 : 0);
  m.commitIndex.set({}, status.commitIndex);
  m.appliedIndex.set({}, status.appliedIndex);
  m.lastLogIndex.set({}, status.lastLogIndex);
  m.snapshotIndex.set({}, status.snapshotIndex);
  m.leaderKnown.set({}, status.leader === null ? 0 : 1);
  m.keys.set({}, deps.stateMachine.keyCount());
  const voters = status.members.filter((member) => member.voter).length;
  m.members.set({ kind: "voter" }, voters);
  m.members.set({ kind: "learner" }, status.members.length - voters);
  // Rebuilt at each scrape: peers come and go, and only a leader knows match indexes.
  m.peerMatchIndex.reset();
  m.peerLag.reset();
  for (const member of status.members) {
    if (member.id === status.id || member.matchIndex === undefined) continue;
    m.peerMatchIndex.set({ peer: member.id }, member.matchIndex);
    m.peerLag.set({ peer: member.id }, Math.max(0, status.lastLogIndex - member.matchIndex));
  }
}

function handleReady(c: Context, deps: OpsRouteDeps): Response {
  const status = deps.node.status();
  const ready = status.leader !== null && status.appliedIndex >= status.commitIndex;
  const reason = status.leader === null ? "no leader known" : "applying committed entries";
  return c.json({
    ok: ready,
    ...(ready ? {} : { error: "not ready", reason }),
    leader: status.leaderUrl,
    commitIndex: status.commitIndex,
    appliedIndex: status.appliedIndex,
  }, ready ? 200 : 503);
}

function handleStatus(c: Context, deps: OpsRouteDeps): Response {
  const keys = deps.stateMachine.keyCount();
  return c.json({ ...deps.node.status(), clusterId: deps.clusterId, keys });
}

function handleMetrics(c: Context, deps: OpsRouteDeps): Response {
  updateGauges(deps);
  deps.collectMetrics?.();
  return c.body(deps.registry.render(), 200, { "Content-Type": PROMETHEUS_CONTENT_TYPE });
}

async function handleAddMember(c: Context, deps: OpsRouteDeps): Promise<Response> {
  const { node } = deps;
  const request = await readClientRequest(c.req.raw, { ...deps, write: true });
  const url = memberUrl(request.params);
  return await deps.forwarder.onLeader(request, async (timeoutMs) => {
    ensureLeader(node);
    const members = node.status().members;
    const known = members.find((member) => member.url === url);
    // Adding the same URL twice is a retry: answer as the first time did.
    if (known !== undefined) {
      return c.json({ ok: true, id: known.id, members: publicMembers(node) });
    }
    const probeMs = Math.min(MEMBER_PROBE_TIMEOUT_MS, timeoutMs);
    const id = await probeNodeId(url, { fetch: deps.fetch, timeoutMs: probeMs });
    if (members.some((member) => member.id === id)) {
      throw new ApiError(409, `Member "${id}" already exists with another URL`, { body: { id } });
    }
    const remainingMs = Math.max(1, request.deadline.remainingMs());
    const change = { type: "addLearner" as const, id, url };
    const index = await node.changeMembership(change, { timeoutMs: remainingMs });
    return c.json({ ok: true, id, index, members: publicMembers(node) });
  });
}

async function handleRemoveMember(c: Context, deps: OpsRouteDeps): Promise<Response> {
  const { node } = deps;
  const request = await readClientRequest(c.req.raw, { ...deps, write: true });
  const path = new URL(c.req.url).pathname;
  const id = memberId(decodePercent(path.slice("/cluster/members/".length), "the member id"));
  return await deps.forwarder.onLeader(request, async (timeoutMs) => {
    ensureLeader(node);
    ensureMember(node, id);
    const index = await node.changeMembership({ type: "remove", id }, { timeoutMs });
    return c.json({ ok: true, index, members: publicMembers(node) });
  });
}

async function handleTransfer(c: Context, deps: OpsRouteDeps): Promise<Response> {
  const { node } = deps;
  const request = await readClientRequest(c.req.raw, { ...deps, write: true });
  const id = memberId(stringParam(request.params, "id"));
  return await deps.forwarder.onLeader(request, async (timeoutMs) => {
    ensureLeader(node);
    ensureMember(node, id);
    if (id !== node.id) await node.transferLeadership(id, { timeoutMs });
    return c.json({ ok: true, leader: id, members: publicMembers(node) });
  });
}

async function handleSnapshot(c: Context, deps: OpsRouteDeps): Promise<Response> {
  return c.json({ ok: true, index: await deps.node.takeSnapshot() });
}

export function opsRoutes(deps: OpsRouteDeps): RouteSpec[] {
  const get = (path: string, handler: (c: Context, deps: OpsRouteDeps) => Response) => ({
    path,
    methods: ["GET"],
    writes: false,
    handler: (c: Context) => handler(c, deps),
  });
  const change = (
    path: string,
    method: string,
    handler: (c: Context, deps: OpsRouteDeps) => Promise<Response>,
  ) => ({ path, methods: [method], writes: true, handler: (c: Context) => handler(c, deps) });
  return [
    get("/health", (c) => c.json({ ok: true })),
    get("/ready", handleReady),
    get("/status", handleStatus),
    get("/metrics", handleMetrics),
    change("/cluster/members", "POST", handleAddMember),
    change("/cluster/members/:id{.+}", "DELETE", handleRemoveMember),
    change("/cluster/leader", "POST", handleTransfer),
    change("/cluster/snapshot", "POST", handleSnapshot),
  ];
}
