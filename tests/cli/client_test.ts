import assert from "node:assert/strict";
import { RaftkvClient, UnavailableError } from "../../http/client.ts";
import { closedPortUrl, json, startFakeServer } from "./fake_server.ts";

const RAFT_HEADERS = { "X-Raft-Index": "12", "X-Raft-Leader": "n1" };

Deno.test("RaftkvClient.get() returns the status, body, value and X-Raft headers", async () => {
  const server = startFakeServer((request) =>
    request.query.key === "x"
      ? json({ key: "x", value: "42", index: 7 }, 200, RAFT_HEADERS)
      : json({ error: "key not found", key: request.query.key }, 404, RAFT_HEADERS)
  );
  try {
    const client = new RaftkvClient({ servers: [server.url] });
    const found = await client.get("x", { consistency: "stale", minIndex: 5 });
    assert.equal(found.status, 200);
    assert.equal(found.value, "42");
    assert.deepEqual(found.body, { key: "x", value: "42", index: 7 });
    assert.equal(found.index, 12);
    assert.equal(found.leader, "n1");
    assert.equal(found.server, server.url);
    assert.deepEqual(server.requests[0].query, { key: "x", consistency: "stale", min_index: "5" });
    const missing = await client.get("y");
    assert.equal(missing.status, 404);
    assert.equal(missing.value, null);
  } finally {
    await server.close();
  }
});

Deno.test("RaftkvClient writes send JSON bodies with a request id", async () => {
  const server = startFakeServer((request) => {
    if (request.path === "/cas") {
      return json({ ok: false, error: "compare failed", current: null }, 409, RAFT_HEADERS);
    }
    if (request.path === "/delete") return json({ ok: true, deleted: false }, 200, RAFT_HEADERS);
    return json({ ok: true, index: 9 }, 200, RAFT_HEADERS);
  });
  try {
    const client = new RaftkvClient({ servers: [server.url] });
    const set = await client.set("k", "v", { requestId: "r1" });
    assert.equal(set.ok, true);
    assert.equal(set.writeIndex, 9);
    assert.deepEqual(server.requests[0], {
      method: "POST",
      path: "/set",
      query: {},
      body: { key: "k", value: "v", request_id: "r1" },
    });
    const cas = await client.cas("k", null, "v2");
    assert.equal(cas.ok, false);
    assert.equal(cas.status, 409);
    assert.equal(cas.current, null);
    const casBody = server.requests[1].body as Record<string, unknown>;
    assert.equal("expected" in casBody, false, "a null expected is sent as an absent field");
    assert.equal(typeof casBody.request_id, "string", "a request id is generated");
    await client.cas("k", "v", "v2");
    assert.equal((server.requests[2].body as Record<string, unknown>).expected, "v");
    const deleted = await client.delete("k");
    assert.equal(deleted.deleted, false);
    assert.equal(deleted.ok, true);
  } finally {
    await server.close();
  }
});

Deno.test("RaftkvClient operating calls use the routes of API.md", async () => {
  const server = startFakeServer((request) =>
    request.path === "/status"
      ? json({ id: "n1", role: "leader", members: [{ id: "n1" }, "junk"] })
      : json({ ok: true })
  );
  try {
    const client = new RaftkvClient({ servers: [server.url] });
    assert.deepEqual((await client.members()).members, [{ id: "n1" }]);
    await client.addMember("http://127.0.0.1:2023");
    await client.removeMember("n/4");
    await client.transferLeader("n2");
    await client.snapshot();
    assert.deepEqual(
      server.requests.map((r) => [r.method, r.path, r.body]),
      [
        ["GET", "/status", ""],
        ["POST", "/cluster/members", { url: "http://127.0.0.1:2023" }],
        ["DELETE", "/cluster/members/n%2F4", ""],
        ["POST", "/cluster/leader", { id: "n2" }],
        ["POST", "/cluster/snapshot", ""],
      ],
    );
  } finally {
    await server.close();
  }
});

Deno.test("RaftkvClient tries the next server on a connection failure and on 503", async () => {
  const unavailable = startFakeServer(() =>
    json({ error: "no leader" }, 503, { "Retry-After": "1" })
  );
  const healthy = startFakeServer(() => json({ ok: true, index: 3 }));
  try {
    const client = new RaftkvClient({
      servers: [closedPortUrl(), unavailable.url, healthy.url],
    });
    const response = await client.set("k", "v");
    assert.equal(response.status, 200);
    assert.equal(response.server, healthy.url);
    assert.equal(unavailable.requests.length, 1);
    const requestIds = [unavailable.requests[0].body, healthy.requests[0].body].map((body) =>
      (body as Record<string, unknown>).request_id
    );
    assert.equal(requestIds[0], requestIds[1], "a retry repeats the request id");
    // The server that answered is tried first next time.
    await client.set("k", "v2");
    assert.equal(unavailable.requests.length, 1);
    assert.equal(healthy.requests.length, 2);
  } finally {
    await unavailable.close();
    await healthy.close();
  }
});

Deno.test("RaftkvClient returns the last 503 when every server answers 503", async () => {
  const server = startFakeServer(() => json({ error: "no leader" }, 503, { "Retry-After": "2" }));
  try {
    const client = new RaftkvClient({ servers: [server.url, closedPortUrl()] });
    const response = await client.get("k");
    assert.equal(response.status, 503);
    assert.equal(response.retryAfterMs, 2000);
    assert.equal(response.body.error, "no leader");
  } finally {
    await server.close();
  }
});

Deno.test("RaftkvClient does not retry a 504: the write may have been applied", async () => {
  const first = startFakeServer(() => json({ error: "timeout", outcome: "unknown" }, 504));
  const second = startFakeServer(() => json({ ok: true }));
  try {
    const client = new RaftkvClient({ servers: [first.url, second.url] });
    assert.equal((await client.set("k", "v")).status, 504);
    assert.equal(second.requests.length, 0);
  } finally {
    await first.close();
    await second.close();
  }
});

Deno.test("RaftkvClient throws UnavailableError when no server answers", async () => {
  const client = new RaftkvClient({ servers: [closedPortUrl(), closedPortUrl()] });
  await assert.rejects(() => client.status(), (error: unknown) => {
    assert(error instanceof UnavailableError);
    assert.equal(error.failures.length, 2);
    assert.match(error.message, /^Cannot reach any raftkv server: http:\/\/127\.0\.0\.1:\d+ \(/);
    return true;
  });
});

Deno.test("RaftkvClient gives up on a server after timeoutMs and tries the next", async () => {
  let release = () => {};
  const stalled = new Promise<void>((resolve) => release = resolve);
  const slow = startFakeServer(async () => {
    await stalled;
    return json({ ok: true });
  });
  const fast = startFakeServer(() => json({ ok: true, index: 1 }));
  try {
    const client = new RaftkvClient({ servers: [slow.url, fast.url], timeoutMs: 200 });
    const response = await client.set("k", "v");
    assert.equal(response.server, fast.url);
  } finally {
    release();
    await slow.close();
    await fast.close();
  }
});

Deno.test("RaftkvClient keeps a body that is not a JSON object as the error", async () => {
  const server = startFakeServer(() => new Response("Bad Gateway\n", { status: 502 }));
  try {
    const response = await new RaftkvClient({ servers: [server.url] }).status();
    assert.equal(response.status, 502);
    assert.deepEqual(response.body, { error: "Bad Gateway" });
    assert.equal(response.index, null);
    assert.equal(response.leader, null);
  } finally {
    await server.close();
  }
});

Deno.test("RaftkvClient refuses an empty or non-http server list", () => {
  assert.throws(() => new RaftkvClient({ servers: [] }), TypeError);
  assert.throws(() => new RaftkvClient({ servers: ["127.0.0.1:2020"] }), /not an http\(s\) URL/);
});
