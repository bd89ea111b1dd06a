import type { HardState, Index, Message } from "./types.ts";

/** A message waiting to leave, and the log index that must be durable before it may. */
export type Outgoing = { message: Message; needsIndex: Index };

/**
 * Splits the outbox for a Ready whose write makes the log durable up to `durableIndex`: the
 * longest prefix whose promises that write keeps leaves now, the rest waits. Leader messages
 * may go before the write itself (thesis §10.2.1); answers go only after it.
 */
export function takeSendable(
  outbox: Outgoing[],
  durableIndex: Index,
): { earlyMessages: Message[]; messages: Message[]; waiting: Outgoing[] } {
  const earlyMessages: Message[] = [];
  const messages: Message[] = [];
  let taken = 0;
  for (const outgoing of outbox) {
    if (outgoing.needsIndex > durableIndex) break;
    if (isLeaderMessage(outgoing.message)) earlyMessages.push(outgoing.message);
    else messages.push(outgoing.message);
    taken++;
  }
  return { earlyMessages, messages, waiting: outbox.slice(taken) };
}

export function sameHardState(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

/** Messages only a leader sends: they promise nothing about the sender's disk. */
function isLeaderMessage(message: Message): boolean {
  return message.type === "appendEntries" || message.type === "heartbeat" ||
    message.type === "installSnapshot" || message.type === "timeoutNow";
}
