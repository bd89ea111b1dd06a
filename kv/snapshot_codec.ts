/**
 * The state machine's snapshot image, written and read in chunks: a header, then arrays of up
 * to ENTRIES_PER_CHUNK keys, then the idempotency table, as consecutive MessagePack values in
 * one buffer. With a million keys, encoding or decoding one giant array of small arrays would
 * double the memory of the map for a moment; chunks keep that overhead small.
 *
 * encodeSnapshot computes the image's size exactly before writing it, so it is one buffer of
 * exactly its length: no slack (an estimate with a 5 % margin held 14 MB too many at a million keys)
 * and no growth by copying (values outside ASCII, up to 3 bytes a character, made it grow).
 */
import assert from "node:assert/strict";
import { decodeMulti, Encoder } from "@msgpack/msgpack";
import type { SnapshotReader } from "../raft/mod.ts";
import { KeyValueTable, type TableCursor } from "./_key_value_table.ts";
import {
  errorMessage,
  fitsUtf8,
  isIndex,
  isRecord,
  rejectUnknownFields,
  utf8ByteLength,
} from "./_validate.ts";
import { KEY_BYTES_MAX, REQUEST_ID_BYTES_MAX, VALUE_BYTES_MAX } from "./limits.ts";
import type { ApplyResult } from "./state_machine.ts";

export interface SnapshotContent {
  appliedIndex: number;
  table: KeyValueTable;
  requests: Map<string, ApplyResult>;
}

const SNAPSHOT_FORMAT = 2;
const HEADER_FIELDS = ["format", "appliedIndex", "entries", "chunks"];
/** Keys per chunk: each is a flat array [key, value, index, key, value, index, ...]. */
const ENTRIES_PER_CHUNK = 4096;
const CONTEXT = "Cannot restore key-value snapshot";
/** Any UTF-16 unit outside ASCII (surrogates included). */
const NON_ASCII = /[\u0080-\uffff]/;

export function encodeSnapshot(content: SnapshotContent): Uint8Array {
  const encoder = new Encoder();
  const entries = content.table.size;
  const chunks = Math.ceil(entries / ENTRIES_PER_CHUNK);
  const header = encoder.encode({
    format: SNAPSHOT_FORMAT,
    appliedIndex: content.appliedIndex,
    entries,
    chunks,
  });
  const requests = encoder.encode([...content.requests]);
  const image = new Uint8Array(header.length + tableBytes(content.table) + requests.length);
  image.set(header);
  let offset = header.length;
  const chunk: (string | number)[] = [];
  const writeChunk = () => {
    const bytes = encoder.encodeSharedRef(chunk);
    image.set(bytes, offset);
    offset += bytes.length;
    chunk.length = 0;
  };
  content.table.forEach((key, value, index) => {
    chunk.push(key, value, index);
    if (chunk.length === 3 * ENTRIES_PER_CHUNK) writeChunk();
  });
  if (chunk.length > 0) writeChunk();
  image.set(requests, offset);
  offset += requests.length;
  assert.equal(offset, image.length, "the snapshot image fills the size computed for it");
  return image;
}

/**
 * The image of `content` in pieces (see SnapshotReader), read through a cursor on its table: the
 * header, one piece per chunk, then the request table. That one is encoded at once: it is small (a
 * request id per write at most, REQUEST_IDS_MAX in all) and changes with the writes that carry
 * an id. The pieces joined decode as encodeSnapshot's image does, the keys in slot order.
 */
export function snapshotReader(content: SnapshotContent): SnapshotReader {
  const encoder = new Encoder();
  const entries = content.table.size;
  const header = encoder.encode({
    format: SNAPSHOT_FORMAT,
    appliedIndex: content.appliedIndex,
    entries,
    chunks: Math.ceil(entries / ENTRIES_PER_CHUNK),
  });
  let requests: Uint8Array | undefined = encoder.encode([...content.requests]);
  // Opened last: nothing above can throw and leave it open.
  const cursor: TableCursor = content.table.cursor();
  let stage: "header" | "table" | "requests" | "done" = "header";
  const chunk: (string | number)[] = [];
  const add = (key: string, value: string, index: number) => chunk.push(key, value, index);
  const close = () => {
    stage = "done";
    requests = undefined;
    cursor.close();
  };
  return {
    next() {
      if (stage === "header") {
        stage = "table";
        return header;
      }
      if (stage === "table") {
        const more = cursor.next(ENTRIES_PER_CHUNK, add);
        if (!more) stage = "requests";
        if (chunk.length > 0) {
          const bytes = encoder.encode(chunk);
          chunk.length = 0;
          return bytes;
        }
      }
      if (stage === "requests") {
        const bytes = requests;
        close();
        return bytes;
      }
      return undefined;
    },
    close,
  };
}

/**
 * Bytes of the table's chunks, as the Encoder writes them: the smallest MessagePack formats
 * (fixarray or array 16/32, fixstr or str 8/16/32, positive fixint or uint 8/16/32/64).
 */
function tableBytes(table: KeyValueTable): number {
  let bytes = 0;
  table.forEach((key, value, index) => {
    bytes += stringBytes(key) + stringBytes(value) + uintBytes(index);
  });
  const fullChunks = Math.floor(table.size / ENTRIES_PER_CHUNK);
  bytes += fullChunks * arrayHeaderBytes(3 * ENTRIES_PER_CHUNK);
  const rest = table.size % ENTRIES_PER_CHUNK;
  if (rest > 0) bytes += arrayHeaderBytes(3 * rest);
  return bytes;
}

function stringBytes(text: string): number {
  const length = NON_ASCII.test(text) ? utf8ByteLength(text) : text.length;
  if (length < 32) return 1 + length;
  if (length < 0x100) return 2 + length;
  if (length < 0x10000) return 3 + length;
  return 5 + length;
}

function uintBytes(value: number): number {
  if (value < 0x80) return 1;
  if (value < 0x100) return 2;
  if (value < 0x10000) return 3;
  if (value < 0x1_0000_0000) return 5;
  return 9;
}

function arrayHeaderBytes(length: number): number {
  if (length < 16) return 1;
  if (length < 0x10000) return 3;
  return 5;
}

/** Parses and checks a snapshot image; throws TypeError on anything malformed. */
export function decodeSnapshot(data: Uint8Array): SnapshotContent {
  let values: Generator<unknown>;
  try {
    values = decodeMulti(data) as Generator<unknown>;
  } catch (error) {
    throw new TypeError(`${CONTEXT}: invalid MessagePack: ${errorMessage(error)}`);
  }
  const next = (what: string): unknown => {
    let result: IteratorResult<unknown>;
    try {
      result = values.next();
    } catch (error) {
      throw new TypeError(`${CONTEXT}: invalid MessagePack in ${what}: ${errorMessage(error)}`);
    }
    if (result.done) throw new TypeError(`${CONTEXT}: ${what} is missing`);
    return result.value;
  };
  const header = next("the header");
  if (!isRecord(header)) throw new TypeError(`${CONTEXT}: expected a header object`);
  rejectUnknownFields(header, HEADER_FIELDS, CONTEXT);
  if (header.format !== SNAPSHOT_FORMAT) {
    throw new TypeError(`${CONTEXT}: unknown format ${JSON.stringify(header.format)}`);
  }
  const { appliedIndex, entries, chunks } = header;
  if (!isIndex(appliedIndex)) throw new TypeError(`${CONTEXT}: field "appliedIndex" is invalid`);
  if (!isIndex(entries) || !isIndex(chunks) || chunks !== Math.ceil(entries / ENTRIES_PER_CHUNK)) {
    throw new TypeError(`${CONTEXT}: fields "entries" and "chunks" are invalid`);
  }
  const table = new KeyValueTable();
  for (let chunkIndex = 0; chunkIndex < chunks; chunkIndex++) {
    readChunk(next(`chunk ${chunkIndex}`), { table, appliedIndex });
  }
  if (table.size !== entries) throw new TypeError(`${CONTEXT}: expected ${entries} entries`);
  const requests = readRequests(next("the request table"), appliedIndex);
  if (!values.next().done) throw new TypeError(`${CONTEXT}: unexpected data after the snapshot`);
  return { appliedIndex, table, requests };
}

function readChunk(
  chunk: unknown,
  into: { table: KeyValueTable; appliedIndex: number },
): void {
  const { table, appliedIndex } = into;
  if (!Array.isArray(chunk) || chunk.length === 0 || chunk.length % 3 !== 0) {
    throw new TypeError(`${CONTEXT}: chunk at entry ${table.size} is invalid`);
  }
  for (let i = 0; i < chunk.length; i += 3) {
    const [key, value, index] = [chunk[i], chunk[i + 1], chunk[i + 2]];
    if (
      typeof key !== "string" || key === "" || !fitsUtf8(key, KEY_BYTES_MAX) ||
      typeof value !== "string" || !fitsUtf8(value, VALUE_BYTES_MAX) || !isIndex(index) ||
      index === 0 || index > appliedIndex || table.has(key)
    ) {
      throw new TypeError(`${CONTEXT}: entry ${table.size} is invalid`);
    }
    table.set(key, value, index);
  }
}

function readRequests(value: unknown, appliedIndex: number): Map<string, ApplyResult> {
  if (!Array.isArray(value)) throw new TypeError(`${CONTEXT}: the request table is invalid`);
  const requests = new Map<string, ApplyResult>();
  for (const request of value) {
    if (
      !Array.isArray(request) || request.length !== 2 || typeof request[0] !== "string" ||
      request[0] === "" || !fitsUtf8(request[0], REQUEST_ID_BYTES_MAX) || requests.has(request[0])
    ) {
      throw new TypeError(`${CONTEXT}: request ${requests.size} is invalid`);
    }
    const result = parseApplyResult(request[1], appliedIndex);
    if (result === undefined) {
      throw new TypeError(`${CONTEXT}: result of request "${request[0]}" is invalid`);
    }
    requests.set(request[0], result);
  }
  return requests;
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
