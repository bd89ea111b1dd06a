import type { LeaderMessage } from "./leader.ts";
import type { RaftLog } from "./log.ts";
import type { Index, Message, NodeId, Snapshot } from "./types.ts";

type MessageOf<T extends Message["type"]> = Extract<Message, { type: T }>;

/** What the follower's side of replication needs from the core it runs in. */
export interface FollowerHost {
  readonly log: RaftLog;
  commitIndex(): Index;
  /** Commits up to `index`, applying committed membership changes. */
  commitTo(index: Index): void;
  send(message: LeaderMessage, needsIndex?: Index): void;
  /** The log lost its entries from `index` on: answers promising them must not leave. */
  dropAnswersFrom(index: Index): void;
  /** Replaces log, membership and state machine with the snapshot's. */
  installSnapshot(snapshot: Snapshot): void;
}

/** AppendEntries (§5.3): the log-matching check, conflict truncation, commit, and the answer. */
export function onAppendEntries(host: FollowerHost, message: MessageOf<"appendEntries">): void {
  const { log } = host;
  if (message.prevLogIndex < host.commitIndex()) {
    respondAppend(host, message.from, host.commitIndex());
    return;
  }
  if (!log.matchTerm(message.prevLogIndex, message.prevLogTerm)) {
    // Fast back-off: name the last index whose term could still match the leader's.
    const hintIndex = log.findConflictByTerm(
      Math.min(message.prevLogIndex, log.lastIndex()),
      message.prevLogTerm,
    );
    host.send({
      type: "appendEntriesResponse",
      to: message.from,
      success: false,
      matchIndex: message.prevLogIndex,
      hintIndex,
      hintTerm: log.term(hintIndex) ?? 0,
    });
    return;
  }
  const truncatedFrom = log.appendAfterMatch(message.entries, host.commitIndex());
  if (truncatedFrom !== undefined) host.dropAnswersFrom(truncatedFrom);
  const lastNew = message.prevLogIndex + message.entries.length;
  host.commitTo(Math.min(message.leaderCommit, lastNew));
  respondAppend(host, message.from, lastNew);
}

export function onHeartbeat(host: FollowerHost, message: MessageOf<"heartbeat">): void {
  host.commitTo(Math.min(message.commit, host.log.lastIndex()));
  host.send({ type: "heartbeatResponse", to: message.from, readRound: message.readRound });
}

/** InstallSnapshot (§7). */
export function onInstallSnapshot(host: FollowerHost, message: MessageOf<"installSnapshot">): void {
  const { metadata } = message.snapshot;
  if (metadata.index <= host.commitIndex()) {
    respondAppend(host, message.from, host.commitIndex());
    return;
  }
  if (host.log.matchTerm(metadata.index, metadata.term)) {
    // The log already holds the snapshot's last entry, so it matches up to there.
    host.commitTo(metadata.index);
    respondAppend(host, message.from, metadata.index);
    return;
  }
  // Anything the log holds conflicts with or stops short of the snapshot: drop it all, and
  // the answers that promised its uncommitted entries. Keeping a conflicting prefix would make
  // the follower ask for the same snapshot again and again.
  host.dropAnswersFrom(host.commitIndex() + 1);
  host.installSnapshot(message.snapshot);
  respondAppend(host, message.from, metadata.index);
}

/** A success answer promises entries up to `matchIndex` are durable: it waits until they are. */
function respondAppend(host: FollowerHost, to: NodeId, matchIndex: Index): void {
  host.send(
    { type: "appendEntriesResponse", to, success: true, matchIndex, hintIndex: 0, hintTerm: 0 },
    matchIndex,
  );
}
