import type { Index } from "./types.ts";

/**
 * A snapshot image handed out in pieces, as the state was when the reader was made, however
 * many entries are applied while it is read: a large state is written without holding a copy
 * of its whole image and without stopping the loop while it is encoded.
 */
export interface SnapshotReader {
  /** The next piece of the image; undefined once all of it is out (the reader then closes). */
  next(): Uint8Array | undefined;
  /** Stops early: the state machine stops keeping old state for it (harmless at the end). */
  close(): void;
}

/**
 * The replicated state machine. It receives committed commands in log order, each once.
 * `apply` returns the result handed back to the proposer (for example a CAS outcome).
 */
export interface StateMachine {
  apply(index: Index, data: Uint8Array): unknown;
  /** A self-contained image of the state after the last applied index. */
  snapshot(): Uint8Array;
  /**
   * Optional: an image of the state after the last applied index, read out in pieces (see
   * SnapshotReader). Its pieces joined restore the same state as snapshot() would give now.
   */
  snapshotReader?(): SnapshotReader;
  /** Replaces the whole state with a snapshot's image. */
  restore(data: Uint8Array): void;
}
