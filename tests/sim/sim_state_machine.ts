import type { Index, StateMachine } from "../../raft/mod.ts";

/** What a read returns: the applied index, how many commands, and a hash chain over them. */
export interface SimState {
  index: Index;
  count: number;
  hash: number;
}

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function mixByte(hash: number, byte: number): number {
  return Math.imul(hash ^ byte, FNV_PRIME) >>> 0;
}

/**
 * The simulator's replicated state machine: a counter of applied commands and a hash chain
 * over (index, bytes) of each. Two nodes that applied different commands anywhere below an
 * index end with different hashes at that index, which is what the safety checks compare.
 */
export class SimStateMachine implements StateMachine {
  #index: Index = 0;
  #count = 0;
  #hash = FNV_OFFSET;

  apply(index: Index, data: Uint8Array): SimState {
    let hash = this.#hash;
    for (let shift = 0; shift < 32; shift += 8) hash = mixByte(hash, (index >>> shift) & 0xff);
    // The simulator's commands are unique by their first bytes; hashing the length and a
    // prefix keeps 100 KiB entries cheap to apply.
    const length = data.length;
    for (let shift = 0; shift < 32; shift += 8) hash = mixByte(hash, (length >>> shift) & 0xff);
    const prefix = Math.min(data.length, 64);
    for (let i = 0; i < prefix; i++) hash = mixByte(hash, data[i]);
    this.#hash = hash;
    this.#count += 1;
    this.#index = index;
    return this.state();
  }

  /** A committed entry that is not a command: the index moves, the state does not. */
  skip(index: Index): void {
    this.#index = index;
  }

  state(): SimState {
    return { index: this.#index, count: this.#count, hash: this.#hash };
  }

  snapshot(): Uint8Array {
    return encoder.encode(JSON.stringify(this.state()));
  }

  restore(data: Uint8Array): void {
    const value: unknown = JSON.parse(decoder.decode(data));
    if (!isSimState(value)) {
      throw new TypeError(
        `Cannot restore the simulated state machine: bad image "${decoder.decode(data)}"`,
      );
    }
    this.#index = value.index;
    this.#count = value.count;
    this.#hash = value.hash;
  }
}

function isSimState(value: unknown): value is SimState {
  if (typeof value !== "object" || value === null) return false;
  const record = value as Record<string, unknown>;
  return Number.isSafeInteger(record.index) && Number.isSafeInteger(record.count) &&
    Number.isSafeInteger(record.hash);
}
