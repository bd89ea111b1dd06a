import type { NodeId } from "./types.ts";

/** This node is not the leader; `leaderId`/`leaderUrl` name the leader when known. */
export class NotLeaderError extends Error {
  override name = "NotLeaderError";
  constructor(readonly leaderId: NodeId | null, readonly leaderUrl: string | undefined) {
    super(`Cannot serve on a non-leader: leader is "${leaderId ?? "unknown"}"`);
  }
}

/** No leader is known and none was found before the deadline: nothing was proposed. */
export class NoLeaderError extends Error {
  override name = "NoLeaderError";
  constructor(message = "No leader: the cluster has no quorum or is electing") {
    super(message);
  }
}

/** The proposal was refused or lost before it could commit (leader change, transfer, full queue). */
export class ProposalDroppedError extends Error {
  override name = "ProposalDroppedError";
}

/** The proposal was made but is not known to be committed in time: its outcome is unknown. */
export class ProposalTimeoutError extends Error {
  override name = "ProposalTimeoutError";
  constructor(message = "Timed out waiting for the proposal to commit: outcome unknown") {
    super(message);
  }
}

/** A read or a wait did not finish before its deadline; nothing was changed. */
export class ReadTimeoutError extends Error {
  override name = "ReadTimeoutError";
  constructor(message = "Timed out waiting for the read") {
    super(message);
  }
}

/** A membership change or leadership transfer that would be unsafe or cannot be done now. */
export class MembershipError extends Error {
  override name = "MembershipError";
}

/** Persisting failed (disk full, corrupt file). The node stops: it cannot promise durability. */
export class StorageError extends Error {
  override name = "StorageError";
}

/** The node is shutting down. */
export class StoppedError extends Error {
  override name = "StoppedError";
  constructor() {
    super("The node is stopping");
  }
}
