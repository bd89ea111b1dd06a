import assert from "node:assert/strict";
import { decode, encode } from "@msgpack/msgpack";
import type { StateMachine } from "../raft/mod.ts";
import { errorMessage, fitsUtf8, isIndex, isRecord, rejectUnknownFields } from "./_validate.ts";
import { type Command, decodeCommand } from "./command.ts";
import { KEY_BYTES_MAX, REQUEST_ID_BYTES_MAX, REQUEST_IDS_MAX, VALUE_BYTES_MAX } from "./limits.ts";

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

interface StoredValue {
  value: string;
  index: number;
}

const SNAPSHOT_FORMAT = 1;
const SNAPSHOT_FIELDS = ["format", "appliedIndex", "entries", "requests"];

/**
 * The replicated key-value map. Pure and in memory: every replica that applies the same entries
 * in the same order reaches the same state, the idempotency table included.
 */
export class KvStateMachine implements StateMachine {
  #map = new Map<string, StoredValue>();
  /**
   * First result per request id, in the order first applied. Evicting the oldest first depends
   * only on the log, so every replica forgets the same ids at the same index.
   */
  #requests = new Map<string, ApplyResult>();
  readonly #requestIdsMax: number;
  /** Invariant: every index in #map and #requests is <= #appliedIndex. */
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
    const stored = this.#map.get(key);
    return stored === undefined ? undefined : { value: stored.value, index: stored.index };
  }

  keyCount(): number {
    return this.#map.size;
  }

  /** The highest index applied (or restored); 0 before any. */
  appliedIndex(): number {
    return this.#appliedIndex;
  }

  /** MessagePack image of the map and the idempotency table, both in insertion order. */
  snapshot(): Uint8Array {
    const entries: [string, string, number][] = [];
    for (const [key, stored] of this.#map) entries.push([key, stored.value, stored.index]);
    const requests: [string, ApplyResult][] = [...this.#requests];
    return encode({
      format: SNAPSHOT_FORMAT,
      appliedIndex: this.#appliedIndex,
      entries,
      requests,
    });
  }

  /** Replaces the whole state with `data`. Throws `TypeError` and changes nothing if invalid. */
  restore(data: Uint8Array): void {
    const parsed = parseSnapshot(data);
    this.#map = parsed.map;
    this.#requests = parsed.requests;
    this.#appliedIndex = parsed.appliedIndex;
    // A snapshot from a node with a larger table: forget the oldest, as that node would have.
    this.#evict();
  }

  #execute(index: number, command: Command): ApplyResult {
    switch (command.type) {
      case "set":
        this.#map.set(command.key, { value: command.value, index });
        return { type: "set", ok: true, index };
      case "cas": {
        const current = this.#map.get(command.key)?.value ?? null;
        if (current !== command.expected) return { type: "cas", ok: false, current, index };
        this.#map.set(command.key, { value: command.value, index });
        return { type: "cas", ok: true, index };
      }
      case "delete":
        return { type: "delete", deleted: this.#map.delete(command.key), index };
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

interface ParsedSnapshot {
  appliedIndex: number;
  map: Map<string, StoredValue>;
  requests: Map<string, ApplyResult>;
}

function parseSnapshot(data: Uint8Array): ParsedSnapshot {
  const context = "Cannot restore key-value snapshot";
  let value: unknown;
  try {
    value = decode(data);
  } catch (error) {
    throw new TypeError(`${context}: invalid MessagePack: ${errorMessage(error)}`);
  }
  if (!isRecord(value)) throw new TypeError(`${context}: expected an object`);
  rejectUnknownFields(value, SNAPSHOT_FIELDS, context);
  if (value.format !== SNAPSHOT_FORMAT) {
    throw new TypeError(`${context}: unknown format ${JSON.stringify(value.format)}`);
  }
  const appliedIndex = value.appliedIndex;
  if (!isIndex(appliedIndex)) throw new TypeError(`${context}: field "appliedIndex" is invalid`);
  if (!Array.isArray(value.entries)) throw new TypeError(`${context}: field "entries" is invalid`);
  if (!Array.isArray(value.requests)) {
    throw new TypeError(`${context}: field "requests" is invalid`);
  }
  const map = new Map<string, StoredValue>();
  for (const entry of value.entries) {
    if (
      !Array.isArray(entry) || entry.length !== 3 || typeof entry[0] !== "string" ||
      entry[0] === "" || !fitsUtf8(entry[0], KEY_BYTES_MAX) || typeof entry[1] !== "string" ||
      !fitsUtf8(entry[1], VALUE_BYTES_MAX) || !isIndex(entry[2]) || entry[2] > appliedIndex ||
      entry[2] === 0 || map.has(entry[0])
    ) {
      throw new TypeError(`${context}: entry ${map.size} is invalid`);
    }
    map.set(entry[0], { value: entry[1], index: entry[2] });
  }
  const requests = new Map<string, ApplyResult>();
  for (const request of value.requests) {
    if (
      !Array.isArray(request) || request.length !== 2 || typeof request[0] !== "string" ||
      request[0] === "" || !fitsUtf8(request[0], REQUEST_ID_BYTES_MAX) || requests.has(request[0])
    ) {
      throw new TypeError(`${context}: request ${requests.size} is invalid`);
    }
    const result = parseApplyResult(request[1], appliedIndex);
    if (result === undefined) {
      throw new TypeError(`${context}: result of request "${request[0]}" is invalid`);
    }
    requests.set(request[0], result);
  }
  return { appliedIndex, map, requests };
}

function parseApplyResult(value: unknown, appliedIndex: number): ApplyResult | undefined {
  if (!isRecord(value)) return undefined;
  const index = value.index;
  if (!isIndex(index) || index === 0 || index > appliedIndex) return undefined;
  const fields = Object.keys(value).length;
  switch (value.type) {
    case "set":
      return value.ok === true && fields === 3 ? { type: "set", ok: true, index } : undefined;
    case "cas":
      if (value.ok === true && fields === 3) return { type: "cas", ok: true, index };
      if (
        value.ok === false && fields === 4 &&
        (value.current === null ||
          (typeof value.current === "string" && fitsUtf8(value.current, VALUE_BYTES_MAX)))
      ) {
        return { type: "cas", ok: false, current: value.current, index };
      }
      return undefined;
    case "delete":
      return typeof value.deleted === "boolean" && fields === 3
        ? { type: "delete", deleted: value.deleted, index }
        : undefined;
    default:
      return undefined;
  }
}
