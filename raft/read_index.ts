import { quorumSize } from "./quorum.ts";
import type { Index, NodeId, ReadFailure, ReadState } from "./types.ts";

interface PendingRead {
  readId: number;
  index: Index;
  round: number;
}

/**
 * Linearizable reads by ReadIndex (thesis §6.4), batched: every read that arrives during one
 * turn of the loop shares one heartbeat round, and a quorum of answers to that round (or to
 * any later one) confirms that this node was still the leader when the reads were asked.
 */
export class ReadIndexQueue {
  /** Reads that arrived before this leader committed an entry of its own term. */
  #waitingCommit: number[] = [];
  #unassigned: PendingRead[] = [];
  #pending: PendingRead[] = [];
  #round = 0;
  #acks = new Map<NodeId, number>();

  size(): number {
    return this.#waitingCommit.length + this.#unassigned.length + this.#pending.length;
  }

  waitForCommit(readId: number): void {
    this.#waitingCommit.push(readId);
  }

  /** This leader committed in its term: reads that waited for it take the commit index. */
  releaseWaiting(commitIndex: Index): void {
    for (const readId of this.#waitingCommit) this.add(readId, commitIndex);
    this.#waitingCommit = [];
  }

  add(readId: number, index: Index): void {
    this.#unassigned.push({ readId, index, round: 0 });
  }

  hasUnassigned(): boolean {
    return this.#unassigned.length > 0;
  }

  /** A round was started and a quorum has not confirmed it yet. */
  roundInFlight(): boolean {
    return this.#pending.length > 0;
  }

  /** Starts a heartbeat round for the reads that have none yet; returns its number. */
  startRound(): number {
    this.#round++;
    for (const read of this.#unassigned) {
      read.round = this.#round;
      this.#pending.push(read);
    }
    this.#unassigned = [];
    return this.#round;
  }

  currentRound(): number {
    return this.#round;
  }

  ack(from: NodeId, round: number): void {
    if (round > (this.#acks.get(from) ?? 0)) this.#acks.set(from, round);
  }

  /** Reads confirmed by a quorum of `voters` (self included), oldest first. */
  takeConfirmed(voters: readonly NodeId[], self: NodeId): ReadState[] {
    const confirmed: ReadState[] = [];
    while (this.#pending.length > 0) {
      const read = this.#pending[0];
      let acks = 0;
      for (const id of voters) {
        if (id === self || (this.#acks.get(id) ?? 0) >= read.round) acks++;
      }
      if (acks < quorumSize(voters.length)) break;
      confirmed.push({ readId: read.readId, index: read.index });
      this.#pending.shift();
    }
    return confirmed;
  }

  /** Leadership is lost: every read waiting fails. */
  failAll(): ReadFailure[] {
    const failures: ReadFailure[] = [
      ...this.#waitingCommit,
      ...this.#unassigned.map((read) => read.readId),
      ...this.#pending.map((read) => read.readId),
    ].map((readId) => ({ readId, reason: "notLeader" }));
    this.#waitingCommit = [];
    this.#unassigned = [];
    this.#pending = [];
    this.#acks.clear();
    return failures;
  }
}
