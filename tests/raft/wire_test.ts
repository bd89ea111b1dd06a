import assert from "node:assert/strict";
import { encode } from "@msgpack/msgpack";
import { XorShiftPrng } from "../../raft/clock.ts";
import { APPEND_ENTRIES_MAX } from "../../raft/limits.ts";
import type { Message } from "../../raft/types.ts";
import {
  encodeMessage,
  encodeMessages,
  parseMessage,
  parseMessages,
  WIRE_ID_CHARS_MAX,
  WIRE_MESSAGES_MAX,
} from "../../raft/wire.ts";

const base = { from: "n1", to: "n2", term: 7 };

/** One message of every type, every Entry and ConfChange variant among them. */
const SAMPLES: Message[] = [
  { ...base, type: "vote", pre: true, lastLogIndex: 12, lastLogTerm: 6, transfer: false },
  { ...base, type: "voteResponse", pre: false, granted: true },
  {
    ...base,
    type: "appendEntries",
    prevLogIndex: 10,
    prevLogTerm: 5,
    leaderCommit: 9,
    entries: [
      { type: "command", index: 11, term: 5, data: new Uint8Array([1, 2, 3]) },
      { type: "noop", index: 12, term: 7 },
      {
        type: "config",
        index: 13,
        term: 7,
        change: { type: "addVoter", id: "n4", url: "http://a:1" },
      },
      {
        type: "config",
        index: 14,
        term: 7,
        change: { type: "addLearner", id: "n5", url: "http://b:2" },
      },
      { type: "config", index: 15, term: 7, change: { type: "promote", id: "n5" } },
      { type: "config", index: 16, term: 7, change: { type: "remove", id: "n4" } },
      { type: "command", index: 17, term: 7, data: new Uint8Array() },
    ],
  },
  { ...base, type: "appendEntries", prevLogIndex: 0, prevLogTerm: 0, leaderCommit: 0, entries: [] },
  {
    ...base,
    type: "appendEntriesResponse",
    success: false,
    matchIndex: 10,
    hintIndex: 4,
    hintTerm: 3,
  },
  { ...base, type: "heartbeat", commit: 9, readRound: 3 },
  { ...base, type: "heartbeatResponse", readRound: 3 },
  {
    ...base,
    type: "installSnapshot",
    snapshot: {
      metadata: {
        index: 100,
        term: 6,
        confState: {
          members: [
            { id: "n1", url: "http://127.0.0.1:4001", voter: true },
            { id: "n2", url: "http://127.0.0.1:4002", voter: false },
          ],
        },
      },
      data: new Uint8Array([9, 8, 7, 6]),
    },
  },
  { ...base, type: "timeoutNow" },
];

/** A plain, mutable copy of a message as it travels (Uint8Array kept as is). */
function plain(message: Message): Record<string, unknown> {
  return structuredClone(message) as unknown as Record<string, unknown>;
}

function assertRejects(value: unknown, field: string): void {
  assert.throws(() => parseMessage(encode(value)), (error: unknown) => {
    assert(error instanceof TypeError, `expected a TypeError, got ${error}`);
    assert.match(error.message, /^Cannot decode raft message: field "/);
    assert(error.message.includes(`field "${field}"`), `${error.message} should name ${field}`);
    return true;
  });
}

/** Paths of every leaf field of a value, e.g. "snapshot.metadata.confState.members[0].id". */
function leafPaths(value: unknown, prefix = ""): string[] {
  if (value instanceof Uint8Array || typeof value !== "object" || value === null) return [prefix];
  if (Array.isArray(value)) {
    return value.flatMap((item, i) => leafPaths(item, `${prefix}[${i}]`));
  }
  return Object.entries(value).flatMap(([key, item]) =>
    leafPaths(item, prefix === "" ? key : `${prefix}.${key}`)
  );
}

function setPath(root: Record<string, unknown>, path: string, replacement: unknown): void {
  const keys = path.replace(/\[(\d+)\]/g, ".$1").split(".");
  let node = root as Record<string, unknown>;
  for (const key of keys.slice(0, -1)) node = node[key] as Record<string, unknown>;
  const last = keys[keys.length - 1];
  if (replacement === undefined) delete node[last];
  else node[last] = replacement;
}

Deno.test("parseMessage() reads back every message type encodeMessage() wrote", () => {
  for (const message of SAMPLES) {
    assert.deepStrictEqual(parseMessage(encodeMessage(message)), message);
  }
});

Deno.test("parseMessages() reads back a batch encodeMessages() wrote, in order", () => {
  assert.deepStrictEqual(parseMessages(encodeMessages(SAMPLES)), SAMPLES);
  assert.deepStrictEqual(parseMessages(encodeMessages([])), []);
});

Deno.test("parseMessage() rejects each missing field, naming it", () => {
  for (const message of SAMPLES) {
    for (const path of leafPaths(message)) {
      const value = plain(message);
      setPath(value, path, undefined);
      assertRejects(value, path);
    }
  }
});

Deno.test("parseMessage() rejects each field of the wrong type, naming it", () => {
  for (const message of SAMPLES) {
    for (const path of leafPaths(message)) {
      for (const wrong of [null, "7", 1.5, -1, [], { a: 1 }, true, 2 ** 53]) {
        const original = path.split(/[.[\]]+/).filter(Boolean)
          .reduce<unknown>((node, key) => (node as Record<string, unknown>)[key], message);
        // An id may well be "7", and a flag true: only other types are wrong for them.
        const free = !path.endsWith("type") && !path.endsWith("url");
        if (typeof original === typeof wrong && (typeof wrong === "boolean" || free)) continue;
        const value = plain(message);
        setPath(value, path, wrong);
        assert.throws(() => parseMessage(encode(value)), TypeError, `${message.type} ${path}`);
      }
    }
  }
});

Deno.test("parseMessage() leaves out unknown fields", () => {
  const value = { ...plain(SAMPLES[1]), extra: "x", 5: [1, 2] };
  assert.deepStrictEqual(parseMessage(encode(value)), SAMPLES[1]);
});

Deno.test("parseMessage() rejects an unknown message type and an unknown entry type", () => {
  assertRejects({ ...base, type: "gossip" }, "type");
  assertRejects({ ...base, type: 3 }, "type");
  const append = plain(SAMPLES[2]);
  (append.entries as Record<string, unknown>[])[0].type = "blob";
  assertRejects(append, "entries[0].type");
  (append.entries as Record<string, unknown>[])[0] = {
    type: "config",
    index: 11,
    term: 5,
    change: { type: "rename", id: "n1" },
  };
  assertRejects(append, "entries[0].change.type");
});

Deno.test("parseMessage() bounds ids and refuses empty ones", () => {
  assertRejects({ ...base, type: "timeoutNow", from: "" }, "from");
  assertRejects({ ...base, type: "timeoutNow", to: "x".repeat(WIRE_ID_CHARS_MAX + 1) }, "to");
  const ok = { ...base, type: "timeoutNow", from: "x".repeat(WIRE_ID_CHARS_MAX) };
  assert.equal(parseMessage(encode(ok)).from.length, WIRE_ID_CHARS_MAX);
});

Deno.test("parseMessage() rejects entries that do not follow prevLogIndex or regress in term", () => {
  const entry = (index: number, term: number) => ({ type: "noop", index, term });
  const append = {
    ...base,
    type: "appendEntries",
    prevLogIndex: 4,
    prevLogTerm: 2,
    leaderCommit: 0,
  };
  assertRejects({ ...append, entries: [entry(6, 2)] }, "entries[0].index");
  assertRejects({ ...append, entries: [entry(5, 3), entry(5, 3)] }, "entries[1].index");
  assertRejects({ ...append, entries: [entry(5, 1)] }, "entries[0].term");
  assertRejects({ ...append, entries: [entry(5, 3), entry(6, 2)] }, "entries[1].term");
  assertRejects({ ...append, entries: [entry(5, 8)] }, "entries[0].term");
});

Deno.test("parseMessage() bounds the entries of one AppendEntries", () => {
  const entries = Array.from(
    { length: APPEND_ENTRIES_MAX + 1 },
    (_, i) => ({ type: "noop", index: i + 1, term: 1 }),
  );
  const append = {
    ...base,
    type: "appendEntries",
    prevLogIndex: 0,
    prevLogTerm: 0,
    leaderCommit: 0,
  };
  assertRejects({ ...append, entries }, "entries");
  assert.equal(
    (parseMessage(
      encode({ ...append, entries: entries.slice(1).map((e, i) => ({ ...e, index: i + 1 })) }),
    ) as {
      entries: unknown[];
    }).entries.length,
    APPEND_ENTRIES_MAX,
  );
});

Deno.test("parseMessage() rejects repeated members and a member URL that is not a URL", () => {
  const snapshot = plain(SAMPLES[7]);
  const members = (snapshot.snapshot as { metadata: { confState: { members: unknown[] } } })
    .metadata.confState.members as Record<string, unknown>[];
  members[1].url = "not a url";
  assertRejects(snapshot, "snapshot.metadata.confState.members[1].url");
  members[1] = { ...members[0] };
  assertRejects(snapshot, "snapshot.metadata.confState.members[1].id");
});

Deno.test("parseMessages() rejects a non-array and more than WIRE_MESSAGES_MAX messages", () => {
  assert.throws(() => parseMessages(encode(plain(SAMPLES[0]))), TypeError);
  const many = new Array(WIRE_MESSAGES_MAX + 1).fill(plain(SAMPLES[6]));
  assert.throws(() => parseMessages(encode(many)), TypeError);
  assert.equal(parseMessages(encode(many.slice(1))).length, WIRE_MESSAGES_MAX);
});

Deno.test("parseMessages() names the message at fault", () => {
  const batch = [plain(SAMPLES[0]), { ...plain(SAMPLES[1]), granted: "yes" }];
  assert.throws(
    () => parseMessages(encode(batch)),
    new TypeError('Cannot decode raft message 1: field "granted" is not a boolean'),
  );
});

Deno.test("parseMessage() answers hostile encodings with a TypeError", () => {
  const cases: Uint8Array[] = [
    new Uint8Array(),
    new Uint8Array([0xc1]), // never used
    new Uint8Array([0xdd, 0xff, 0xff, 0xff, 0xff]), // array of 4 billion items
    new Uint8Array([0xdf, 0xff, 0xff, 0xff, 0xff]), // map of 4 billion pairs
    new Uint8Array([0xc6, 0x7f, 0xff, 0xff, 0xff]), // 2 GiB of binary data
    new Uint8Array([0xd6, 0xff, 0, 0, 0, 0]), // a timestamp extension
    new Uint8Array([0x81, 0xa9, ...new TextEncoder().encode("__proto__"), 0x80]),
    new Uint8Array([0x81, 0x80, 0x01]), // a map as a map key
    encode({ ...base, type: "timeoutNow" }).subarray(1), // truncated
    new Uint8Array([...encode({ ...base, type: "timeoutNow" }), 0x00]), // trailing byte
  ];
  for (const bytes of cases) assert.throws(() => parseMessage(bytes), TypeError);
  assert.throws(() => parseMessage("text" as unknown as Uint8Array), TypeError);
});

/** Parses `bytes`; anything but success or a TypeError fails the test. */
function parseOrTypeError(bytes: Uint8Array, parse: (bytes: Uint8Array) => unknown): void {
  let parsed: unknown;
  try {
    parsed = parse(bytes);
  } catch (error) {
    if (error instanceof TypeError) return;
    throw new Error(`Non-TypeError for bytes [${bytes.join(",")}]: ${error}`);
  }
  // What passes the gate must survive another trip unchanged.
  const again = Array.isArray(parsed) ? encodeMessages(parsed) : encodeMessage(parsed as Message);
  assert.deepStrictEqual(parse(again), parsed);
}

const seed = Number(Deno.env.get("RAFTKV_SEED") ?? 1);

Deno.test(`parseMessages() throws only TypeError on random bytes (seed ${seed})`, () => {
  const prng = new XorShiftPrng(seed);
  for (let round = 0; round < 5_000; round++) {
    const bytes = new Uint8Array(prng.nextInt(0, 48));
    for (let i = 0; i < bytes.length; i++) bytes[i] = prng.nextInt(0, 256);
    // Bias the first byte toward arrays and maps so the decoder goes deeper.
    if (bytes.length > 0 && prng.next() < 0.5) bytes[0] = 0x90 + prng.nextInt(0, 16);
    parseOrTypeError(bytes, parseMessages);
    parseOrTypeError(bytes, parseMessage);
  }
});

Deno.test(`parseMessages() throws only TypeError on mutated valid batches (seed ${seed})`, () => {
  const prng = new XorShiftPrng(seed);
  const valid = [encodeMessages(SAMPLES), ...SAMPLES.map((m) => encodeMessages([m]))];
  for (let round = 0; round < 5_000; round++) {
    const source = valid[prng.nextInt(0, valid.length)];
    let bytes = source.slice();
    const mutations = prng.nextInt(1, 4);
    for (let m = 0; m < mutations; m++) {
      const at = prng.nextInt(0, bytes.length);
      const kind = prng.nextInt(0, 4);
      if (kind === 0) bytes[at] = prng.nextInt(0, 256);
      else if (kind === 1) bytes[at] ^= 1 << prng.nextInt(0, 8);
      else if (kind === 2) bytes = bytes.slice(0, at);
      else {bytes = new Uint8Array([
          ...bytes.slice(0, at),
          prng.nextInt(0, 256),
          ...bytes.slice(at),
        ]);}
    }
    parseOrTypeError(bytes, parseMessages);
  }
});
