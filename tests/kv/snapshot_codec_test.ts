import assert from "node:assert/strict";
import { decodeMulti, encode } from "@msgpack/msgpack";
import { KeyValueTable } from "../../kv/_key_value_table.ts";
import { decodeSnapshot, encodeSnapshot, type SnapshotContent } from "../../kv/snapshot_codec.ts";
import type { ApplyResult } from "../../kv/mod.ts";

const ENTRIES_PER_CHUNK = 4096;

function tableOf(entries: [string, string, number][]): KeyValueTable {
  const table = new KeyValueTable();
  for (const [key, value, index] of entries) table.set(key, value, index);
  return table;
}

function entriesOf(table: KeyValueTable): [string, string, number][] {
  const entries: [string, string, number][] = [];
  table.forEach((key, value, index) => entries.push([key, value, index]));
  return entries;
}

function content(
  entries: [string, string, number][],
  requests: [string, ApplyResult][] = [],
): SnapshotContent {
  const appliedIndex = Math.max(1, ...entries.map(([, , index]) => index));
  return { appliedIndex, table: tableOf(entries), requests: new Map(requests) };
}

/** Encodes, checks the image has no slack, decodes, and checks everything came back. */
function assertRoundTrip(original: SnapshotContent): Uint8Array {
  const image = encodeSnapshot(original);
  assert.equal(image.byteOffset, 0);
  assert.equal(image.buffer.byteLength, image.byteLength, "the image fills its buffer exactly");
  const decoded = decodeSnapshot(image);
  assert.equal(decoded.appliedIndex, original.appliedIndex);
  assert.deepEqual(entriesOf(decoded.table), entriesOf(original.table));
  assert.deepEqual([...decoded.requests], [...original.requests]);
  return image;
}

Deno.test("encodeSnapshot sizes strings exactly: ASCII, 2-, 3- and 4-byte UTF-8, all lengths", () => {
  const entries: [string, string, number][] = [];
  let index = 1;
  // UTF-8 byte lengths around every MessagePack str header boundary (32, 256, 65,536).
  for (const bytes of [0, 1, 31, 32, 33, 255, 256, 257, 65_535, 65_536, 70_000]) {
    entries.push([`ascii ${bytes}`, "a".repeat(bytes), index++]);
    if (bytes % 2 === 0) entries.push([`two ${bytes}`, "é".repeat(bytes / 2), index++]);
    if (bytes % 3 === 0) entries.push([`three ${bytes}`, "€".repeat(bytes / 3), index++]);
    if (bytes % 4 === 0) entries.push([`four ${bytes}`, "😀".repeat(bytes / 4), index++]);
  }
  entries.push(["ключ 🔑", "mixed é € 😀 text", index++]);
  assertRoundTrip(content(entries));
});

Deno.test("encodeSnapshot sizes indexes exactly around every uint format boundary", () => {
  const boundaries = [1, 127, 128, 255, 256, 65_535, 65_536, 2 ** 32 - 1, 2 ** 32];
  const entries = boundaries.map((index, i): [string, string, number] => [`k${i}`, "v", index]);
  entries.push(["max", "v", Number.MAX_SAFE_INTEGER]);
  assertRoundTrip(content(entries));
});

Deno.test("encodeSnapshot round-trips empty, one, full and partial chunks", () => {
  for (const count of [0, 1, 5, 6, ENTRIES_PER_CHUNK, ENTRIES_PER_CHUNK + 1, 3 * 4096 + 17]) {
    const entries = Array.from(
      { length: count },
      (_, i): [string, string, number] => [`key${i}`, `value ${i}`, i + 1],
    );
    const image = assertRoundTrip(content(entries));
    // The layout is plain MessagePack: header, ceil(count / 4096) flat chunks, request table.
    const values = [...decodeMulti(image)];
    assert.equal(values.length, 2 + Math.ceil(count / ENTRIES_PER_CHUNK));
    assert.deepEqual(values[0], {
      format: 2,
      appliedIndex: Math.max(1, count),
      entries: count,
      chunks: Math.ceil(count / ENTRIES_PER_CHUNK),
    });
  }
});

Deno.test("encodeSnapshot round-trips the idempotency table, every result type included", () => {
  const requests: [string, ApplyResult][] = [
    ["r1", { type: "set", ok: true, index: 1 }],
    ["r2", { type: "cas", ok: true, index: 2 }],
    ["r3", { type: "cas", ok: false, current: "é".repeat(300), index: 3 }],
    ["r4", { type: "cas", ok: false, current: null, index: 3 }],
    ["r5", { type: "delete", deleted: false, index: 4 }],
  ];
  assertRoundTrip(content([["a", "1", 4]], requests));
});

Deno.test("decodeSnapshot reads a snapshot written by the former estimate-sized encoder", () => {
  // Same format 2, from before the exact sizing: data dirs written then must still restore.
  const image = new Uint8Array([
    ...encode({ format: 2, appliedIndex: 9, entries: 2, chunks: 1 }),
    ...encode(["a", "1", 3, "b", "ü", 9]),
    ...encode([["r", { type: "set", ok: true, index: 3 }]]),
  ]);
  const decoded = decodeSnapshot(image);
  assert.deepEqual(entriesOf(decoded.table), [["a", "1", 3], ["b", "ü", 9]]);
  assert.deepEqual([...decoded.requests], [["r", { type: "set", ok: true, index: 3 }]]);
});

Deno.test("decodeSnapshot rejects corrupt images with TypeError", () => {
  const header = (entries: number, chunks: number) =>
    encode({ format: 2, appliedIndex: 9, entries, chunks });
  const image = (...parts: Uint8Array[]) => new Uint8Array(parts.flatMap((part) => [...part]));
  const noRequests = encode([]);
  const cases: [string, Uint8Array, RegExp][] = [
    ["garbage", new Uint8Array([0xc1]), /invalid MessagePack/],
    ["no header", new Uint8Array(0), /the header is missing/],
    ["unknown format", encode({ format: 3, appliedIndex: 1, entries: 0, chunks: 0 }), /format/],
    ["wrong chunk count", image(header(1, 2), encode(["a", "1", 1]), noRequests), /"chunks"/],
    [
      "duplicate key",
      image(header(2, 1), encode(["a", "1", 1, "a", "2", 2]), noRequests),
      /entry 1 is/,
    ],
    ["index past applied", image(header(1, 1), encode(["a", "1", 10]), noRequests), /entry 0/],
    ["index zero", image(header(1, 1), encode(["a", "1", 0]), noRequests), /entry 0/],
    ["empty key", image(header(1, 1), encode(["", "1", 1]), noRequests), /entry 0/],
    ["lone surrogate", image(header(1, 1), encode(["a", "\ud800", 1]), noRequests), /entry 0/],
    ["ragged chunk", image(header(1, 1), encode(["a", "1"]), noRequests), /chunk/],
    ["missing table", image(header(1, 1), encode(["a", "1", 1])), /request table is missing/],
    [
      "trailing data",
      image(header(1, 1), encode(["a", "1", 1]), noRequests, encode(0)),
      /unexpected data/,
    ],
    [
      "bad result",
      image(header(0, 0), encode([["r", { type: "set", ok: false, index: 1 }]])),
      /result of request "r"/,
    ],
  ];
  for (const [name, bytes, message] of cases) {
    assert.throws(() => decodeSnapshot(bytes), TypeError, name);
    assert.throws(() => decodeSnapshot(bytes), message, name);
  }
  const good = encodeSnapshot(content([["a", "1", 1], ["b", "2", 2]]));
  for (let length = 0; length < good.length; length++) {
    assert.throws(() => decodeSnapshot(good.subarray(0, length)), TypeError, `cut at ${length}`);
  }
});
