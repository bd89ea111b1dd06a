/**
 * The records DenoKvStorage keeps in Deno KV, their MessagePack encoding, and the one gateway
 * that validates each of them when read back. Everything read from disk is `unknown` until here.
 */
import { decode, encode } from "./_msgpack.ts";
import type { ConfChange, ConfState, Entry, HardState, Member } from "../raft/mod.ts";
import { StorageError } from "../raft/mod.ts";
import { errorMessage, isIndex, isRecord } from "./_validate.ts";

/** The snapshot the meta record names: its chunks live under ["snap", id, chunk]. */
export interface SnapshotRef {
  id: number;
  index: number;
  term: number;
  confState: ConfState;
  byteLength: number;
  chunkCount: number;
  /** FNV-1a of the data, to tell a torn or corrupt snapshot from a good one. */
  hash: number;
}

/**
 * The one record that says what is stored. `lastIndex` is authoritative: log records past it,
 * or at or before the snapshot index, are stale and ignored.
 */
export interface Meta {
  hardState: HardState;
  lastIndex: number;
  snapshot: SnapshotRef | null;
}

/** The first record of a log entry, under ["log", index]; chunks 1.. follow at ["log", index, n]. */
export interface LogHead {
  chunkCount: number;
  part: Uint8Array;
}

const META_FORMAT = 1;
const encoder = new TextEncoder();

export const META_KEY: Deno.KvKey = ["meta", "raft"];
export const LOG_PREFIX: Deno.KvKey = ["log"];
export const SNAP_PREFIX: Deno.KvKey = ["snap"];

export function logKey(index: number, chunk: number): Deno.KvKey {
  return chunk === 0 ? ["log", index] : ["log", index, chunk];
}

export function snapKey(id: number, chunk: number): Deno.KvKey {
  return ["snap", id, chunk];
}

/**
 * Encoded bytes of a key: a string part is a tag, its UTF-8 bytes (counted twice, in case of
 * escaped NULs) and a terminator; a number part is a tag and 8 bytes.
 */
export function keyBytes(key: Deno.KvKey): number {
  let bytes = 0;
  for (const part of key) {
    if (typeof part === "number") bytes += 9;
    else if (typeof part === "string") bytes += 2 + 2 * encoder.encode(part).length;
    else throw new TypeError(`Unsupported key part in raftkv storage: ${typeof part}`);
  }
  return bytes;
}

export function encodeMeta(meta: Meta): Uint8Array {
  return encode({ format: META_FORMAT, ...meta });
}

export function parseMeta(value: unknown): Meta {
  const record = decodeRecord(value, "meta record");
  const fail = (field: string): never => {
    throw new StorageError(`Corrupt meta record in Deno KV: field "${field}" is invalid`);
  };
  if (record.format !== META_FORMAT) fail("format");
  const hardState = parseHardState(record.hardState) ?? fail("hardState");
  const lastIndex = isIndex(record.lastIndex) ? record.lastIndex : fail("lastIndex");
  let snapshot: SnapshotRef | null = null;
  if (record.snapshot !== null) snapshot = parseSnapshotRef(record.snapshot) ?? fail("snapshot");
  if (snapshot !== null && lastIndex < snapshot.index) fail("lastIndex");
  return { hardState, lastIndex, snapshot };
}

function parseHardState(value: unknown): HardState | undefined {
  if (!isRecord(value)) return undefined;
  const { term, vote, commit } = value;
  if (!isIndex(term) || !isIndex(commit)) return undefined;
  if (vote !== null && typeof vote !== "string") return undefined;
  return { term, vote, commit };
}

function parseSnapshotRef(value: unknown): SnapshotRef | undefined {
  if (!isRecord(value)) return undefined;
  const { id, index, term, byteLength, chunkCount, hash } = value;
  if (!isIndex(id) || id === 0 || !isIndex(index) || !isIndex(term)) return undefined;
  if (!isIndex(byteLength) || !isIndex(chunkCount) || !isIndex(hash)) return undefined;
  const confState = parseConfState(value.confState);
  if (confState === undefined) return undefined;
  return { id, index, term, confState, byteLength, chunkCount, hash };
}

function parseConfState(value: unknown): ConfState | undefined {
  if (!isRecord(value) || !Array.isArray(value.members)) return undefined;
  const members: Member[] = [];
  for (const member of value.members) {
    if (!isRecord(member)) return undefined;
    const { id, url, voter } = member;
    if (typeof id !== "string" || typeof url !== "string" || typeof voter !== "boolean") {
      return undefined;
    }
    members.push({ id, url, voter });
  }
  return { members };
}

/** [chunkCount, part] in MessagePack, written directly: `part` is copied once, not twice. */
export function encodeLogHead(head: LogHead): Uint8Array {
  const { chunkCount, part } = head;
  const count = encode(chunkCount);
  const bytes = new Uint8Array(1 + count.length + 5 + part.length);
  bytes[0] = 0x92; // an array of two
  bytes.set(count, 1);
  let offset = 1 + count.length;
  bytes[offset] = 0xc6; // bin 32
  new DataView(bytes.buffer).setUint32(offset + 1, part.length);
  offset += 5;
  bytes.set(part, offset);
  return bytes;
}

export function parseLogHead(value: unknown, index: number): LogHead {
  if (!(value instanceof Uint8Array)) throw corruptEntry(index, "the record is not bytes");
  let decoded: unknown;
  try {
    decoded = decode(value);
  } catch (error) {
    throw corruptEntry(index, `invalid MessagePack: ${errorMessage(error)}`);
  }
  if (
    !Array.isArray(decoded) || decoded.length !== 2 || !isIndex(decoded[0]) || decoded[0] === 0 ||
    !(decoded[1] instanceof Uint8Array)
  ) {
    throw corruptEntry(index, "the record is not a log head");
  }
  return { chunkCount: decoded[0], part: decoded[1] };
}

export function encodeEntry(entry: Entry): Uint8Array {
  switch (entry.type) {
    case "command":
      return encode([entry.index, entry.term, "command", entry.data]);
    case "noop":
      return encode([entry.index, entry.term, "noop"]);
    case "config":
      return encode([entry.index, entry.term, "config", entry.change]);
  }
}

/**
 * One log record holds a run of consecutive entries: one entry alone is its encoding (see
 * encodeEntry); several are a MessagePack array of those encodings, so a batch of small
 * entries is one Deno KV write instead of one per entry.
 */
export function encodeRun(encodedEntries: Uint8Array[]): Uint8Array {
  if (encodedEntries.length === 1) return encodedEntries[0];
  const count = encodedEntries.length;
  const headBytes = count < 16 ? 1 : count < 0x10000 ? 3 : 5;
  let length = headBytes;
  for (const entry of encodedEntries) length += entry.length;
  const bytes = new Uint8Array(length);
  if (headBytes === 1) bytes[0] = 0x90 | count;
  else if (headBytes === 3) {
    bytes[0] = 0xdc;
    new DataView(bytes.buffer).setUint16(1, count);
  } else {
    bytes[0] = 0xdd;
    new DataView(bytes.buffer).setUint32(1, count);
  }
  let offset = headBytes;
  for (const entry of encodedEntries) {
    bytes.set(entry, offset);
    offset += entry.length;
  }
  return bytes;
}

/** The entries of the record at `start`: consecutive from `start`. Throws StorageError. */
export function decodeRun(bytes: Uint8Array, start: number): Entry[] {
  let value: unknown;
  try {
    value = decode(bytes);
  } catch (error) {
    throw corruptEntry(start, `invalid MessagePack: ${errorMessage(error)}`);
  }
  if (!Array.isArray(value) || value.length === 0) throw corruptEntry(start, "not an entry");
  if (!Array.isArray(value[0])) return [parseEntry(value, start)];
  return value.map((item, i) => parseEntry(item, start + i));
}

/** The entry in `bytes`, which must be the entry at `index`. Throws StorageError otherwise. */
export function decodeEntry(bytes: Uint8Array, index: number): Entry {
  let value: unknown;
  try {
    value = decode(bytes);
  } catch (error) {
    throw corruptEntry(index, `invalid MessagePack: ${errorMessage(error)}`);
  }
  return parseEntry(value, index);
}

function parseEntry(value: unknown, index: number): Entry {
  if (!Array.isArray(value) || value.length < 3) throw corruptEntry(index, "not an entry");
  const [storedIndex, term, type, payload] = value;
  if (storedIndex !== index) {
    throw corruptEntry(index, `it holds index ${JSON.stringify(storedIndex)}`);
  }
  if (!isIndex(term)) throw corruptEntry(index, "its term is invalid");
  if (type === "command" && value.length === 4 && payload instanceof Uint8Array) {
    return { type, index, term, data: payload };
  }
  if (type === "noop" && value.length === 3) return { type, index, term };
  if (type === "config" && value.length === 4) {
    const change = parseConfChange(payload);
    if (change !== undefined) return { type, index, term, change };
  }
  throw corruptEntry(index, `its type or payload is invalid`);
}

function parseConfChange(value: unknown): ConfChange | undefined {
  if (!isRecord(value) || typeof value.id !== "string") return undefined;
  const { type, id, url } = value;
  switch (type) {
    case "addVoter":
    case "addLearner":
      return typeof url === "string" ? { type, id, url } : undefined;
    case "promote":
    case "remove":
      return { type, id };
    default:
      return undefined;
  }
}

export function corruptEntry(index: number, reason: string): StorageError {
  return new StorageError(`Corrupt raft log record at index ${index} in Deno KV: ${reason}`);
}

function decodeRecord(value: unknown, what: string): Record<string, unknown> {
  if (!(value instanceof Uint8Array)) {
    throw new StorageError(`Corrupt ${what} in Deno KV: it is not bytes`);
  }
  let decoded: unknown;
  try {
    decoded = decode(value);
  } catch (error) {
    throw new StorageError(`Corrupt ${what} in Deno KV: ${errorMessage(error)}`);
  }
  if (!isRecord(decoded)) throw new StorageError(`Corrupt ${what} in Deno KV: not an object`);
  return decoded;
}

/** 32-bit FNV-1a: cheap, and enough to notice a torn or altered snapshot. */
export function fnv1a(bytes: Uint8Array): number {
  return fnv1aUpdate(FNV1A_START, bytes);
}

/** The FNV-1a hash of no bytes, where a hash built piece by piece with fnv1aUpdate starts. */
export const FNV1A_START = 0x811c9dc5;

/** The FNV-1a hash of the bytes hashed into `hash`, followed by `bytes`. */
export function fnv1aUpdate(hash: number, bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length; i++) {
    hash ^= bytes[i];
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/** Splits `bytes` into views of at most `chunkBytes` (one empty chunk for empty bytes). */
export function splitChunks(bytes: Uint8Array, chunkBytes: number): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  for (let offset = 0; offset < bytes.length || chunks.length === 0; offset += chunkBytes) {
    chunks.push(bytes.subarray(offset, offset + chunkBytes));
  }
  return chunks;
}

export function joinChunks(chunks: Uint8Array[]): Uint8Array {
  if (chunks.length === 1) return chunks[0];
  let length = 0;
  for (const chunk of chunks) length += chunk.length;
  const joined = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    joined.set(chunk, offset);
    offset += chunk.length;
  }
  return joined;
}
