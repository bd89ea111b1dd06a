import type { Index } from "./types.ts";

/**
 * The replicated state machine. It receives committed commands in log order, each once.
 * `apply` returns the result handed back to the proposer (for example a CAS outcome).
 */
export interface StateMachine {
  apply(index: Index, data: Uint8Array): unknown;
  /** A self-contained image of the state after the last applied index. */
  snapshot(): Uint8Array;
  /** Replaces the whole state with a snapshot's image. */
  restore(data: Uint8Array): void;
}
