import type { Clock } from "./clock.ts";
import type { Message, NodeId } from "./types.ts";

/** How long an AppendEntries without entries waits for a fuller one to the same peer. */
export const EMPTY_APPEND_HOLD_MS = 2;

/**
 * Holds AppendEntries that carry no entries (a new commit index, or a probe) for a moment, so
 * that the next AppendEntries to the same peer, which carries the same commit index or a later
 * one, goes in their place. Under a steady stream of writes a commit notice then costs the
 * follower no request and no answer of its own: each write is one exchange per follower
 * instead of two. A held message that nothing replaces leaves after `holdMs`.
 *
 * Safe because Raft tolerates lost messages, and liveness holds because a held message is only
 * dropped for a later one to the same peer that has left.
 */
export class EmptyAppendHold {
  readonly #clock: Clock;
  readonly #holdMs: number;
  readonly #send: (messages: Message[]) => void;
  readonly #held = new Map<NodeId, Message>();
  #cancelTimer: (() => void) | undefined;
  /** Held messages that a later AppendEntries made unnecessary. */
  replaced = 0;

  constructor(clock: Clock, holdMs: number, send: (messages: Message[]) => void) {
    this.#clock = clock;
    this.#holdMs = holdMs;
    this.#send = send;
  }

  /** Sends `messages` in order, except empty AppendEntries, which wait (see the class). */
  send(messages: Message[]): void {
    const now: Message[] = [];
    for (const message of messages) {
      if (message.type !== "appendEntries") {
        now.push(message);
        continue;
      }
      if (this.#held.delete(message.to)) this.replaced++;
      if (message.entries.length === 0 && this.#holdMs > 0) this.#held.set(message.to, message);
      else now.push(message);
    }
    if (now.length > 0) this.#send(now);
    if (this.#held.size > 0 && this.#cancelTimer === undefined) {
      this.#cancelTimer = this.#clock.after(this.#holdMs, () => {
        this.#cancelTimer = undefined;
        this.flush();
      });
    }
  }

  /** Sends every held message now. */
  flush(): void {
    if (this.#held.size === 0) return;
    const held = [...this.#held.values()];
    this.#held.clear();
    this.#send(held);
  }

  /** Drops what is held and stops the timer (the node is stopping). */
  close(): void {
    this.#cancelTimer?.();
    this.#cancelTimer = undefined;
    this.#held.clear();
  }
}
