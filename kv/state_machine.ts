import assert from "node:assert/strict";
import type { SnapshotReader, StateMachine } from "../raft/mod.ts";
import { type Command, decodeCommand } from "./command.ts";
import { KeyValueTable } from "./_key_value_table.ts";
import { decodeSnapshot, encodeSnapshot, snapshotReader } from "./snapshot_codec.ts";
import { REQUEST_IDS_MAX } from "./limits.ts";

/**
 * What applying one log entry returned. `index`: the log index at which the command was (first)
 * applied. `invalid`: the entry's bytes are not a command; it changed nothing.
 */
export type ApplyResult =
  | { type: "set"; ok: true; index: number }
  | { type: "cas"; ok: true; index: number }
  | { type: "cas"; ok: false; current: string | null; index: number }
  | { type: "delete"; deleted: boolean; index: number }
  | { type: "invalid"; index: number };

export interface KvStateMachineOptions {
  /** Request ids remembered for idempotent retries (default REQUEST_IDS_MAX). */
  requestIdsMax?: number;
}

/**
 * The replicated key-value map. Pure and in memory: every replica that applies the same entries
 * in the same order reaches the same state, the idempotency table included.
 */
export class KvStateMachine implements StateMachine {
  #table = new KeyValueTable();
  /**
   * First result per request id, in the order first applied. Evicting the oldest first depends
   * only on the log, so every replica forgets the same ids at the same index.
   */
  #requests = new Map<string, ApplyResult>();
  readonly #requestIdsMax: number;
  /** Invariant: every index in #table and #requests is <= #appliedIndex. */
  #appliedIndex = 0;

  constructor(options: KvStateMachineOptions = {}) {
    this.#requestIdsMax = options.requestIdsMax ?? REQUEST_IDS_MAX;
    assert(Number.isSafeInteger(this.#requestIdsMax) && this.#requestIdsMax >= 1);
  }

  /** Applies the entry at `index`. Never throws on bad bytes: they apply as a no-op. */
  apply(index: number, data: Uint8Array): ApplyResult {
    assert(Number.isSafeInteger(index) && index > 0, `apply index ${index} is not a log index`);
    assert(index > this.#appliedIndex, `apply index ${index} is not after ${this.#appliedIndex}`);
    this.#appliedIndex = index;
    let command: Command;
    try {
      command = decodeCommand(data);
    } catch {
      return { type: "invalid", index };
    }
    if (command.requestId !== undefined) {
      const first = this.#requests.get(command.requestId);
      if (first !== undefined) return { ...first };
    }
    const result = this.#execute(index, command);
    if (command.requestId !== undefined) this.#remember(command.requestId, result);
    return { ...result };
  }

  /** The value of `key` and the index of its last change. */
  get(key: string): { value: string; index: number } | undefined {
    return this.#table.get(key);
  }

  keyCount(): number {
    return this.#table.size;
  }

  /** The highest index applied (or restored); 0 before any. */
  appliedIndex(): number {
    return this.#appliedIndex;
  }

  /** MessagePack image of the map and the idempotency table, both in insertion order. */
  snapshot(): Uint8Array {
    return encodeSnapshot({
      appliedIndex: this.#appliedIndex,
      table: this.#table,
      requests: this.#requests,
    });
  }

  /** The same image in pieces, as the state is now, read out while entries go on applying. */
  snapshotReader(): SnapshotReader {
    return snapshotReader({
      appliedIndex: this.#appliedIndex,
      table: this.#table,
      requests: this.#requests,
    });
  }

  /** Replaces the whole state with `data`. Throws `TypeError` and changes nothing if invalid. */
  restore(data: Uint8Array): void {
    const parsed = decodeSnapshot(data);
    this.#table = parsed.table;
    this.#requests = parsed.requests;
    this.#appliedIndex = parsed.appliedIndex;
    // A snapshot from a node with a larger table: forget the oldest, as that node would have.
    this.#evict();
  }

  #execute(index: number, command: Command): ApplyResult {
    switch (command.type) {
      case "set":
        this.#table.set(command.key, command.value, index);
        return { type: "set", ok: true, index };
      case "cas": {
        const current = this.#table.value(command.key) ?? null;
        if (current !== command.expected) return { type: "cas", ok: false, current, index };
        this.#table.set(command.key, command.value, index);
        return { type: "cas", ok: true, index };
      }
      case "delete":
        return { type: "delete", deleted: this.#table.delete(command.key), index };
    }
  }

  #remember(requestId: string, result: ApplyResult): void {
    this.#requests.set(requestId, result);
    this.#evict();
  }

  #evict(): void {
    for (const requestId of this.#requests.keys()) {
      if (this.#requests.size <= this.#requestIdsMax) break;
      this.#requests.delete(requestId);
    }
  }
}
