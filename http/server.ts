/**
 * Composition root: opens the data dir, wires Deno KV storage, the KV state machine, the Raft
 * node, the peer transport and the Hono app, and serves them on one port.
 */
import {
  bootstrapState,
  type Clock,
  type Member,
  type Message,
  type NodeCounters,
  type NodeId,
  RaftNode,
  type Transport,
  validateRaftConfig,
  XorShiftPrng,
} from "../raft/mod.ts";
import {
  checkIdentity,
  IdentityMismatchError,
  KvStateMachine,
  type NodeStore,
  openNodeStore,
} from "../kv/mod.ts";
import { createApp } from "./app.ts";
import { Metrics } from "./metrics.ts";
import { nodeMetrics } from "./node_metrics.ts";
import { PeerTransport } from "./peer_transport.ts";
import { createRaftRoutes, raftMessagesHandler, stepMessages } from "./raft_routes.ts";
import { consoleLogger } from "./logger.ts";
import { clusterIdOf, parsePeers, selfIdOf, UsageError } from "./peers.ts";
import { joinCluster, lookUpClusterId } from "./join.ts";
import { releaseSnapshotMemory } from "./memory_release.ts";

export interface ServeOptions {
  /** Listen port; 0 picks a free one. */
  port: number;
  host: string;
  dir: string;
  /** URL peers and forwarded clients use to reach this node; default http://<host>:<port>. */
  advertise?: string;
  /** Initial members as "URL,URL" or "ID=URL,ID=URL"; may include this node. */
  peers?: string;
  /** URL of any running member to join through. */
  join?: string;
  /** This node's id; default derived from the advertise URL. */
  id?: string;
  electionTimeoutMs: number;
  heartbeatIntervalMs: number;
  requestTimeoutMs: number;
  snapshotEntries: number;
  /** Take a snapshot also once this many bytes of commands were applied since the last one. */
  snapshotBytes?: number;
  logLevel: "debug" | "info" | "warn" | "error";
  logFormat: "text" | "json";
}

export interface RunningServer {
  id: string;
  /** The port actually bound. */
  port: number;
  url: string;
  /** Resolves when the server has stopped (after stop() or a fatal error). */
  finished: Promise<void>;
  stop(): Promise<void>;
}

const SNAPSHOT_BYTES_DEFAULT = 64 * 1024 * 1024;
/** How often the database size is read for /metrics. */
const DB_SIZE_SAMPLE_MS = 5_000;

/** A Clock on the process's timers; `now` is monotonic. */
export const timerClock: Clock = {
  now: () => performance.now(),
  every(tickMs, onTick) {
    const timer = setInterval(onTick, tickMs);
    return () => clearInterval(timer);
  },
  after(delayMs, callback) {
    const timer = setTimeout(callback, delayMs);
    return () => clearTimeout(timer);
  },
};

/**
 * The core counts time in ticks: a tick is a tenth of a heartbeat interval. Election timeouts are
 * drawn in whole ticks, so the tick sets how finely two followers' timeouts differ: with a tick
 * of half a heartbeat (50 ms) the jitter had 10 values, and one failover in ten or so had both
 * followers campaign in the same tick, split the vote and wait a whole timeout more.
 */
export function ticksFor(
  options: Pick<ServeOptions, "electionTimeoutMs" | "heartbeatIntervalMs">,
): {
  tickMs: number;
  heartbeatIntervalTicks: number;
  electionTimeoutTicks: number;
} {
  const tickMs = Math.max(1, Math.round(options.heartbeatIntervalMs / 10));
  return {
    tickMs,
    heartbeatIntervalTicks: Math.max(1, Math.round(options.heartbeatIntervalMs / tickMs)),
    electionTimeoutTicks: Math.max(5, Math.round(options.electionTimeoutMs / tickMs)),
  };
}

export async function serve(options: ServeOptions): Promise<RunningServer> {
  const logger = consoleLogger({ level: options.logLevel, format: options.logFormat });
  let handler: (request: Request) => Response | Promise<Response> = () =>
    Response.json({ error: "no leader", reason: "starting" }, {
      status: 503,
      headers: { "Retry-After": "1" },
    });
  const abort = new AbortController();
  // Listen first: with --port 0 the advertised URL, and so the id, depend on the port bound.
  const server = Deno.serve(
    { hostname: options.host, port: options.port, signal: abort.signal, onListen: () => {} },
    (request) => handler(request),
  );
  const port = server.addr.port;
  let store: NodeStore | undefined;
  try {
    const advertise = advertiseUrl(options, port);
    const id = selfIdOf(options.id, options.peers ?? "", advertise);
    const peers = parsePeers(options.peers ?? "", { selfId: id, selfUrl: advertise });
    if (options.join !== undefined && options.peers !== undefined) {
      throw new UsageError("Cannot use --join with --peers: a joining node learns the members");
    }
    store = await openNodeStore(options.dir);
    const clusterId = await prepareDir(store, { id, advertise, peers, join: options.join, logger });
    const ticks = ticksFor(options);
    const stateMachine = new KvStateMachine();
    let reportUnreachable: (peer: NodeId) => void = () => {};
    let stepReplies: (messages: Message[]) => void = () => {};
    const transport = new PeerTransport({
      selfId: id,
      selfUrl: advertise,
      clusterId,
      logger,
      onUnreachable: (peer) => reportUnreachable(peer),
      onMessages: (messages) => stepReplies(messages),
    });
    let fatal: (error: Error) => void = () => {};
    const registry = new Metrics();
    let dbSizeBytes = await store.dbSizeBytes().catch(() => 0);
    let counters: () => NodeCounters = () => ({} as NodeCounters);
    const observed = nodeMetrics(registry, {
      counters: () => counters(),
      peerStats: () => transport.stats(),
      dbSizeBytes: () => dbSizeBytes,
    });
    const node = await RaftNode.start({
      config: validateRaftConfig({
        id,
        prng: new XorShiftPrng(seedFrom(id)),
        logger,
        electionTimeoutTicks: ticks.electionTimeoutTicks,
        // [T, 1.5T): failover in about T, with room enough that split votes stay rare.
        electionJitterTicks: Math.max(1, Math.round(ticks.electionTimeoutTicks / 2)),
        heartbeatIntervalTicks: ticks.heartbeatIntervalTicks,
      }),
      storage: store.storage,
      transport: withUrlOverrides(transport, new Map(peers.map((peer) => [peer.id, peer.url]))),
      stateMachine,
      clock: timerClock,
      tickMs: ticks.tickMs,
      snapshotEntries: options.snapshotEntries,
      snapshotBytes: options.snapshotBytes ?? SNAPSHOT_BYTES_DEFAULT,
      onFatal: (error) => fatal(error),
      onPersisted: (durationMs, entries) => observed.observePersist(durationMs, entries),
    });
    counters = () => node.counters();
    const stopReleasing = releaseSnapshotMemory({
      counters,
      logger,
      isLeader: () => node.status().role === "leader",
    });
    reportUnreachable = (peer) => node.reportUnreachable(peer);
    const raftDeps = {
      node,
      selfId: id,
      clusterId,
      logger,
      learnPeer: (peer: NodeId, url: string) => transport.learnPeer(peer, url),
      replyTo: (peer: NodeId, signal: AbortSignal) => transport.replyTo(peer, { signal }),
    };
    stepReplies = (messages) => stepMessages(raftDeps, messages);
    const app = createApp({
      node,
      stateMachine,
      logger,
      metrics: registry,
      collectMetrics: () => observed.collect(),
      requestTimeoutMs: options.requestTimeoutMs,
      raftRoutes: createRaftRoutes(raftDeps),
      raftMessages: raftMessagesHandler(raftDeps),
      clusterId,
    });
    handler = (request) => app.fetch(request);
    const openStoreForSize = store;
    const sizeTimer = setInterval(() => {
      openStoreForSize.dbSizeBytes().then((bytes) => dbSizeBytes = bytes, () => {});
    }, DB_SIZE_SAMPLE_MS);
    const openStore = store;
    let stopping: Promise<void> | undefined;
    const stop = (): Promise<void> => {
      stopping ??= (async () => {
        clearInterval(sizeTimer);
        stopReleasing();
        abort.abort();
        await server.finished;
        await node.stop();
        await transport.close();
        await openStore.close();
        logger.info("stopped", { id });
      })();
      return stopping;
    };
    const finished = new Promise<void>((resolve, reject) => {
      fatal = (error) => stop().then(() => reject(error), reject);
      server.finished.then(() => stopping?.then(resolve, reject));
    });
    finished.catch(() => {});
    if (options.join !== undefined) {
      joinCluster({ joinUrl: options.join, selfUrl: advertise, node, logger });
    }
    logger.info("serving", { id, url: advertise, clusterId, dir: options.dir });
    return { id, port, url: advertise, finished, stop };
  } catch (error) {
    abort.abort();
    await server.finished;
    await store?.close();
    throw error;
  }
}

/** Peers listed in --peers are reached through the URL given there (a proxy, a NAT), whatever
 * URL the membership records for them. */
function withUrlOverrides(transport: Transport, overrides: ReadonlyMap<NodeId, string>): Transport {
  return {
    send: (messages) => transport.send(messages),
    setPeers: (peers) => {
      const resolved = new Map(peers);
      for (const [id, url] of overrides) if (resolved.has(id)) resolved.set(id, url);
      transport.setPeers(resolved);
    },
    close: () => transport.close(),
  };
}

function advertiseUrl(options: ServeOptions, port: number): string {
  if (options.advertise !== undefined) return options.advertise.replace(/\/+$/, "");
  const host = options.host === "0.0.0.0" || options.host === "::" ? "127.0.0.1" : options.host;
  return `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/**
 * Checks that the dir belongs to this node, or makes it so: a fresh dir either bootstraps the
 * initial members' log or, with --join, waits to receive the log from the cluster.
 */
async function prepareDir(
  store: NodeStore,
  context: {
    id: string;
    advertise: string;
    peers: Member[];
    join: string | undefined;
    logger: ReturnType<typeof consoleLogger>;
  },
): Promise<string> {
  const stored = await store.readIdentity();
  const clusterId = clusterIdOf(context.peers);
  if (stored !== undefined) {
    checkIdentity(stored, { nodeId: context.id });
    if (context.join === undefined && stored.clusterId !== clusterId) {
      context.logger.warn(
        "--peers differs from the members this dir was created with; using the stored state",
        {
          storedClusterId: stored.clusterId,
          peersClusterId: clusterId,
        },
      );
    }
    return stored.clusterId;
  }
  if (context.join !== undefined) {
    const joinedClusterId = await lookUpClusterId(context.join);
    await store.writeIdentity({ nodeId: context.id, clusterId: joinedClusterId });
    return joinedClusterId;
  }
  const persisted = await store.storage.load();
  if (persisted.entries.length > 0 || persisted.snapshot !== undefined) {
    throw new IdentityMismatchError(
      "Cannot use this data dir: it holds a log but no node identity",
    );
  }
  const { entries, hardState } = bootstrapState(context.peers);
  await store.storage.append(entries, hardState);
  await store.writeIdentity({ nodeId: context.id, clusterId });
  return clusterId;
}

function seedFrom(text: string): number {
  let hash = 2166136261;
  for (const char of text) hash = Math.imul(hash ^ char.charCodeAt(0), 16777619);
  return (hash ^ Date.now()) | 0;
}
