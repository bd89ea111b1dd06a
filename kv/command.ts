import { decode, encode } from "./_msgpack.ts";
import { errorMessage, fitsUtf8, isRecord, rejectUnknownFields } from "./_validate.ts";
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

/**
 * MessagePack bytes of `command`. Throws `TypeError` when it is malformed and `RangeError` when
 * a key, value or request id, or the whole command, is over its limit.
 */
export function encodeCommand(command: Command): Uint8Array {
  const valid = parseCommand(command, { context: "Cannot encode command", sizeError: RangeError });
  // A fixed field order makes equal commands encode to equal bytes.
  const record: Record<string, unknown> = { type: valid.type, key: valid.key };
  if (valid.type === "cas") record.expected = valid.expected;
  if (valid.type !== "delete") record.value = valid.value;
  if (valid.requestId !== undefined) record.requestId = valid.requestId;
  const bytes = encode(record);
  if (bytes.length > COMMAND_BYTES_MAX) {
    throw new RangeError(
      `Cannot encode command: it takes ${bytes.length} bytes, more than ${COMMAND_BYTES_MAX}`,
    );
  }
  return bytes;
}

/** The command in `bytes`. Throws `TypeError` with the reason if they are not a valid command. */
export function decodeCommand(bytes: Uint8Array): Command {
  const context = "Cannot decode command";
  if (!(bytes instanceof Uint8Array)) throw new TypeError(`${context}: expected bytes`);
  if (bytes.length > COMMAND_BYTES_MAX) {
    throw new TypeError(`${context}: ${bytes.length} bytes is more than ${COMMAND_BYTES_MAX}`);
  }
  let value: unknown;
  try {
    value = decode(bytes);
  } catch (error) {
    throw new TypeError(`${context}: invalid MessagePack: ${errorMessage(error)}`);
  }
  return parseCommand(value, { context, sizeError: TypeError });
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
