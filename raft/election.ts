import type { Index, Message, NodeId, Role, Term } from "./types.ts";

type VoteRequest = Extract<Message, { type: "vote" }>;

/** What a node knows when it is asked for its vote. */
export interface VoterState {
  id: NodeId;
  role: Role;
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
  return canVote && upToDate &&
    !(request.pre && voter.role === "preCandidate" && beats(voter, request));
}

/**
 * Two nodes that time out together would each pre-vote for the other, both stand for real in
 * the same term, split the vote and wait a whole election timeout more. So a pre-candidate
 * refuses a pre-vote to one it beats (a more up-to-date log, or as up to date and a smaller id),
 * and asks again itself at once (`asksAgainAfterRefusing`): of any two, exactly one goes on.
 */
function beats(voter: VoterState, request: VoteRequest): boolean {
  if (voter.lastLogTerm !== request.lastLogTerm) return voter.lastLogTerm > request.lastLogTerm;
  if (voter.lastLogIndex !== request.lastLogIndex) return voter.lastLogIndex > request.lastLogIndex;
  return voter.id < request.from;
}

/**
 * Whether a node that refused a pre-vote asks for its own at once. The asker timed out, so the
 * leader is likely gone, and it could not win against this node's log (or the tie-break): going
 * now saves up to a whole election timeout. A follower goes only when it has not heard from a
 * leader for an election timeout either, so a healthy leader's lease holds.
 */
export function asksAgainAfterRefusing(
  voter: VoterState & { electionElapsed: number; electionTimeoutTicks: number },
  request: VoteRequest,
): boolean {
  if (!request.pre || !beats(voter, request)) return false;
  const leaderSilent = voter.leaderId === null ||
    voter.electionElapsed >= voter.electionTimeoutTicks;
  return voter.role === "preCandidate" || (voter.role === "follower" && leaderSilent);
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
