import type { HardState, Index, Message } from "./types.ts";

/** A message waiting to leave, and the log index that must be durable before it may. */
export type Outgoing = { message: Message; needsIndex: Index };

/**
 * Splits the outbox for a Ready whose write makes the log durable up to `durableIndex`: the
 * longest prefix whose promises that write keeps leaves now, the rest waits. Leader messages
 * may go before the write itself (thesis §10.2.1), but only once the leader's term is durable:
 * a sole voter wins in one step, and must not send in a term a crash could make it reuse.
 */
export function takeSendable(
  outbox: Outgoing[],
  durableIndex: Index,
  earlyAllowed: boolean,
): { earlyMessages: Message[]; messages: Message[]; waiting: Outgoing[] } {
  const earlyMessages: Message[] = [];
  const messages: Message[] = [];
  let taken = 0;
  for (const outgoing of outbox) {
    if (outgoing.needsIndex > durableIndex) break;
    if (earlyAllowed && isLeaderMessage(outgoing.message)) earlyMessages.push(outgoing.message);
    else messages.push(outgoing.message);
    taken++;
  }
  return { earlyMessages, messages, waiting: outbox.slice(taken) };
}

/**
 * Whether a Ready must write the hard state. Term and vote always: a vote must be durable
 * before it is sent. A commit index only rides along with entries: it is not needed for safety
 * (a restarted node learns it again from the leader), and a write of its own would cost an
 * fsync on every commit.
 */
export function mustPersistHardState(
  next: HardState,
  persisted: HardState,
  writesEntries: boolean,
): boolean {
  if (next.term !== persisted.term || next.vote !== persisted.vote) return true;
  return writesEntries && next.commit > persisted.commit;
}

/** Messages only a leader sends: they promise nothing about the sender's disk. */
function isLeaderMessage(message: Message): boolean {
  return message.type === "appendEntries" || message.type === "heartbeat" ||
    message.type === "installSnapshot" || message.type === "timeoutNow";
}
