/**
 * Metrics of the Raft node, the peer transport and the storage, read from their counters at
 * each scrape (plus the storage commit latency, observed as it happens).
 */
import type { NodeCounters } from "../raft/mod.ts";
import type { Metrics } from "./metrics.ts";
import type { PeerStats } from "./peer_transport.ts";

/** Storage commit latency: Deno KV commits take from well under 1 ms to seconds on a bad disk. */
const COMMIT_BUCKETS_SECONDS = [
  0.0005,
  0.001,
  0.002,
  0.004,
  0.008,
  0.016,
  0.032,
  0.064,
  0.128,
  0.256,
  0.512,
  1.024,
  2.048,
];
const READY_ENTRIES_BUCKETS = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 400];

export interface NodeMetricsSources {
  counters(): Readonly<NodeCounters>;
  peerStats(): PeerStats[];
  /** Bytes of the Deno KV database on disk, as last sampled. */
  dbSizeBytes(): number;
}

export interface NodeMetrics {
  /** Brings the scraped values up to date. */
  collect(): void;
  /** One storage commit of `entries` entries took `durationMs`. */
  observePersist(durationMs: number, entries: number): void;
}

export function nodeMetrics(registry: Metrics, sources: NodeMetricsSources): NodeMetrics {
  const m = {
    elections: registry.counter(
      "raftkv_elections_started_total",
      "Elections this node started as a candidate",
    ),
    leaderChanges: registry.counter(
      "raftkv_leader_changes_total",
      "Times this node saw a new leader",
    ),
    proposals: registry.counter(
      "raftkv_raft_proposals_total",
      "Entries this node proposed as leader, by outcome (committed or failed)",
    ),
    turns: registry.counter("raftkv_ready_turns_total", "Turns of the node's loop (Readies)"),
    appendsReplaced: registry.counter(
      "raftkv_empty_appends_replaced_total",
      "AppendEntries without entries (commit notices) that a later one to the same peer replaced",
    ),
    snapshots: registry.counter("raftkv_snapshots_total", "Snapshots taken or installed, by kind"),
    snapshotBytes: registry.gauge("raftkv_snapshot_bytes", "Size of the latest snapshot"),
    snapshotSeconds: registry.gauge(
      "raftkv_snapshot_duration_seconds",
      "Time the latest snapshot taken here needed to be written",
    ),
    commitSeconds: registry.histogram(
      "raftkv_storage_commit_duration_seconds",
      "Deno KV commit latency of one Ready (entries and hard state)",
      COMMIT_BUCKETS_SECONDS,
    ),
    readyEntries: registry.histogram(
      "raftkv_ready_entries",
      "Entries persisted per Ready: the group-commit batch size",
      READY_ENTRIES_BUCKETS,
    ),
    dbBytes: registry.gauge("raftkv_storage_bytes", "Deno KV database size on disk"),
    peerSent: registry.counter("raftkv_peer_messages_sent_total", "Raft messages sent, by peer"),
    peerDropped: registry.counter(
      "raftkv_peer_messages_dropped_total",
      "Raft messages dropped (queue full or peer unreachable), by peer",
    ),
    peerUp: registry.gauge("raftkv_peer_reachable", "1 when the last request to a peer succeeded"),
    peerQueued: registry.gauge("raftkv_peer_queued_messages", "Messages waiting for a peer"),
    memory: registry.gauge(
      "raftkv_process_memory_bytes",
      "Process memory by kind: rss, heap_used, heap_total, external (Deno.memoryUsage)",
    ),
  };
  return {
    collect() {
      const counters = sources.counters();
      m.elections.setTotal({}, counters.electionsStarted);
      m.leaderChanges.setTotal({}, counters.leaderChanges);
      m.proposals.setTotal({ result: "committed" }, counters.proposalsCommitted);
      m.proposals.setTotal({ result: "failed" }, counters.proposalsFailed);
      m.turns.setTotal({}, counters.readyTurns);
      m.appendsReplaced.setTotal({}, counters.emptyAppendsReplaced);
      m.snapshots.setTotal({ kind: "taken" }, counters.snapshotsTaken);
      m.snapshots.setTotal({ kind: "installed" }, counters.snapshotsInstalled);
      m.snapshotBytes.set({}, counters.lastSnapshotBytes);
      m.snapshotSeconds.set({}, counters.lastSnapshotMs / 1000);
      m.dbBytes.set({}, sources.dbSizeBytes());
      const memory = Deno.memoryUsage();
      m.memory.set({ kind: "rss" }, memory.rss);
      m.memory.set({ kind: "heap_used" }, memory.heapUsed);
      m.memory.set({ kind: "heap_total" }, memory.heapTotal);
      m.memory.set({ kind: "external" }, memory.external);
      m.peerUp.reset();
      m.peerQueued.reset();
      for (const peer of sources.peerStats()) {
        m.peerSent.setTotal({ peer: peer.peer }, peer.sentMessages);
        m.peerDropped.setTotal({ peer: peer.peer }, peer.droppedMessages);
        m.peerUp.set({ peer: peer.peer }, peer.unreachable ? 0 : 1);
        m.peerQueued.set({ peer: peer.peer }, peer.queuedMessages);
      }
    },
    observePersist(durationMs, entries) {
      m.commitSeconds.observe({}, durationMs / 1000);
      m.readyEntries.observe({}, entries);
    },
  };
}
