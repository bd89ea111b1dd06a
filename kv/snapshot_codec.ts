/**
 * The state machine's snapshot image, written and read in chunks: a header, then arrays of up
 * to ENTRIES_PER_CHUNK keys, then the idempotency table, as consecutive MessagePack values in
 * one buffer. With a million keys, encoding or decoding one giant array of small arrays would
 * double the memory of the map for a moment; chunks keep that overhead small.
 */
import { decodeMulti, Encoder } from "@msgpack/msgpack";
import { errorMessage, fitsUtf8, isIndex, isRecord, rejectUnknownFields } from "./_validate.ts";
import { KEY_BYTES_MAX, REQUEST_ID_BYTES_MAX, VALUE_BYTES_MAX } from "./limits.ts";
import type { ApplyResult } from "./state_machine.ts";

export interface StoredValue {
  value: string;
  index: number;
}

export interface SnapshotContent {
  appliedIndex: number;
  map: Map<string, StoredValue>;
  requests: Map<string, ApplyResult>;
}

const SNAPSHOT_FORMAT = 2;
const HEADER_FIELDS = ["format", "appliedIndex", "entries", "chunks"];
/** Keys per chunk: each is a flat array [key, value, index, key, value, index, ...]. */
const ENTRIES_PER_CHUNK = 4096;
const CONTEXT = "Cannot restore key-value snapshot";

/** A growable byte buffer that starts at the expected size. */
class Output {
  #bytes: Uint8Array<ArrayBuffer>;
  #length = 0;

  constructor(expectedBytes: number) {
    this.#bytes = new Uint8Array(Math.max(1024, expectedBytes));
  }

  push(chunk: Uint8Array): void {
    if (this.#length + chunk.byteLength > this.#bytes.byteLength) {
      const grown = new Uint8Array(
        Math.max(2 * this.#bytes.byteLength, this.#length + chunk.byteLength),
      );
      grown.set(this.#bytes.subarray(0, this.#length));
      this.#bytes = grown;
    }
    this.#bytes.set(chunk, this.#length);
    this.#length += chunk.byteLength;
  }

  bytes(): Uint8Array {
    return this.#bytes.subarray(0, this.#length);
  }
}

export function encodeSnapshot(content: SnapshotContent): Uint8Array {
  const encoder = new Encoder();
  let expectedBytes = 64;
  for (const [key, stored] of content.map) expectedBytes += key.length + stored.value.length + 16;
  const output = new Output(Math.ceil(expectedBytes * 1.05));
  const chunks = Math.ceil(content.map.size / ENTRIES_PER_CHUNK);
  output.push(encoder.encodeSharedRef({
    format: SNAPSHOT_FORMAT,
    appliedIndex: content.appliedIndex,
    entries: content.map.size,
    chunks,
  }));
  let chunk: (string | number)[] = [];
  for (const [key, stored] of content.map) {
    chunk.push(key, stored.value, stored.index);
    if (chunk.length === 3 * ENTRIES_PER_CHUNK) {
      output.push(encoder.encodeSharedRef(chunk));
      chunk = [];
    }
  }
  if (chunk.length > 0) output.push(encoder.encodeSharedRef(chunk));
  output.push(encoder.encodeSharedRef([...content.requests]));
  return output.bytes();
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
  const map = new Map<string, StoredValue>();
  for (let chunkIndex = 0; chunkIndex < chunks; chunkIndex++) {
    readChunk(next(`chunk ${chunkIndex}`), { map, appliedIndex });
  }
  if (map.size !== entries) throw new TypeError(`${CONTEXT}: expected ${entries} entries`);
  const requests = readRequests(next("the request table"), appliedIndex);
  if (!values.next().done) throw new TypeError(`${CONTEXT}: unexpected data after the snapshot`);
  return { appliedIndex, map, requests };
}

function readChunk(
  chunk: unknown,
  into: { map: Map<string, StoredValue>; appliedIndex: number },
): void {
  const { map, appliedIndex } = into;
  if (!Array.isArray(chunk) || chunk.length === 0 || chunk.length % 3 !== 0) {
    throw new TypeError(`${CONTEXT}: chunk at entry ${map.size} is invalid`);
  }
  for (let i = 0; i < chunk.length; i += 3) {
    const [key, value, index] = [chunk[i], chunk[i + 1], chunk[i + 2]];
    if (
      typeof key !== "string" || key === "" || !fitsUtf8(key, KEY_BYTES_MAX) ||
      typeof value !== "string" || !fitsUtf8(value, VALUE_BYTES_MAX) || !isIndex(index) ||
      index === 0 || index > appliedIndex || map.has(key)
    ) {
      throw new TypeError(`${CONTEXT}: entry ${map.size} is invalid`);
    }
    map.set(key, { value, index });
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
