import type { Clock } from "./clock.ts";
import type { RaftConfig } from "./config.ts";
import type { StateMachine } from "./state_machine.ts";
import type { RaftStorage } from "./storage.ts";
import type { Transport } from "./transport.ts";
import type { ConfChange, Index, Member, Message, NodeId, Role, Term } from "./types.ts";

export interface MemberStatus extends Member {
  /** Leader only: highest index known to be replicated on this member. */
  matchIndex?: Index;
  /** Leader only: next index the leader will send. */
  nextIndex?: Index;
  /** Leader only: ms since the member last answered. */
  lastContactMs?: number;
}

export interface NodeStatus {
  id: NodeId;
  role: Role;
  term: Term;
  leader: NodeId | null;
  leaderUrl: string | null;
  commitIndex: Index;
  appliedIndex: Index;
  lastLogIndex: Index;
  snapshotIndex: Index;
  /** Entries kept in the log after the snapshot. */
  logEntries: number;
  /** Bytes of the latest snapshot this node took or installed (0: none since start). */
  snapshotBytes: number;
  members: MemberStatus[];
}

export interface ProposeResult {
  index: Index;
  /** What the state machine's apply returned for this entry. */
  result: unknown;
}

/** The driver's surface, as http/ uses it. Every wait is bounded by `timeoutMs`. */
export interface RaftNodeApi {
  readonly id: NodeId;
  /** Resolves once the command is committed and applied. Throws NotLeaderError on a follower,
   * ProposalDroppedError when it was refused, ProposalTimeoutError when the outcome is unknown. */
  propose(data: Uint8Array, options: { timeoutMs: number }): Promise<ProposeResult>;
  /** ReadIndex: resolves with an index once this leader confirmed it still leads and applied it.
   * Throws NotLeaderError on a follower, NoLeaderError or ReadTimeoutError on a timeout. */
  readBarrier(options: { timeoutMs: number }): Promise<Index>;
  /** Resolves when the local state machine has applied `index` (for stale reads with min_index). */
  waitApplied(index: Index, options: { timeoutMs: number }): Promise<Index>;
  /** Resolves when a leader is known (or throws NoLeaderError at the deadline). */
  waitLeader(options: { timeoutMs: number }): Promise<Member>;
  appliedIndex(): Index;
  /** The leader as this node knows it, with its URL. */
  leader(): Member | undefined;
  /** A message from a peer, already validated by parseMessage. */
  step(message: Message): void;
  status(): NodeStatus;
  /** Running totals for /metrics. */
  counters(): Readonly<NodeCounters>;
  /** Proposes one membership change and resolves once it is committed. */
  changeMembership(change: ConfChange, options: { timeoutMs: number }): Promise<Index>;
  /** Asks the leader to hand leadership to `id`; resolves once `id` leads. */
  transferLeadership(id: NodeId, options: { timeoutMs: number }): Promise<void>;
  /** Snapshots the state machine now and compacts the log; resolves with the snapshot index. */
  takeSnapshot(): Promise<Index>;
  stop(): Promise<void>;
}

export interface RaftNodeOptions {
  config: RaftConfig;
  storage: RaftStorage;
  transport: Transport;
  stateMachine: StateMachine;
  clock: Clock;
  /** Milliseconds per tick: the core's tick counts convert to time with it. */
  tickMs: number;
  /** How long an AppendEntries without entries may wait for a fuller one (0: never). */
  emptyAppendHoldMs?: number;
  /** Take a snapshot once this many entries were applied since the last one. */
  snapshotEntries: number;
  /** ...or once this many bytes of entries were applied since the last one. */
  snapshotBytes: number;
  /** Called once when storage fails: the node has stopped and cannot promise durability. */
  onFatal?: (error: Error) => void;
  /** Called after each durable write of a Ready, for metrics. */
  onPersisted?: (durationMs: number, entries: number) => void;
}

/** Counters the node keeps for /metrics. */
export interface NodeCounters {
  proposalsCommitted: number;
  proposalsFailed: number;
  leaderChanges: number;
  electionsStarted: number;
  readyTurns: number;
  persistCount: number;
  persistMsTotal: number;
  snapshotsTaken: number;
  snapshotsInstalled: number;
  lastSnapshotBytes: number;
  lastSnapshotMs: number;
  /** AppendEntries without entries that a later one to the same peer replaced (append_hold). */
  emptyAppendsReplaced: number;
}
