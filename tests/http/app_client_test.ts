/** The client API of API.md through app.request(), on a leader (FakeNode applies at once). */
import assert from "node:assert/strict";
import { KEY_BYTES_MAX, VALUE_BYTES_MAX } from "../../kv/mod.ts";
import { jsonInit, LEADER, SELF_URL, send, testApp } from "./fake_node.ts";

function formInit(method: string, fields: Record<string, string>): RequestInit {
  return {
    method,
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(fields).toString(),
  };
}

Deno.test('"GET /set?key=x&value=42" works exactly as typed, and /get reads it back', async () => {
  const { app, node } = testApp();
  const set = await send(app, "/set?key=x&value=42");
  assert.equal(set.status, 200);
  assert.deepEqual(set.body, { ok: true, index: 1 });
  const get = await send(app, "/get?key=x");
  assert.equal(get.status, 200);
  assert.deepEqual(get.body, { key: "x", value: "42", index: 1 });
  assert.equal(node.readBarriers, 1, "a default read is linearizable");
});

Deno.test("/set takes its parameters from the query, a JSON body, a form or a multipart form", async () => {
  const { app, node } = testApp();
  const form = new FormData();
  form.set("key", "d");
  form.set("value", "4");
  const answers = [
    await send(app, "/set?key=a&value=1", { method: "PUT" }),
    await send(app, "/set", jsonInit("POST", { key: "b", value: "2" })),
    await send(app, "/set", formInit("PUT", { key: "c", value: "3 + space" })),
    await send(app, "/set", { method: "POST", body: form }),
    await send(app, "/set?key=e", jsonInit("POST", { value: "5" })),
  ];
  for (const answer of answers) assert.equal(answer.status, 200, JSON.stringify(answer.body));
  assert.deepEqual(node.proposals.map((c) => c.type === "set" && [c.key, c.value]), [
    ["a", "1"],
    ["b", "2"],
    ["c", "3 + space"],
    ["d", "4"],
    ["e", "5"],
  ]);
});

Deno.test("/set accepts a JSON safe integer as its decimal text and refuses other non-strings", async () => {
  const { app, node } = testApp();
  assert.equal((await send(app, "/set", jsonInit("POST", { key: "n", value: 42 }))).status, 200);
  assert.equal(node.stateMachine.get("n")?.value, "42");
  for (const value of [1.5, 1e300, true, null, { a: 1 }, ["x"]]) {
    const answer = await send(app, "/set", jsonInit("POST", { key: "bad", value }));
    assert.equal(answer.status, 400, `value ${JSON.stringify(value)}`);
    assert.equal(typeof answer.body.error, "string");
  }
  assert.equal(node.stateMachine.get("bad"), undefined);
});

Deno.test("/get answers 404 with the key when it is missing, by GET and by POST", async () => {
  const { app } = testApp();
  const byGet = await send(app, "/get?key=nope");
  assert.equal(byGet.status, 404);
  assert.deepEqual(byGet.body, { error: "key not found", key: "nope" });
  const byPost = await send(app, "/get", jsonInit("POST", { key: "nope" }));
  assert.deepEqual(byPost.body, { error: "key not found", key: "nope" });
});

Deno.test("/get with consistency=stale reads locally without a read barrier", async () => {
  const { app, node } = testApp();
  await send(app, "/set?key=k&value=v");
  const answer = await send(app, "/get?key=k&consistency=stale");
  assert.deepEqual(answer.body, { key: "k", value: "v", index: 1 });
  assert.equal(node.readBarriers, 0);
  assert.equal((await send(app, "/get?key=k&consistency=eventual")).status, 400);
});

Deno.test("/get stale with min_index waits until that index is applied", async () => {
  const { app, node } = testApp({ requestTimeoutMs: 1_000 });
  await send(app, "/set?key=k&value=v1");
  const pending = send(app, "/get?key=k&consistency=stale&min_index=3");
  await new Promise((resolve) => setTimeout(resolve, 10));
  node.advance();
  await send(app, "/set?key=k&value=v3");
  const answer = await pending;
  assert.equal(answer.status, 200);
  assert.deepEqual(answer.body, { key: "k", value: "v3", index: 3 });
  assert.equal(answer.headers.get("X-Raft-Index"), "3");
});

Deno.test("/get stale with an unreached min_index answers 503 at the deadline", async () => {
  const { app } = testApp({ requestTimeoutMs: 30 });
  const answer = await send(app, "/get?key=k&consistency=stale&min_index=99");
  assert.equal(answer.status, 503);
  assert.equal(answer.body.error, "no leader", "every 503 reads as API.md says");
  assert.equal(answer.body.reason, "read timeout");
  assert.equal(answer.headers.get("Retry-After"), "1");
  assert.notEqual(answer.headers.get("X-Raft-Index"), null, "error answers carry the index too");
});

Deno.test("/cas compares: omitted expected means absent, 409 carries the current value", async () => {
  const { app, node } = testApp();
  assert.deepEqual((await send(app, "/cas?key=c&value=1")).body, { ok: true, index: 1 });
  const absent = await send(app, "/cas?key=c&value=2");
  assert.equal(absent.status, 409);
  assert.deepEqual(absent.body, { ok: false, error: "compare failed", current: "1" });
  const wrong = await send(app, "/cas", jsonInit("PUT", { key: "c", expected: "0", value: "2" }));
  assert.deepEqual(wrong.body, { ok: false, error: "compare failed", current: "1" });
  const right = await send(app, "/cas", formInit("POST", { key: "c", expected: "1", value: "2" }));
  assert.deepEqual(right.body, { ok: true, index: 4 });
  const missing = await send(
    app,
    "/cas",
    jsonInit("POST", { key: "m", expected: "x", value: "y" }),
  );
  assert.deepEqual(missing.body, { ok: false, error: "compare failed", current: null });
  const nullExpected = await send(
    app,
    "/cas",
    jsonInit("POST", { key: "m", expected: null, value: "y" }),
  );
  assert.deepEqual(nullExpected.body, { ok: true, index: 6 });
  assert.equal(node.stateMachine.get("c")?.value, "2");
});

Deno.test("/delete by POST and DELETE answers whether the key existed", async () => {
  const { app } = testApp();
  await send(app, "/set?key=d&value=1");
  assert.deepEqual((await send(app, "/delete?key=d", { method: "DELETE" })).body, {
    ok: true,
    deleted: true,
  });
  assert.deepEqual((await send(app, "/delete", jsonInit("POST", { key: "d" }))).body, {
    ok: true,
    deleted: false,
  });
  assert.equal((await send(app, "/get?key=d")).status, 404);
});

Deno.test("/kv/{key} reads, writes its raw body and deletes, keys may contain slashes", async () => {
  const { app, node } = testApp();
  const put = await send(app, "/kv/app/config", {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: '{"not":"parsed"}',
  });
  assert.deepEqual(put.body, { ok: true, index: 1 });
  assert.equal(node.stateMachine.get("app/config")?.value, '{"not":"parsed"}');
  assert.deepEqual((await send(app, "/kv/app%2Fconfig")).body, {
    key: "app/config",
    value: '{"not":"parsed"}',
    index: 1,
  });
  await send(app, "/kv/a+b%20c", { method: "PUT", body: "é ü" });
  assert.equal(node.stateMachine.get("a+b c")?.value, "é ü");
  const stale = await send(app, "/kv/a+b%20c?consistency=stale");
  assert.equal(stale.body.value, "é ü");
  assert.deepEqual((await send(app, "/kv/app/config", { method: "DELETE" })).body, {
    ok: true,
    deleted: true,
  });
  assert.deepEqual((await send(app, "/kv/app/config")).body, {
    error: "key not found",
    key: "app/config",
  });
  assert.equal((await send(app, "/kv/empty", { method: "PUT" })).status, 200);
  assert.equal(node.stateMachine.get("empty")?.value, "");
});

Deno.test("a retried write with the same request_id is applied once and gets the first answer", async () => {
  const { app, node } = testApp();
  const first = await send(app, "/set?key=i&value=1&request_id=r1");
  await send(app, "/set?key=i&value=other");
  const retry = await send(app, "/set?key=i&value=1&request_id=r1");
  assert.deepEqual(retry.body, first.body);
  assert.equal(node.stateMachine.get("i")?.value, "other", "the retry changed nothing");
  const headerInit = { method: "POST", headers: { "Idempotency-Key": "r2" } };
  const cas1 = await send(app, "/cas?key=j&value=1", headerInit);
  const cas2 = await send(app, "/cas?key=j&value=1", headerInit);
  assert.equal(cas2.status, 200, "a retried CAS is not a failed compare");
  assert.deepEqual(cas2.body, cas1.body);
  const both = await send(app, "/set?key=i&value=1&request_id=a", {
    headers: { "Idempotency-Key": "b" },
  });
  assert.equal(both.status, 400);
  assert.equal((await send(app, "/set?key=i&value=1&request_id=")).status, 400);
  assert.equal((await send(app, `/set?key=i&value=1&request_id=${"r".repeat(257)}`)).status, 400);
});

Deno.test("every answer carries X-Raft-Index and X-Raft-Leader, errors included", async () => {
  const { app, node } = testApp();
  await send(app, "/set?key=h&value=1");
  for (
    const [path, method] of [
      ["/get?key=h", "GET"],
      ["/get?key=zz", "GET"],
      ["/set", "GET"],
      [
        "/set",
        "PATCH",
      ],
      ["/nowhere", "GET"],
      ["/health", "GET"],
    ]
  ) {
    const answer = await send(app, path, { method });
    assert.equal(answer.headers.get("X-Raft-Index"), "1", `${method} ${path}`);
    assert.equal(answer.headers.get("X-Raft-Leader"), SELF_URL, `${method} ${path}`);
  }
  node.leadership = null;
  const noLeader = await send(app, "/get?key=h&consistency=stale");
  assert.equal(noLeader.headers.get("X-Raft-Leader"), null, "no leader known, no header");
  node.leadership = LEADER;
  const follower = await send(app, "/get?key=h&consistency=stale");
  assert.equal(follower.headers.get("X-Raft-Leader"), LEADER.url);
});

Deno.test("a wrong method gets 405 JSON with Allow, and HEAD never writes", async () => {
  const { app, node } = testApp();
  const cases: [string, string, string][] = [
    ["/set", "DELETE", "GET, POST, PUT"],
    ["/get", "PUT", "GET, POST"],
    ["/cas", "PATCH", "GET, POST, PUT"],
    ["/delete", "GET", "POST, DELETE"],
    ["/kv/x", "POST", "GET, PUT, DELETE"],
    ["/set?key=x&value=1", "HEAD", "GET, POST, PUT"],
    ["/cas?key=x&value=1", "HEAD", "GET, POST, PUT"],
  ];
  for (const [path, method, allow] of cases) {
    const response = await app.request(path, { method });
    assert.equal(response.status, 405, `${method} ${path}`);
    assert.equal(response.headers.get("Allow"), allow);
    if (method !== "HEAD") assert.equal((await response.json()).error, "method not allowed");
  }
  assert.equal(node.proposals.length, 0);
  assert.equal((await app.request("/get?key=x", { method: "HEAD" })).status, 404);
});

Deno.test("an unknown route gets 404 JSON naming the path", async () => {
  const { app } = testApp();
  const answer = await send(app, "/v2/keys/x");
  assert.equal(answer.status, 404);
  assert.deepEqual(answer.body, { error: "not found", path: "/v2/keys/x" });
});

Deno.test("a missing or empty key is 400; a missing value is 400", async () => {
  const { app, node } = testApp();
  for (const path of ["/set?value=1", "/set?key=&value=1", "/get", "/get?key=", "/set?key=a"]) {
    const answer = await send(app, path);
    assert.equal(answer.status, 400, path);
    assert.equal(typeof answer.body.error, "string");
  }
  assert.equal((await send(app, "/delete", { method: "POST" })).status, 400);
  assert.equal(node.proposals.length, 0);
});

Deno.test("a key over 1 KiB or a value over 512 KiB of UTF-8 is 413; at the limit is fine", async () => {
  const { app, node } = testApp();
  const keyAtLimit = "k".repeat(KEY_BYTES_MAX);
  const keyOver = "é".repeat(KEY_BYTES_MAX / 2 + 1); // 2 bytes each: 1,026 bytes, 513 chars
  const valueAtLimit = "v".repeat(VALUE_BYTES_MAX);
  const valueOver = "€".repeat(Math.ceil(VALUE_BYTES_MAX / 3) + 1); // 3 bytes each
  const ok = await send(app, "/set", jsonInit("POST", { key: keyAtLimit, value: valueAtLimit }));
  assert.equal(ok.status, 200);
  const tooLong = [
    await send(app, "/set", jsonInit("POST", { key: keyOver, value: "1" })),
    await send(app, "/set", jsonInit("POST", { key: "v", value: valueOver })),
    await send(app, `/kv/${encodeURIComponent(keyOver)}`, { method: "PUT", body: "1" }),
    await send(app, "/kv/raw", { method: "PUT", body: valueOver }),
    await send(app, "/cas", jsonInit("POST", { key: "c", expected: valueOver, value: "1" })),
    await send(app, "/get", jsonInit("POST", { key: keyOver })),
  ];
  for (const answer of tooLong) assert.equal(answer.status, 413, JSON.stringify(answer.body));
  assert.equal(node.proposals.length, 1);
});

Deno.test("a CAS whose two values together do not fit one log entry is 413", async () => {
  const { app, node } = testApp();
  const big = "x".repeat(VALUE_BYTES_MAX);
  const answer = await send(app, "/cas", jsonInit("POST", { key: "c", expected: big, value: big }));
  assert.equal(answer.status, 413);
  assert.equal(node.proposals.length, 0);
});

Deno.test("node errors map to 503 with Retry-After, 504 outcome unknown, and 500", async () => {
  const { app, node, logs } = testApp();
  node.proposeMode = "drop";
  const dropped = await send(app, "/set?key=a&value=1");
  assert.equal(dropped.status, 503);
  assert.equal(dropped.body.error, "no leader");
  assert.equal(dropped.body.outcome, "none");
  assert.equal(dropped.headers.get("Retry-After"), "1");
  node.proposeMode = "stopped";
  const stopped = await send(app, "/set?key=a&value=1");
  assert.equal(stopped.status, 503);
  assert.equal(stopped.body.error, "no leader");
  node.proposeMode = "timeout";
  const timeout = await send(app, "/set?key=a&value=1");
  assert.equal(timeout.status, 504);
  assert.equal(timeout.body.error, "timeout");
  assert.equal(timeout.body.outcome, "unknown");
  node.proposeMode = "crash";
  const crash = await send(app, "/set?key=a&value=1");
  assert.equal(crash.status, 500);
  assert.deepEqual(crash.body, { error: "internal error" });
  assert.ok(logs.some((record) => record.level === "error" && record.message === "request failed"));
  node.readMode = "timeout";
  assert.equal((await send(app, "/get?key=a")).status, 503);
  node.readMode = "noLeader";
  const noLeader = await send(app, "/get?key=a");
  assert.equal(noLeader.status, 503);
  assert.equal(noLeader.body.error, "no leader");
});

Deno.test("an assertion failure logs and exits the process with code 70", async () => {
  const { app, node, logs, exits } = testApp();
  node.proposeMode = "assert";
  const answer = await send(app, "/set?key=a&value=1");
  assert.equal(answer.status, 500);
  assert.deepEqual(exits, [70]);
  assert.ok(logs.some((record) => record.message === "invariant violated"));
});
