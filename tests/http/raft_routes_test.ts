import assert from "node:assert/strict";
import { AssertionError } from "node:assert/strict";
import { Hono } from "hono";
import { createRaftRoutes, RAFT_MESSAGES_BYTES_MAX } from "../../http/raft_routes.ts";
import { XorShiftPrng } from "../../raft/clock.ts";
import { noopLogger } from "../../raft/logger.ts";
import type { Message } from "../../raft/types.ts";
import { encodeMessages } from "../../raft/wire.ts";

const CLUSTER = "cluster-a";

function setup(step?: (message: Message) => void): { app: Hono; stepped: Message[] } {
  const stepped: Message[] = [];
  const node = { step: step ?? ((message: Message) => void stepped.push(message)) };
  const app = new Hono();
  app.route(
    "/raft",
    createRaftRoutes({ node, selfId: "n2", clusterId: CLUSTER, logger: noopLogger }),
  );
  return { app, stepped };
}

function post(
  app: Hono,
  path: string,
  body: BodyInit | null,
  headers: Record<string, string> = {},
): Promise<Response> {
  return Promise.resolve(app.request(path, {
    method: "POST",
    body,
    headers: { "Content-Type": "application/msgpack", "X-Raft-Cluster": CLUSTER, ...headers },
  }));
}

const heartbeat: Message = {
  type: "heartbeat",
  from: "n1",
  to: "n2",
  term: 3,
  commit: 5,
  readRound: 1,
};
const snapshot: Message = {
  type: "installSnapshot",
  from: "n1",
  to: "n2",
  term: 3,
  snapshot: {
    metadata: {
      index: 9,
      term: 3,
      confState: { members: [{ id: "n1", url: "http://a:1", voter: true }] },
    },
    data: new Uint8Array([1, 2, 3]),
  },
};

async function assertJsonError(response: Response, status: number, pattern: RegExp): Promise<void> {
  assert.equal(response.status, status);
  assert.match(response.headers.get("Content-Type") ?? "", /application\/json/);
  const body = await response.json();
  assert.match(body.error, pattern);
}

Deno.test("POST /raft/messages steps valid messages in order and answers 204", async () => {
  const { app, stepped } = setup();
  const second = { ...heartbeat, commit: 6 };
  const response = await post(app, "/raft/messages", encodeMessages([heartbeat, second]));
  assert.equal(response.status, 204);
  assert.equal(await response.text(), "");
  assert.deepStrictEqual(stepped, [heartbeat, second]);
});

Deno.test("POST /raft/messages drops messages addressed to another node", async () => {
  const { app, stepped } = setup();
  const stray = { ...heartbeat, to: "n3" };
  const response = await post(app, "/raft/messages", encodeMessages([stray, heartbeat]));
  assert.equal(response.status, 204);
  assert.deepStrictEqual(stepped, [heartbeat]);
});

Deno.test("POST /raft/messages answers 400 JSON to garbage and steps nothing", async () => {
  const { app, stepped } = setup();
  await assertJsonError(
    await post(app, "/raft/messages", new Uint8Array([0xc1, 0xff, 0x00])),
    400,
    /^Cannot decode raft messages: invalid MessagePack/,
  );
  const missingTerm = { ...heartbeat, term: undefined };
  await assertJsonError(
    await post(
      app,
      "/raft/messages",
      encodeMessages([heartbeat, missingTerm as unknown as Message]),
    ),
    400,
    /^Cannot decode raft message 1: field "term" is not a non-negative integer$/,
  );
  await assertJsonError(await post(app, "/raft/messages", null), 400, /Cannot decode/);
  assert.deepStrictEqual(stepped, []);
});

Deno.test("POST /raft/messages answers 409 JSON to another cluster", async () => {
  const { app, stepped } = setup();
  const response = await post(app, "/raft/messages", encodeMessages([heartbeat]), {
    "X-Raft-Cluster": "cluster-b",
  });
  assert.equal(response.status, 409);
  assert.deepStrictEqual(await response.json(), {
    error: "cluster id mismatch",
    expected: CLUSTER,
    received: "cluster-b",
  });
  assert.deepStrictEqual(stepped, []);
});

Deno.test("POST /raft/messages answers 413 JSON to a body over the limit", async () => {
  const { app, stepped } = setup();
  const oversize = new Uint8Array(RAFT_MESSAGES_BYTES_MAX + 1);
  await assertJsonError(await post(app, "/raft/messages", oversize), 413, /too large/);
  // A streamed body has no Content-Length: the limit holds while it is read.
  const chunk = new Uint8Array(1024 * 1024);
  let sent = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent > RAFT_MESSAGES_BYTES_MAX) return controller.close();
      sent += chunk.byteLength;
      controller.enqueue(chunk);
    },
  });
  await assertJsonError(await post(app, "/raft/messages", stream), 413, /too large/);
  assert.deepStrictEqual(stepped, []);
});

Deno.test("POST /raft/messages answers 415 JSON to another content type", async () => {
  const { app } = setup();
  await assertJsonError(
    await post(app, "/raft/messages", "{}", { "Content-Type": "application/json" }),
    415,
    /unsupported content type/,
  );
});

Deno.test("POST /raft/snapshot steps one installSnapshot and refuses anything else", async () => {
  const { app, stepped } = setup();
  assert.equal((await post(app, "/raft/snapshot", encodeMessages([snapshot]))).status, 204);
  assert.deepStrictEqual(stepped, [snapshot]);
  await assertJsonError(
    await post(app, "/raft/snapshot", encodeMessages([heartbeat])),
    400,
    /expected one "installSnapshot" message/,
  );
  assert.equal(stepped.length, 1);
});

Deno.test("GET /raft/messages answers 405 JSON", async () => {
  const { app } = setup();
  const response = await app.request("/raft/messages");
  assert.equal(response.status, 405);
  assert.equal(response.headers.get("Allow"), "POST");
  assert.deepStrictEqual(await response.json(), { error: "method not allowed" });
});

Deno.test("POST /raft/messages answers 503 JSON when the node refuses, but rethrows bugs", async () => {
  const refusing = setup(() => {
    throw new Error("The node is stopping");
  });
  await assertJsonError(
    await post(refusing.app, "/raft/messages", encodeMessages([heartbeat])),
    503,
    /not accepting/,
  );
  const buggy = setup(() => {
    throw new AssertionError({ message: "invariant" });
  });
  let caught: unknown;
  buggy.app.onError((error) => {
    caught = error;
    return new Response(null, { status: 500 });
  });
  await post(buggy.app, "/raft/messages", encodeMessages([heartbeat]));
  assert(caught instanceof AssertionError);
});

const seed = Number(Deno.env.get("RAFTKV_SEED") ?? 1);

Deno.test(`POST /raft/messages answers mutated bodies with 204 or 400 only (seed ${seed})`, async () => {
  const { app } = setup();
  const prng = new XorShiftPrng(seed);
  const valid = encodeMessages([heartbeat, snapshot, { ...heartbeat, commit: 7 }]);
  for (let round = 0; round < 500; round++) {
    const bytes = valid.slice();
    for (let m = prng.nextInt(1, 4); m > 0; m--) {
      bytes[prng.nextInt(0, bytes.length)] = prng.nextInt(0, 256);
    }
    const response = await post(app, "/raft/messages", bytes);
    assert([204, 400].includes(response.status), `status ${response.status} in round ${round}`);
    await response.body?.cancel();
  }
});
