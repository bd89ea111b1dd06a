import { fitsUtf8, isRecord, rejectUnknownFields, utf8ByteLength } from "./_validate.ts";
import {
  COMMAND_BYTES_MAX,
  KEY_BYTES_MAX,
  REQUEST_ID_BYTES_MAX,
  VALUE_BYTES_MAX,
} from "./limits.ts";

/** A write to the key-value map, as proposed to Raft and stored in log entries. */
export type Command =
  | { type: "set"; key: string; value: string; requestId?: string }
  | { type: "cas"; key: string; expected: string | null; value: string; requestId?: string }
  | { type: "delete"; key: string; requestId?: string };

const FIELDS: Record<Command["type"], readonly string[]> = {
  set: ["type", "key", "value", "requestId"],
  cas: ["type", "key", "expected", "value", "requestId"],
  delete: ["type", "key", "requestId"],
};

/*
 * The bytes of a command in a log entry (every node decodes every command, so the format is
 * small and direct rather than MessagePack):
 *
 *   byte 0      the type: 1 set, 2 cas, 3 delete
 *   byte 1      flags: 1 a request id follows, 2 (cas) an expected value follows
 *   then        key, expected (cas with flag 2), value (set, cas), request id (flag 1):
 *               each a 4-byte little-endian UTF-8 length and the UTF-8 bytes
 */
const TYPE_CODES = { set: 1, cas: 2, delete: 3 } as const;
const TYPES = [undefined, "set", "cas", "delete"] as const;
const HAS_REQUEST_ID = 1;
const HAS_EXPECTED = 2;
const LENGTH_BYTES = 4;

/**
 * Small commands are carved out of shared slabs: a Uint8Array with a buffer of its own costs
 * about 200 bytes of bookkeeping (ArrayBuffer, backing store, allocation) besides its ~120 bytes,
 * and a leader keeps every command until the next snapshot (150,000 of them at a million keys).
 * Entries leave the log in order, so a slab is freed soon after its last command is compacted.
 */
const SLAB_BYTES = 64 * 1024;
/** Larger commands get a buffer of their own, so a slab is not retired half empty. */
const SLAB_COMMAND_BYTES_MAX = 2 * 1024;
let slab = new Uint8Array(0);
let slabUsed = 0;

/** `bytes` fresh bytes (zeroed), from the current slab when they are few. */
function allocate(bytes: number): Uint8Array {
  if (bytes > SLAB_COMMAND_BYTES_MAX) return new Uint8Array(bytes);
  if (slabUsed + bytes > slab.byteLength) {
    slab = new Uint8Array(SLAB_BYTES);
    slabUsed = 0;
  }
  const taken = slab.subarray(slabUsed, slabUsed + bytes);
  slabUsed += bytes;
  return taken;
}

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * The bytes of `command`. Throws `TypeError` when it is malformed and `RangeError` when a key,
 * value or request id, or the whole command, is over its limit. Equal commands give equal bytes.
 */
export function encodeCommand(command: Command): Uint8Array {
  const valid = parseCommand(command, { context: "Cannot encode command", sizeError: RangeError });
  const texts = [valid.key];
  let flags = 0;
  if (valid.type === "cas" && valid.expected !== null) {
    texts.push(valid.expected);
    flags |= HAS_EXPECTED;
  }
  if (valid.type !== "delete") texts.push(valid.value);
  if (valid.requestId !== undefined) {
    texts.push(valid.requestId);
    flags |= HAS_REQUEST_ID;
  }
  const lengths = texts.map(utf8ByteLength);
  const total = lengths.reduce((sum, length) => sum + LENGTH_BYTES + length, 2);
  if (total > COMMAND_BYTES_MAX) {
    throw new RangeError(
      `Cannot encode command: it takes ${total} bytes, more than ${COMMAND_BYTES_MAX}`,
    );
  }
  const bytes = allocate(total);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  bytes[0] = TYPE_CODES[valid.type];
  bytes[1] = flags;
  let offset = 2;
  texts.forEach((text, i) => {
    view.setUint32(offset, lengths[i], true);
    offset += LENGTH_BYTES;
    offset += utf8Encoder.encodeInto(text, bytes.subarray(offset)).written;
  });
  return bytes;
}

/** The command in `bytes`. Throws `TypeError` with the reason if they are not a valid command. */
export function decodeCommand(bytes: Uint8Array): Command {
  const context = "Cannot decode command";
  if (!(bytes instanceof Uint8Array)) throw new TypeError(`${context}: expected bytes`);
  if (bytes.length > COMMAND_BYTES_MAX) {
    throw new TypeError(`${context}: ${bytes.length} bytes is more than ${COMMAND_BYTES_MAX}`);
  }
  if (bytes.length < 2) throw new TypeError(`${context}: ${bytes.length} bytes is too short`);
  const type = TYPES[bytes[0]];
  if (type === undefined) throw new TypeError(`${context}: unknown type code ${bytes[0]}`);
  const flags = bytes[1];
  const allowed = HAS_REQUEST_ID | (type === "cas" ? HAS_EXPECTED : 0);
  if ((flags & ~allowed) !== 0) throw new TypeError(`${context}: unknown flags ${flags}`);
  const reader = new TextReader(bytes, context);
  const key = reader.text("key", KEY_BYTES_MAX);
  if (key === "") throw new TypeError(`${context}: field "key" is empty`);
  const expected = flags & HAS_EXPECTED ? reader.text("expected", VALUE_BYTES_MAX) : null;
  const value = type === "delete" ? "" : reader.text("value", VALUE_BYTES_MAX);
  const requestId = flags & HAS_REQUEST_ID
    ? reader.text("requestId", REQUEST_ID_BYTES_MAX)
    : undefined;
  if (requestId === "") throw new TypeError(`${context}: field "requestId" is empty`);
  reader.end();
  const withId = requestId === undefined ? {} : { requestId };
  switch (type) {
    case "set":
      return { type, key, value, ...withId };
    case "cas":
      return { type, key, expected, value, ...withId };
    case "delete":
      return { type, key, ...withId };
  }
}

/** Reads length-prefixed UTF-8 fields, checking each against the bytes left and its limit. */
class TextReader {
  #bytes: Uint8Array;
  #view: DataView;
  #offset = 2;
  #context: string;

  constructor(bytes: Uint8Array, context: string) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.#context = context;
  }

  text(field: string, bytesMax: number): string {
    if (this.#offset + LENGTH_BYTES > this.#bytes.length) {
      throw new TypeError(`${this.#context}: field "${field}" is missing`);
    }
    const length = this.#view.getUint32(this.#offset, true);
    this.#offset += LENGTH_BYTES;
    if (length > bytesMax) {
      throw new TypeError(`${this.#context}: field "${field}" is longer than ${bytesMax} bytes`);
    }
    if (this.#offset + length > this.#bytes.length) {
      throw new TypeError(`${this.#context}: field "${field}" runs past the end`);
    }
    const start = this.#offset;
    this.#offset += length;
    try {
      return utf8Decoder.decode(this.#bytes.subarray(start, this.#offset));
    } catch {
      throw new TypeError(`${this.#context}: field "${field}" is not valid UTF-8`);
    }
  }

  end(): void {
    if (this.#offset !== this.#bytes.length) {
      throw new TypeError(
        `${this.#context}: ${this.#bytes.length - this.#offset} bytes after the last field`,
      );
    }
  }
}

interface ParseOptions {
  context: string;
  sizeError: typeof TypeError | typeof RangeError;
}

/** Checks every field of an untrusted command and returns a fresh copy of it. */
function parseCommand(value: unknown, options: ParseOptions): Command {
  const { context } = options;
  if (!isRecord(value)) throw new TypeError(`${context}: expected an object`);
  const type = value.type;
  if (type !== "set" && type !== "cas" && type !== "delete") {
    const shown = typeof type === "string" ? `"${type}"` : typeof type;
    throw new TypeError(`${context}: field "type" must be "set", "cas" or "delete", got ${shown}`);
  }
  rejectUnknownFields(value, FIELDS[type], context);
  const key = parseText(value, "key", KEY_BYTES_MAX, options);
  if (key.length === 0) throw new TypeError(`${context}: field "key" is empty`);
  const requestId = value.requestId === undefined
    ? undefined
    : parseText(value, "requestId", REQUEST_ID_BYTES_MAX, options);
  if (requestId === "") throw new TypeError(`${context}: field "requestId" is empty`);
  const withId = requestId === undefined ? {} : { requestId };
  switch (type) {
    case "set":
      return { type, key, value: parseText(value, "value", VALUE_BYTES_MAX, options), ...withId };
    case "cas": {
      if (!("expected" in value)) throw new TypeError(`${context}: field "expected" is missing`);
      const expected = value.expected === null
        ? null
        : parseText(value, "expected", VALUE_BYTES_MAX, options);
      const newValue = parseText(value, "value", VALUE_BYTES_MAX, options);
      return { type, key, expected, value: newValue, ...withId };
    }
    case "delete":
      return { type, key, ...withId };
  }
}

function parseText(
  record: Record<string, unknown>,
  field: string,
  bytesMax: number,
  options: ParseOptions,
): string {
  const text = record[field];
  if (text === undefined) throw new TypeError(`${options.context}: field "${field}" is missing`);
  if (typeof text !== "string") {
    throw new TypeError(`${options.context}: field "${field}" must be a string`);
  }
  if (!text.isWellFormed()) {
    throw new TypeError(`${options.context}: field "${field}" is not valid Unicode`);
  }
  if (!fitsUtf8(text, bytesMax)) {
    throw new options.sizeError(
      `${options.context}: field "${field}" is longer than ${bytesMax} bytes`,
    );
  }
  return text;
}
