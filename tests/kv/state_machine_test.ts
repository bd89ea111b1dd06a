import assert from "node:assert/strict";
import { type Command, encodeCommand, KvStateMachine } from "../../kv/mod.ts";
import { decodeSnapshot } from "../../kv/snapshot_codec.ts";
import { joinChunks } from "../../kv/_storage_records.ts";
import { XorShiftPrng } from "../../raft/mod.ts";

function bytes(command: Command): Uint8Array {
  return encodeCommand(command);
}

Deno.test("KvStateMachine applies set, cas and delete and reports the index of each", () => {
  const sm = new KvStateMachine();
  assert.deepEqual(sm.apply(1, bytes({ type: "set", key: "a", value: "1" })), {
    type: "set",
    ok: true,
    index: 1,
  });
  assert.deepEqual(sm.get("a"), { value: "1", index: 1 });
  assert.deepEqual(sm.apply(2, bytes({ type: "cas", key: "a", expected: "0", value: "2" })), {
    type: "cas",
    ok: false,
    current: "1",
    index: 2,
  });
  assert.deepEqual(sm.get("a"), { value: "1", index: 1 }, "a failed cas changes nothing");
  assert.deepEqual(sm.apply(3, bytes({ type: "cas", key: "a", expected: "1", value: "2" })), {
    type: "cas",
    ok: true,
    index: 3,
  });
  assert.deepEqual(sm.get("a"), { value: "2", index: 3 });
  assert.deepEqual(sm.apply(5, bytes({ type: "delete", key: "a" })), {
    type: "delete",
    deleted: true,
    index: 5,
  });
  assert.equal(sm.get("a"), undefined);
  assert.deepEqual(sm.apply(6, bytes({ type: "delete", key: "a" })), {
    type: "delete",
    deleted: false,
    index: 6,
  });
  assert.equal(sm.keyCount(), 0);
});

Deno.test("KvStateMachine cas with expected null succeeds only when the key is absent", () => {
  const sm = new KvStateMachine();
  const create = { type: "cas", key: "k", expected: null, value: "v" } as const;
  assert.deepEqual(sm.apply(1, bytes(create)), { type: "cas", ok: true, index: 1 });
  assert.deepEqual(sm.apply(2, bytes(create)), {
    type: "cas",
    ok: false,
    current: "v",
    index: 2,
  });
  assert.deepEqual(sm.apply(3, bytes({ type: "cas", key: "x", expected: "v", value: "w" })), {
    type: "cas",
    ok: false,
    current: null,
    index: 3,
  });
  assert.equal(sm.keyCount(), 1);
});

Deno.test("KvStateMachine get() reports the index of the last change of the key only", () => {
  const sm = new KvStateMachine();
  sm.apply(1, bytes({ type: "set", key: "a", value: "1" }));
  sm.apply(2, bytes({ type: "set", key: "b", value: "2" }));
  sm.apply(4, bytes({ type: "set", key: "b", value: "3" }));
  assert.deepEqual(sm.get("a"), { value: "1", index: 1 });
  assert.deepEqual(sm.get("b"), { value: "3", index: 4 });
  assert.equal(sm.appliedIndex(), 4);
});

Deno.test("KvStateMachine applies a repeated request id once and returns the first result", () => {
  const sm = new KvStateMachine();
  const set = bytes({ type: "set", key: "a", value: "1", requestId: "r1" });
  assert.deepEqual(sm.apply(1, set), { type: "set", ok: true, index: 1 });
  sm.apply(2, bytes({ type: "set", key: "a", value: "other" }));
  assert.deepEqual(sm.apply(3, set), { type: "set", ok: true, index: 1 });
  assert.deepEqual(sm.get("a"), { value: "other", index: 2 }, "the retry did not apply again");
  const cas = bytes({ type: "cas", key: "c", expected: null, value: "x", requestId: "r2" });
  assert.deepEqual(sm.apply(4, cas), { type: "cas", ok: true, index: 4 });
  // The retry would fail if applied again; it returns the first (successful) answer.
  assert.deepEqual(sm.apply(5, cas), { type: "cas", ok: true, index: 4 });
});

Deno.test("KvStateMachine applies undecodable bytes as an invalid no-op", () => {
  const sm = new KvStateMachine();
  sm.apply(1, bytes({ type: "set", key: "a", value: "1" }));
  const before = sm.snapshot();
  assert.deepEqual(sm.apply(2, new Uint8Array([0xc1, 0x00])), { type: "invalid", index: 2 });
  assert.deepEqual(sm.apply(3, new Uint8Array()), { type: "invalid", index: 3 });
  assert.deepEqual(sm.get("a"), { value: "1", index: 1 });
  const after = new KvStateMachine();
  after.restore(sm.snapshot());
  assert.equal(after.keyCount(), 1);
  assert.notDeepEqual(sm.snapshot(), before, "the applied index moved");
});

Deno.test("KvStateMachine evicts the oldest request ids first, the same on every replica", () => {
  const replicas = [
    new KvStateMachine({ requestIdsMax: 3 }),
    new KvStateMachine({ requestIdsMax: 3 }),
  ];
  for (const sm of replicas) {
    for (let i = 1; i <= 5; i++) {
      sm.apply(i, bytes({ type: "set", key: `k${i}`, value: "v", requestId: `r${i}` }));
    }
  }
  assert.deepEqual(replicas[0].snapshot(), replicas[1].snapshot());
  const sm = replicas[0];
  // r3 is still known; r1 and r2 were forgotten, so a retry of r1 applies anew.
  assert.deepEqual(sm.apply(6, bytes({ type: "set", key: "k3", value: "w", requestId: "r3" })), {
    type: "set",
    ok: true,
    index: 3,
  });
  assert.deepEqual(sm.apply(7, bytes({ type: "set", key: "k1", value: "w", requestId: "r1" })), {
    type: "set",
    ok: true,
    index: 7,
  });
  assert.deepEqual(sm.get("k1"), { value: "w", index: 7 });
  assert.deepEqual(sm.get("k3"), { value: "v", index: 3 });
});

Deno.test("KvStateMachine snapshot() and restore() round-trip the map and the request ids", () => {
  const sm = new KvStateMachine();
  sm.apply(1, bytes({ type: "set", key: "a", value: "1", requestId: "r1" }));
  sm.apply(2, bytes({ type: "cas", key: "b", expected: "x", value: "2", requestId: "r2" }));
  sm.apply(3, bytes({ type: "set", key: "é", value: "ü" }));
  sm.apply(4, bytes({ type: "delete", key: "a", requestId: "r3" }));
  const copy = new KvStateMachine();
  copy.apply(1, bytes({ type: "set", key: "gone", value: "x" }));
  copy.restore(sm.snapshot());
  assert.deepEqual(copy.snapshot(), sm.snapshot());
  assert.equal(copy.get("gone"), undefined);
  assert.deepEqual(copy.get("é"), { value: "ü", index: 3 });
  assert.equal(copy.keyCount(), 1);
  assert.equal(copy.appliedIndex(), 4);
  // The dedup table came along: retries answer as the first time and change nothing.
  const retry = bytes({ type: "cas", key: "b", expected: "x", value: "2", requestId: "r2" });
  assert.deepEqual(copy.apply(5, retry), { type: "cas", ok: false, current: null, index: 2 });
  const again = bytes({ type: "set", key: "a", value: "1", requestId: "r1" });
  assert.deepEqual(copy.apply(6, again), { type: "set", ok: true, index: 1 });
  assert.equal(copy.get("a"), undefined);
});

/** A snapshot image as plain data, the keys' order left out: what a restore from it holds. */
function contentOf(image: Uint8Array) {
  const { appliedIndex, table, requests } = decodeSnapshot(image);
  const keys = new Map<string, [string, number]>();
  table.forEach((key, value, index) => keys.set(key, [value, index]));
  return { appliedIndex, keys, requests: [...requests] };
}

Deno.test("KvStateMachine snapshotReader() gives the state as it was when made, while entries apply", () => {
  const prng = new XorShiftPrng(7);
  // Few remembered request ids, so that applying between pieces evicts some as well.
  const sm = new KvStateMachine({ requestIdsMax: 50 });
  let index = 0;
  const write = () => {
    const key = `k${prng.nextInt(0, 12_000)}`;
    const requestId = prng.next() < 0.3 ? `r${index}` : undefined;
    index++;
    const command: Command = prng.next() < 0.3
      ? { type: "delete", key, requestId }
      : { type: "set", key, value: `v${index}`.repeat(1 + prng.nextInt(0, 3)), requestId };
    sm.apply(index, bytes(command));
  };
  for (let i = 0; i < 20_000; i++) write();
  const expected = sm.snapshot();
  const reader = sm.snapshotReader();
  const pieces: Uint8Array[] = [];
  for (let piece = reader.next(); piece !== undefined; piece = reader.next()) {
    pieces.push(piece);
    for (let i = 0; i < 500; i++) write();
  }
  assert(pieces.length > 3, `a header, several chunks and the request ids: ${pieces.length}`);
  assert.deepEqual(contentOf(joinChunks(pieces)), contentOf(expected));
  // The state went on changing, and a new reader sees it as it is now.
  const now = sm.snapshot();
  assert.notDeepEqual(contentOf(now), contentOf(expected));
  const again = sm.snapshotReader();
  const nowPieces: Uint8Array[] = [];
  for (let piece = again.next(); piece !== undefined; piece = again.next()) nowPieces.push(piece);
  assert.deepEqual(contentOf(joinChunks(nowPieces)), contentOf(now));
  const copy = new KvStateMachine({ requestIdsMax: 50 });
  copy.restore(joinChunks(nowPieces));
  assert.equal(copy.keyCount(), sm.keyCount());
});

Deno.test("KvStateMachine snapshotReader() of an empty state, and one closed early", () => {
  const sm = new KvStateMachine();
  const reader = sm.snapshotReader();
  const pieces: Uint8Array[] = [];
  for (let piece = reader.next(); piece !== undefined; piece = reader.next()) pieces.push(piece);
  assert.deepEqual(contentOf(joinChunks(pieces)), contentOf(sm.snapshot()));
  sm.apply(1, bytes({ type: "set", key: "a", value: "1" }));
  const early = sm.snapshotReader();
  assert(early.next() !== undefined);
  early.close();
  assert.equal(early.next(), undefined);
  // Closing let the table go: another reader can start.
  const later = sm.snapshotReader();
  later.close();
});

Deno.test("KvStateMachine restore() rejects a corrupt snapshot and keeps its state", () => {
  const sm = new KvStateMachine();
  sm.apply(1, bytes({ type: "set", key: "a", value: "1" }));
  const good = sm.snapshot();
  assert.throws(() => sm.restore(new Uint8Array([1, 2, 3])), TypeError);
  assert.throws(() => sm.restore(good.subarray(0, good.length - 1)), TypeError);
  const source = new KvStateMachine();
  source.apply(9, bytes({ type: "set", key: "z", value: "1" }));
  const tampered = source.snapshot();
  // Change the applied index (9) to 0: the entry's index is then past it.
  const at = tampered.indexOf(9);
  tampered[at] = 0;
  assert.throws(() => sm.restore(tampered), /Cannot restore key-value snapshot/);
  assert.deepEqual(sm.get("a"), { value: "1", index: 1 });
});

Deno.test("KvStateMachine apply() asserts that indexes increase", () => {
  const sm = new KvStateMachine();
  sm.apply(2, bytes({ type: "set", key: "a", value: "1" }));
  assert.throws(() => sm.apply(2, bytes({ type: "set", key: "a", value: "1" })), /not after 2/);
});
