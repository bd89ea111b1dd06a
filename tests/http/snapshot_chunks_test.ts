import assert from "node:assert/strict";
import { Hono } from "hono";
import { PeerTransport } from "../../http/peer_transport.ts";
import { createRaftRoutes, RAFT_SNAPSHOT_BYTES_MAX } from "../../http/raft_routes.ts";
import type { LogFields, Logger } from "../../raft/logger.ts";
import type { Message } from "../../raft/types.ts";
import { encodeMessages } from "../../raft/wire.ts";

const CLUSTER = "cluster-a";
type SnapshotMessage = Extract<Message, { type: "installSnapshot" }>;

class RecordingLogger implements Logger {
  records: { message: string; fields: LogFields }[] = [];
  debug(): void {}
  info(message: string, fields: LogFields = {}): void {
    this.records.push({ message, fields });
  }
  warn(message: string, fields: LogFields = {}): void {
    this.records.push({ message, fields });
  }
  error(message: string, fields: LogFields = {}): void {
    this.records.push({ message, fields });
  }
  has(message: string): boolean {
    return this.records.some((record) => record.message === message);
  }
}

/** Timers a test fires by hand. */
class ManualTimers {
  nowMs = 0;
  #timers: { atMs: number; callback: () => void }[] = [];
  now = () => this.nowMs;
  after = (delayMs: number, callback: () => void) => {
    const timer = { atMs: this.nowMs + delayMs, callback };
    this.#timers.push(timer);
    return () => {
      this.#timers = this.#timers.filter((other) => other !== timer);
    };
  };
  advance(ms: number): void {
    this.nowMs += ms;
    const due = this.#timers.filter((timer) => timer.atMs <= this.nowMs);
    this.#timers = this.#timers.filter((timer) => timer.atMs > this.nowMs);
    for (const timer of due) timer.callback();
  }
}

function setup() {
  const stepped: Message[] = [];
  const logger = new RecordingLogger();
  const timers = new ManualTimers();
  const app = new Hono();
  app.route(
    "/raft",
    createRaftRoutes({
      node: { step: (message: Message) => void stepped.push(message) },
      selfId: "n2",
      clusterId: CLUSTER,
      logger,
      clock: timers,
      snapshotIdleMs: 1_000,
    }),
  );
  return { app, stepped, logger, timers };
}

function snapshotOf(bytes: number, index = 9): SnapshotMessage {
  const data = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) data[i] = (i * 31 + index) & 0xff;
  return {
    type: "installSnapshot",
    from: "n1",
    to: "n2",
    term: 3,
    snapshot: {
      metadata: {
        index,
        term: 2,
        confState: { members: [{ id: "n1", url: "http://a:1", voter: true }] },
      },
      data,
    },
  };
}

/** The chunk of `message` holding bytes [offset, end). */
function chunkOf(message: SnapshotMessage, offset: number, end: number): Uint8Array {
  const data = message.snapshot.data.subarray(offset, end);
  return encodeMessages([{ ...message, snapshot: { ...message.snapshot, data } }]);
}

function postChunk(
  app: Hono,
  query: { id: string; offset: number; total: number },
  body: Uint8Array,
): Promise<Response> {
  const search = new URLSearchParams({
    id: query.id,
    offset: String(query.offset),
    total: String(query.total),
  });
  return Promise.resolve(app.request(`/raft/snapshot?${search}`, {
    method: "POST",
    body: body as Uint8Array<ArrayBuffer>,
    headers: { "Content-Type": "application/msgpack", "X-Raft-Cluster": CLUSTER },
  }));
}

function transportTo(app: Hono, options: { chunkBytes: number; fetch?: typeof fetch }) {
  const logger = new RecordingLogger();
  const requests: string[] = [];
  const transport = new PeerTransport({
    selfId: "n1",
    clusterId: CLUSTER,
    logger,
    snapshotChunkBytes: options.chunkBytes,
    fetch: options.fetch ?? ((input, init) => {
      requests.push(String(input));
      return Promise.resolve(app.fetch(new Request(input, init)));
    }),
  });
  transport.setPeers(new Map([["n2", "http://n2.test"]]));
  return { transport, logger, requests };
}

async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (check()) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error(`Timed out waiting for ${what}`);
}

Deno.test("a snapshot travels in ordered chunks and reaches the node once, whole", async () => {
  const { app, stepped, logger } = setup();
  const { transport, requests, logger: senderLog } = transportTo(app, { chunkBytes: 1_000 });
  const message = snapshotOf(4_500);
  transport.send([message]);
  await until(() => stepped.length === 1, "the snapshot to be stepped");
  await transport.close();
  assert.deepStrictEqual(stepped, [message]);
  const offsets = requests.map((url) => new URL(url).searchParams.get("offset"));
  assert.deepStrictEqual(offsets, ["0", "1000", "2000", "3000", "4000"]);
  assert.ok(requests.every((url) => new URL(url).searchParams.get("total") === "4500"));
  assert.ok(logger.has("snapshot received"));
  assert.ok(senderLog.has("snapshot sent"));
});

Deno.test("an empty snapshot travels as one empty chunk", async () => {
  const { app, stepped } = setup();
  const { transport, requests } = transportTo(app, { chunkBytes: 1_000 });
  transport.send([snapshotOf(0)]);
  await until(() => stepped.length === 1, "the snapshot to be stepped");
  await transport.close();
  assert.deepStrictEqual(stepped, [snapshotOf(0)]);
  assert.equal(requests.length, 1);
});

Deno.test("a chunk out of order drops the transfer with 409; offset 0 starts it again", async () => {
  const { app, stepped, logger } = setup();
  const message = snapshotOf(3_000);
  const id = "n1.3.9.2";
  assert.equal(
    (await postChunk(app, { id, offset: 0, total: 3_000 }, chunkOf(message, 0, 1_000))).status,
    204,
  );
  const skipped = await postChunk(
    app,
    { id, offset: 2_000, total: 3_000 },
    chunkOf(message, 2_000, 3_000),
  );
  assert.equal(skipped.status, 409);
  assert.deepStrictEqual(await skipped.json(), {
    error: "Snapshot chunk out of order: start the transfer again at offset 0",
    expectedOffset: 0,
  });
  assert.ok(logger.has("snapshot transfer dropped"));
  // The transfer is gone: even the chunk that would have been next is out of order now.
  assert.equal(
    (await postChunk(app, { id, offset: 1_000, total: 3_000 }, chunkOf(message, 1_000, 2_000)))
      .status,
    409,
  );
  assert.deepStrictEqual(stepped, []);
  for (const offset of [0, 1_000, 2_000]) {
    const answer = await postChunk(
      app,
      { id, offset, total: 3_000 },
      chunkOf(message, offset, offset + 1_000),
    );
    assert.equal(answer.status, 204);
  }
  assert.deepStrictEqual(stepped, [message]);
});

Deno.test("an idle partial transfer is dropped after the timeout", async () => {
  const { app, stepped, logger, timers } = setup();
  const message = snapshotOf(2_000);
  const id = "n1.3.9.2";
  assert.equal(
    (await postChunk(app, { id, offset: 0, total: 2_000 }, chunkOf(message, 0, 1_000))).status,
    204,
  );
  timers.advance(999);
  assert.ok(!logger.has("snapshot transfer dropped"));
  timers.advance(1);
  assert.ok(logger.has("snapshot transfer dropped"));
  const late = await postChunk(
    app,
    { id, offset: 1_000, total: 2_000 },
    chunkOf(message, 1_000, 2_000),
  );
  assert.equal(late.status, 409);
  assert.deepStrictEqual(stepped, []);
});

Deno.test("chunks with bad positions or changed metadata are refused with 400", async () => {
  const { app, stepped } = setup();
  const message = snapshotOf(2_000);
  const id = "n1.3.9.2";
  const refusals: [Record<string, string>, RegExp][] = [
    [{ offset: "0", total: "2000" }, /parameter "id"/],
    [{ id, total: "2000" }, /parameter "offset"/],
    [{ id, offset: "-1", total: "2000" }, /parameter "offset"/],
    [{ id, offset: "0", total: "1e3" }, /parameter "total"/],
    [{ id, offset: "0", total: String(RAFT_SNAPSHOT_BYTES_MAX + 1) }, /"total" is over/],
    [{ id, offset: "3000", total: "2000" }, /past "total"/],
    [{ id, offset: "0", total: "500" }, /runs past "total"/],
  ];
  for (const [query, pattern] of refusals) {
    const answer = await app.request(`/raft/snapshot?${new URLSearchParams(query)}`, {
      method: "POST",
      body: chunkOf(message, 0, 1_000) as Uint8Array<ArrayBuffer>,
      headers: { "Content-Type": "application/msgpack" },
    });
    assert.equal(answer.status, 400, JSON.stringify(query));
    assert.match((await answer.json()).error, pattern);
  }
  assert.equal(
    (await postChunk(app, { id, offset: 0, total: 2_000 }, chunkOf(message, 0, 1_000))).status,
    204,
  );
  const other = snapshotOf(2_000, 10);
  const changed = await postChunk(
    app,
    { id, offset: 1_000, total: 2_000 },
    chunkOf(other, 1_000, 2_000),
  );
  assert.equal(changed.status, 400);
  assert.match((await changed.json()).error, /metadata differs/);
  assert.deepStrictEqual(stepped, []);
});

Deno.test("the sender starts the transfer again when the receiver lost its place", async () => {
  const { app, stepped } = setup();
  let swallowed = false;
  const { transport, logger } = transportTo(app, {
    chunkBytes: 1_000,
    fetch: (input, init) => {
      // One chunk "answered" but never arriving, as when the receiver restarts mid-transfer.
      if (!swallowed && new URL(String(input)).searchParams.get("offset") === "1000") {
        swallowed = true;
        return Promise.resolve(new Response(null, { status: 204 }));
      }
      return Promise.resolve(app.fetch(new Request(input, init)));
    },
  });
  const message = snapshotOf(3_500);
  transport.send([message]);
  await until(() => stepped.length === 1, "the snapshot to be stepped");
  await transport.close();
  assert.deepStrictEqual(stepped, [message]);
  assert.ok(logger.has("peer lost the snapshot transfer; starting again"));
});

Deno.test("one snapshot transfer per peer at a time: a second request is dropped", async () => {
  const { app, stepped } = setup();
  let release: () => void = () => {};
  const gate = new Promise<void>((resolve) => release = resolve);
  const { transport } = transportTo(app, {
    chunkBytes: 1_000,
    fetch: async (input, init) => {
      await gate;
      return app.fetch(new Request(input, init));
    },
  });
  transport.send([snapshotOf(2_500)]);
  await new Promise((resolve) => setTimeout(resolve, 10));
  transport.send([snapshotOf(2_500, 12)]);
  await new Promise((resolve) => setTimeout(resolve, 10));
  release();
  await until(() => stepped.length === 1, "the first snapshot to be stepped");
  await new Promise((resolve) => setTimeout(resolve, 20));
  await transport.close();
  assert.deepStrictEqual(stepped, [snapshotOf(2_500)]);
  assert.equal(transport.stats()[0].droppedMessages, 1);
});
