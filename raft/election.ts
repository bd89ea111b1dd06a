import type { Index, Message, NodeId, Term } from "./types.ts";

type VoteRequest = Extract<Message, { type: "vote" }>;

/** What a node knows when it is asked for its vote. */
export interface VoterState {
  term: Term;
  vote: NodeId | null;
  leaderId: NodeId | null;
  lastLogIndex: Index;
  lastLogTerm: Term;
}

/**
 * Whether to grant a vote or pre-vote: one vote per term (§5.2), only to a candidate whose log
 * is at least as up to date (§5.4.1). A pre-vote (§9.6) promises nothing, so it may be granted
 * for a later term whatever this node voted in its own.
 */
export function grantsVote(voter: VoterState, request: VoteRequest): boolean {
  const canVote = voter.vote === request.from ||
    (voter.vote === null && voter.leaderId === null) ||
    (request.pre && request.term > voter.term);
  const upToDate = request.lastLogTerm > voter.lastLogTerm ||
    (request.lastLogTerm === voter.lastLogTerm && request.lastLogIndex >= voter.lastLogIndex);
  return canVote && upToDate;
}

/**
 * Leader lease (thesis §4.2.3, with CheckQuorum): a node that heard from a leader within the
 * minimum election timeout ignores vote requests of a higher term, so a node that was cut off
 * cannot depose a healthy leader; a leadership transfer's request is the exception.
 */
export function ignoresInLease(
  state: {
    checkQuorum: boolean;
    leaderId: NodeId | null;
    electionElapsed: number;
    electionTimeoutTicks: number;
  },
  request: VoteRequest,
): boolean {
  const inLease = state.checkQuorum && state.leaderId !== null &&
    state.electionElapsed < state.electionTimeoutTicks;
  return inLease && !request.transfer;
}

/** The leader a message of a higher term names, if it comes from one. */
export function leaderOf(message: Message): NodeId | null {
  return message.type === "appendEntries" || message.type === "heartbeat" ||
      message.type === "installSnapshot"
    ? message.from
    : null;
}
