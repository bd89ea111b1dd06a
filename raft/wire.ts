/**
 * Raft messages on the wire: MessagePack in, MessagePack out. `parseMessages` is the one gateway
 * for peer bytes: it rebuilds every message field by field from an `unknown` value, so nothing a
 * peer sends reaches the core unless it has exactly the shape raft/types.ts declares.
 */
import { Decoder, Encoder } from "@msgpack/msgpack";
import { APPEND_ENTRIES_MAX } from "./limits.ts";
import type {
  ConfChange,
  ConfState,
  Entry,
  Index,
  Member,
  Message,
  NodeId,
  Snapshot,
  SnapshotMetadata,
  Term,
} from "./types.ts";

/** Messages in one request: far above what one driver turn produces for one peer. */
export const WIRE_MESSAGES_MAX = 10_000;
/** Characters of a node id. */
export const WIRE_ID_CHARS_MAX = 256;
/** Characters of a member URL. */
export const WIRE_URL_CHARS_MAX = 2_048;
/** Members in one snapshot's configuration. */
export const WIRE_MEMBERS_MAX = 1_024;
/** Bytes of one snapshot's data, the size of the largest request /raft/snapshot accepts. */
export const WIRE_SNAPSHOT_BYTES_MAX = 1024 * 1024 * 1024;

/** Fields of the largest record we decode (appendEntries) with room for unknown ones. */
const WIRE_MAP_FIELDS_MAX = 64;
/** Strings that are not ids or URLs are unknown fields; they still get a bound. */
const WIRE_STRING_CHARS_MAX = 64 * 1024;
/** Encoder head room per message beyond its payload bytes, so the buffer rarely grows. */
const ENCODE_OVERHEAD_BYTES = 256;

// The decoder refuses oversized strings, arrays and maps from their headers, before it allocates:
// a 5-byte header claiming four billion elements costs nothing.
const decoder = new Decoder({
  maxStrLength: WIRE_STRING_CHARS_MAX,
  maxBinLength: WIRE_SNAPSHOT_BYTES_MAX,
  maxArrayLength: WIRE_MESSAGES_MAX,
  maxMapLength: WIRE_MAP_FIELDS_MAX,
  maxExtLength: 0,
});

type WireRecord = Record<string, unknown>;

/** Names what is being decoded ("raft message", "raft message 3") in every error. */
class Gate {
  /** `position`: the message's place in a batch, or undefined for a lone message. */
  constructor(readonly position?: number) {}

  get subject(): string {
    return this.position === undefined ? "raft message" : `raft message ${this.position}`;
  }

  fail(field: string, problem: string): never {
    throw new TypeError(`Cannot decode ${this.subject}: field "${field}" ${problem}`);
  }

  record(value: unknown, field: string): WireRecord {
    if (!isRecord(value)) this.fail(field, "is not a map");
    return value;
  }

  count(record: WireRecord, key: string, field = key): number {
    const value = record[key];
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
      this.fail(field, "is not a non-negative integer");
    }
    return value;
  }

  flag(record: WireRecord, key: string, field = key): boolean {
    const value = record[key];
    if (typeof value !== "boolean") this.fail(field, "is not a boolean");
    return value;
  }

  text(record: WireRecord, key: string, charsMax: number, field = key): string {
    const value = record[key];
    if (typeof value !== "string" || value.length === 0) {
      this.fail(field, "is not a non-empty string");
    }
    if (value.length > charsMax) this.fail(field, `is longer than ${charsMax} characters`);
    return value;
  }

  nodeId(record: WireRecord, key: string, field = key): NodeId {
    return this.text(record, key, WIRE_ID_CHARS_MAX, field);
  }

  url(record: WireRecord, key: string, field = key): string {
    const value = this.text(record, key, WIRE_URL_CHARS_MAX, field);
    if (!URL.canParse(value)) this.fail(field, `is not a URL: "${value}"`);
    return value;
  }

  bytes(record: WireRecord, key: string, field = key): Uint8Array {
    const value = record[key];
    if (!(value instanceof Uint8Array)) this.fail(field, "is not binary data");
    return value;
  }

  array(record: WireRecord, key: string, itemsMax: number, field = key): unknown[] {
    const value = record[key];
    if (!Array.isArray(value)) this.fail(field, "is not an array");
    if (value.length > itemsMax) this.fail(field, `has more than ${itemsMax} items`);
    return value;
  }
}

function isRecord(value: unknown): value is WireRecord {
  return typeof value === "object" && value !== null && !Array.isArray(value) &&
    !(value instanceof Uint8Array);
}

/** Decodes MessagePack, turning every failure of the decoder into a TypeError. */
function decodeValue(bytes: Uint8Array, subject: string): unknown {
  if (!(bytes instanceof Uint8Array)) {
    throw new TypeError(`Cannot decode ${subject}: input is not a Uint8Array`);
  }
  try {
    return decoder.decode(bytes);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new TypeError(`Cannot decode ${subject}: invalid MessagePack: ${reason}`);
  }
}

function parseConfChange(gate: Gate, value: unknown, field: string): ConfChange {
  const record = gate.record(value, field);
  const type = record.type;
  switch (type) {
    case "addVoter":
    case "addLearner":
      return {
        type,
        id: gate.nodeId(record, "id", `${field}.id`),
        url: gate.url(record, "url", `${field}.url`),
      };
    case "promote":
    case "remove":
      return { type, id: gate.nodeId(record, "id", `${field}.id`) };
    default:
      return gate.fail(`${field}.type`, `is not a configuration change type: ${describe(type)}`);
  }
}

function parseEntry(gate: Gate, value: unknown, field: string): Entry {
  const record = gate.record(value, field);
  const type = record.type;
  const index = gate.count(record, "index", `${field}.index`);
  const term = gate.count(record, "term", `${field}.term`);
  switch (type) {
    case "command":
      // A copy, so a long-lived log entry does not pin the whole request body in memory.
      return { type, index, term, data: gate.bytes(record, "data", `${field}.data`).slice() };
    case "noop":
      return { type, index, term };
    case "config":
      return { type, index, term, change: parseConfChange(gate, record.change, `${field}.change`) };
    default:
      return gate.fail(`${field}.type`, `is not an entry type: ${describe(type)}`);
  }
}

/**
 * Entries of one AppendEntries, checked against what any leader sends (Raft paper §5.3): they
 * follow prevLogIndex without gaps, and their terms never decrease nor pass the leader's term.
 * A hostile message that breaks this is refused here rather than tripping an assertion deeper.
 */
function parseEntries(
  gate: Gate,
  record: WireRecord,
  message: { term: Term; prevLogIndex: Index; prevLogTerm: Term },
): Entry[] {
  const items = gate.array(record, "entries", APPEND_ENTRIES_MAX);
  const entries: Entry[] = [];
  let previousTerm = message.prevLogTerm;
  for (let i = 0; i < items.length; i++) {
    const field = `entries[${i}]`;
    const entry = parseEntry(gate, items[i], field);
    if (entry.index !== message.prevLogIndex + 1 + i) {
      gate.fail(`${field}.index`, `is ${entry.index}, expected ${message.prevLogIndex + 1 + i}`);
    }
    if (entry.term < previousTerm || entry.term > message.term) {
      gate.fail(`${field}.term`, `is ${entry.term}, outside [${previousTerm}, ${message.term}]`);
    }
    previousTerm = entry.term;
    entries.push(entry);
  }
  return entries;
}

function parseConfState(gate: Gate, value: unknown, field: string): ConfState {
  const record = gate.record(value, field);
  const items = gate.array(record, "members", WIRE_MEMBERS_MAX, `${field}.members`);
  const members: Member[] = [];
  const seen = new Set<NodeId>();
  for (let i = 0; i < items.length; i++) {
    const memberField = `${field}.members[${i}]`;
    const member = gate.record(items[i], memberField);
    const id = gate.nodeId(member, "id", `${memberField}.id`);
    if (seen.has(id)) gate.fail(`${memberField}.id`, `repeats member "${id}"`);
    seen.add(id);
    members.push({
      id,
      url: gate.url(member, "url", `${memberField}.url`),
      voter: gate.flag(member, "voter", `${memberField}.voter`),
    });
  }
  return { members };
}

function parseSnapshot(gate: Gate, value: unknown): Snapshot {
  const record = gate.record(value, "snapshot");
  const meta = gate.record(record.metadata, "snapshot.metadata");
  const metadata: SnapshotMetadata = {
    index: gate.count(meta, "index", "snapshot.metadata.index"),
    term: gate.count(meta, "term", "snapshot.metadata.term"),
    confState: parseConfState(gate, meta.confState, "snapshot.metadata.confState"),
  };
  return { metadata, data: gate.bytes(record, "data", "snapshot.data") };
}

function parseMessageValue(gate: Gate, value: unknown): Message {
  const record = gate.record(value, "message");
  const type = record.type;
  if (typeof type !== "string") gate.fail("type", "is not a string");
  const base = {
    from: gate.nodeId(record, "from"),
    to: gate.nodeId(record, "to"),
    term: gate.count(record, "term"),
  };
  switch (type) {
    case "vote":
      return {
        ...base,
        type,
        pre: gate.flag(record, "pre"),
        lastLogIndex: gate.count(record, "lastLogIndex"),
        lastLogTerm: gate.count(record, "lastLogTerm"),
        transfer: gate.flag(record, "transfer"),
      };
    case "voteResponse":
      return {
        ...base,
        type,
        pre: gate.flag(record, "pre"),
        granted: gate.flag(record, "granted"),
      };
    case "appendEntries": {
      const prevLogIndex = gate.count(record, "prevLogIndex");
      const prevLogTerm = gate.count(record, "prevLogTerm");
      const leaderCommit = gate.count(record, "leaderCommit");
      const entries = parseEntries(gate, record, { term: base.term, prevLogIndex, prevLogTerm });
      return { ...base, type, prevLogIndex, prevLogTerm, entries, leaderCommit };
    }
    case "appendEntriesResponse":
      return {
        ...base,
        type,
        success: gate.flag(record, "success"),
        matchIndex: gate.count(record, "matchIndex"),
        hintIndex: gate.count(record, "hintIndex"),
        hintTerm: gate.count(record, "hintTerm"),
      };
    case "heartbeat":
      return {
        ...base,
        type,
        commit: gate.count(record, "commit"),
        readRound: gate.count(record, "readRound"),
      };
    case "heartbeatResponse":
      return { ...base, type, readRound: gate.count(record, "readRound") };
    case "installSnapshot":
      return { ...base, type, snapshot: parseSnapshot(gate, record.snapshot) };
    case "timeoutNow":
      return { ...base, type };
    default:
      return gate.fail("type", `is not a message type: "${type.slice(0, 64)}"`);
  }
}

function describe(value: unknown): string {
  if (typeof value === "string") return `"${value.slice(0, 64)}"`;
  if (value === null || value === undefined) return String(value);
  if (typeof value === "object") return Array.isArray(value) ? "an array" : "an object";
  return `a ${typeof value}`;
}

/**
 * Bytes one message takes once encoded, about (an upper estimate for small fields): encoders
 * size their buffer once from it and transports bound their queues by it.
 */
export function estimateMessageBytes(message: Message): number {
  switch (message.type) {
    case "appendEntries": {
      let bytes = ENCODE_OVERHEAD_BYTES;
      for (const entry of message.entries) {
        bytes += ENCODE_OVERHEAD_BYTES + (entry.type === "command" ? entry.data.byteLength : 0);
      }
      return bytes;
    }
    case "installSnapshot":
      return ENCODE_OVERHEAD_BYTES * (2 + message.snapshot.metadata.confState.members.length) +
        message.snapshot.data.byteLength;
    default:
      return ENCODE_OVERHEAD_BYTES;
  }
}

function encodeValue(value: unknown, estimatedBytes: number): Uint8Array<ArrayBuffer> {
  // A fresh encoder sized for the payload: its buffer is never copied nor shared, so the
  // shared reference it returns is ours alone (a 1 GiB snapshot is not held twice).
  const encoder = new Encoder({ initialBufferSize: Math.max(estimatedBytes, 1024) });
  return encoder.encodeSharedRef(value);
}

/** Bytes of `message` on the wire, as `parseMessage` reads them back. */
export function encodeMessage(message: Message): Uint8Array<ArrayBuffer> {
  return encodeValue(message, estimateMessageBytes(message));
}

/** Bytes of `messages` on the wire (one MessagePack array), as `parseMessages` reads them back. */
export function encodeMessages(messages: Message[]): Uint8Array<ArrayBuffer> {
  let estimatedBytes = 16;
  for (const message of messages) estimatedBytes += estimateMessageBytes(message);
  return encodeValue(messages, estimatedBytes);
}

/** The one message in `bytes`, validated field by field. Throws TypeError on anything else. */
export function parseMessage(bytes: Uint8Array): Message {
  const gate = new Gate();
  return parseMessageValue(gate, decodeValue(bytes, gate.subject));
}

/**
 * The messages in `bytes` (one MessagePack array of at most WIRE_MESSAGES_MAX messages), each
 * validated field by field; unknown fields are left out. Throws TypeError on anything else.
 */
export function parseMessages(bytes: Uint8Array): Message[] {
  const value = decodeValue(bytes, "raft messages");
  if (!Array.isArray(value)) {
    throw new TypeError(`Cannot decode raft messages: expected an array, got ${describe(value)}`);
  }
  if (value.length > WIRE_MESSAGES_MAX) {
    throw new TypeError(`Cannot decode raft messages: more than ${WIRE_MESSAGES_MAX} messages`);
  }
  const messages: Message[] = [];
  for (let i = 0; i < value.length; i++) {
    messages.push(parseMessageValue(new Gate(i), value[i]));
  }
  return messages;
}
