/** Core Raft types. Pure data: no behaviour, no imports. */

export type NodeId = string;
export type Term = number;
/** Log index. The first real entry has index 1; 0 means "before the log". */
export type Index = number;

export type Role = "follower" | "preCandidate" | "candidate" | "leader";

/** A member of the cluster as the log records it. */
export interface Member {
  id: NodeId;
  url: string;
  voter: boolean;
}

/** Cluster membership at some point of the log. Sorted by id. */
export interface ConfState {
  members: Member[];
}

/** One server changes at a time (Ongaro's thesis §4.1). */
export type ConfChange =
  | { type: "addVoter"; id: NodeId; url: string } // used only at bootstrap
  | { type: "addLearner"; id: NodeId; url: string }
  | { type: "promote"; id: NodeId }
  | { type: "remove"; id: NodeId };

export type Entry =
  | { type: "command"; index: Index; term: Term; data: Uint8Array }
  | { type: "noop"; index: Index; term: Term }
  | { type: "config"; index: Index; term: Term; change: ConfChange };

/** What must survive a crash before any message that depends on it is sent. */
export interface HardState {
  term: Term;
  vote: NodeId | null;
  commit: Index;
}

export interface SnapshotMetadata {
  index: Index;
  term: Term;
  confState: ConfState;
}

export interface Snapshot {
  metadata: SnapshotMetadata;
  /** The state machine's bytes. See Message "installSnapshot" for how they travel. */
  data: Uint8Array;
}

interface MessageBase {
  from: NodeId;
  to: NodeId;
  term: Term;
}

/**
 * Messages between cores. Each type carries only its own fields.
 *
 * "installSnapshot" leaves the core with empty `snapshot.data`: the core keeps only snapshot
 * metadata in memory, and the driver attaches the stored snapshot's bytes before sending.
 */
export type Message =
  | MessageBase & {
    type: "vote";
    pre: boolean;
    lastLogIndex: Index;
    lastLogTerm: Term;
    /** Set when a leadership transfer asked for this election: bypasses the leader lease. */
    transfer: boolean;
  }
  | MessageBase & { type: "voteResponse"; pre: boolean; granted: boolean }
  | MessageBase & {
    type: "appendEntries";
    prevLogIndex: Index;
    prevLogTerm: Term;
    entries: Entry[];
    leaderCommit: Index;
  }
  | MessageBase & {
    type: "appendEntriesResponse";
    success: boolean;
    /** On success: the last index known to match. On failure: the rejected prevLogIndex. */
    matchIndex: Index;
    /** On failure, where the leader should probe next (fast back-off). */
    hintIndex: Index;
    hintTerm: Term;
  }
  | MessageBase & { type: "heartbeat"; commit: Index; readRound: number }
  | MessageBase & { type: "heartbeatResponse"; readRound: number }
  | MessageBase & { type: "installSnapshot"; snapshot: Snapshot }
  | MessageBase & { type: "timeoutNow" };

export type MessageType = Message["type"];

/** A linearizable read that may be served once the state machine has applied `index`. */
export interface ReadState {
  readId: number;
  index: Index;
}

/** A read that can no longer be confirmed (leadership lost). */
export interface ReadFailure {
  readId: number;
  reason: "notLeader";
}

export interface SoftState {
  role: Role;
  leader: NodeId | null;
}

/**
 * Everything one turn of the driver must do, in order: persist `snapshot`, then `entries` and
 * `hardState` in one durable write; send `messages`; apply `committedEntries`; answer
 * `readStates`; then call `advance(ready)`.
 */
export interface Ready {
  softState: SoftState;
  hardState: HardState | undefined;
  /** A snapshot received from the leader: persist it, replace the log, restore the state machine. */
  snapshot: Snapshot | undefined;
  /** Entries to append. They may overwrite a suffix starting at entries[0].index. */
  entries: Entry[];
  /** Leader messages that may be sent before `entries` are durable (thesis §10.2.1). */
  earlyMessages: Message[];
  /** Messages to send only after everything above is durable. */
  messages: Message[];
  committedEntries: Entry[];
  readStates: ReadState[];
  readFailures: ReadFailure[];
}

export function assertNever(value: never): never {
  throw new Error(`Unexpected value: ${JSON.stringify(value)}`);
}
