/** Forwarding (http/forward.ts): a follower relays the original request to the leader. */
import assert from "node:assert/strict";
import { requestTimeoutMs } from "../../http/forward.ts";
import { capturingFetch, hangUntilAborted, LEADER, SELF_URL, send, testApp } from "./fake_node.ts";

const decoder = new TextDecoder();

function leaderAnswer(status: number, body: unknown, headers: Record<string, string> = {}) {
  return () =>
    new Response(JSON.stringify(body), {
      status,
      headers: {
        "content-type": "application/json",
        "X-Raft-Index": "41",
        "X-Raft-Leader": LEADER.url,
        "X-Unrelated": "dropped",
        ...headers,
      },
    });
}

Deno.test("a follower relays a write unchanged to the leader and relays the answer", async () => {
  const leader = capturingFetch(leaderAnswer(200, { ok: true, index: 41 }));
  const { app, node } = testApp({ fetch: leader.fetch });
  node.leadership = LEADER;
  const body = JSON.stringify({ key: "k", value: "v" });
  const answer = await send(app, "/set?x=1", {
    method: "PUT",
    headers: { "content-type": "application/json; charset=utf-8", "Idempotency-Key": "r9" },
    body,
  });
  assert.equal(answer.status, 200);
  assert.deepEqual(answer.body, { ok: true, index: 41 });
  assert.equal(answer.headers.get("X-Raft-Index"), "41", "the leader's index, not ours");
  assert.equal(answer.headers.get("X-Raft-Leader"), LEADER.url);
  assert.equal(answer.headers.get("X-Unrelated"), null);
  assert.equal(node.proposals.length, 0, "nothing proposed on the follower");
  assert.equal(leader.calls.length, 1);
  const [call] = leader.calls;
  assert.equal(call.url, `${LEADER.url}/set?x=1`);
  assert.equal(call.method, "PUT");
  assert.equal(decoder.decode(call.body), body);
  assert.equal(call.headers.get("content-type"), "application/json; charset=utf-8");
  assert.equal(call.headers.get("idempotency-key"), "r9");
  assert.equal(call.headers.get("X-Raft-Forwarded"), "n1");
  const timeoutMs = Number(call.headers.get("X-Raft-Timeout-Ms"));
  assert.ok(timeoutMs > 0 && timeoutMs < 200, `relayed timeout ${timeoutMs}`);
});

Deno.test("the leader's error answers are relayed with their status and headers", async () => {
  const leader = capturingFetch(
    leaderAnswer(409, { ok: false, error: "compare failed", current: "7" }),
  );
  const { app, node } = testApp({ fetch: leader.fetch });
  node.leadership = LEADER;
  const answer = await send(app, "/cas?key=k&expected=1&value=2", { method: "POST" });
  assert.equal(answer.status, 409);
  assert.deepEqual(answer.body, { ok: false, error: "compare failed", current: "7" });
  assert.equal(leader.calls[0].url, `${LEADER.url}/cas?key=k&expected=1&value=2`);
});

Deno.test("a follower relays linearizable reads but serves stale reads itself", async () => {
  const leader = capturingFetch(leaderAnswer(200, { key: "k", value: "leader", index: 3 }));
  const { app, node } = testApp({ fetch: leader.fetch });
  node.leadership = "self";
  await send(app, "/set?key=k&value=local");
  node.leadership = LEADER;
  const linearizable = await send(app, "/get?key=k");
  assert.equal(linearizable.body.value, "leader");
  assert.equal(leader.calls[0].url, `${LEADER.url}/get?key=k`);
  assert.equal(leader.calls[0].method, "GET");
  const stale = await send(app, "/get?key=k&consistency=stale");
  assert.equal(stale.body.value, "local");
  assert.equal((await send(app, "/kv/k?consistency=stale")).body.value, "local");
  assert.equal(leader.calls.length, 1, "stale reads are never forwarded");
});

Deno.test("PUT /kv/{key} is relayed with its raw body; other /kv bodies are not", async () => {
  const leader = capturingFetch(leaderAnswer(200, { ok: true, index: 5 }));
  const { app, node } = testApp({ fetch: leader.fetch });
  node.leadership = LEADER;
  await send(app, "/kv/a%2Fb", {
    method: "PUT",
    body: "raw value",
    headers: { "content-type": "text/plain" },
  });
  assert.equal(leader.calls[0].url, `${LEADER.url}/kv/a%2Fb`);
  assert.equal(decoder.decode(leader.calls[0].body), "raw value");
  assert.equal(leader.calls[0].headers.get("content-type"), "text/plain");
  await send(app, "/kv/a", { method: "DELETE", body: "ignored" });
  assert.equal(leader.calls[1].method, "DELETE");
  assert.equal(leader.calls[1].body.length, 0);
});

Deno.test("a forwarded request that reaches a non-leader is not relayed again: 503", async () => {
  const leader = capturingFetch(leaderAnswer(200, { ok: true, index: 1 }));
  const { app, node } = testApp({ fetch: leader.fetch });
  node.leadership = LEADER;
  const answer = await send(app, "/set?key=k&value=v", { headers: { "X-Raft-Forwarded": "n3" } });
  assert.equal(answer.status, 503);
  assert.equal(answer.body.error, "no leader");
  assert.equal(answer.headers.get("Retry-After"), "1");
  assert.equal(leader.calls.length, 0);
});

Deno.test("a forwarded request honours the relayed timeout when it is shorter", async () => {
  const { app, node } = testApp({ requestTimeoutMs: 5_000 });
  const started = performance.now();
  const answer = await send(app, "/get?key=k&consistency=stale&min_index=9", {
    headers: { "X-Raft-Forwarded": "n3", "X-Raft-Timeout-Ms": "20" },
  });
  assert.equal(answer.status, 503);
  assert.ok(performance.now() - started < 2_000);
  assert.equal(node.proposals.length, 0);
});

Deno.test("with no leader known and none found before the deadline: 503 no leader", async () => {
  const leader = capturingFetch(leaderAnswer(200, { ok: true, index: 1 }));
  const { app, node } = testApp({ fetch: leader.fetch });
  node.leadership = null;
  for (const path of ["/set?key=k&value=v", "/get?key=k", "/delete?key=k"]) {
    const answer = await send(app, path, { method: path.startsWith("/get") ? "GET" : "POST" });
    assert.equal(answer.status, 503, path);
    assert.equal(answer.body.error, "no leader");
    assert.equal(answer.headers.get("Retry-After"), "1");
  }
  assert.equal(leader.calls.length, 0);
  assert.equal(node.proposals.length, 0);
});

Deno.test("a leader found while waiting serves the request: itself, or by relaying", async () => {
  const leader = capturingFetch(leaderAnswer(200, { ok: true, index: 8 }));
  const { app, node } = testApp({ fetch: leader.fetch });
  node.leadership = null;
  node.leaderAfterWait = "self";
  assert.deepEqual((await send(app, "/set?key=k&value=v")).body, { ok: true, index: 1 });
  assert.equal(leader.calls.length, 0);
  node.leadership = null;
  node.leaderAfterWait = LEADER;
  assert.deepEqual((await send(app, "/set?key=k&value=v")).body, { ok: true, index: 8 });
  assert.equal(leader.calls.length, 1);
});

Deno.test("an unreachable leader is a 503 for reads and an unknown outcome for writes", async () => {
  // fetch may have delivered a first attempt before a retry met "connection refused".
  const refused = capturingFetch(() => {
    throw new TypeError("error sending request: tcp connect error: Connection refused");
  });
  const { app, node } = testApp({ fetch: refused.fetch });
  node.leadership = LEADER;
  const write = await send(app, "/set?key=k&value=v");
  assert.equal(write.status, 504);
  assert.equal(write.body.outcome, "unknown");
  const read = await send(app, "/get?key=k");
  assert.equal(read.status, 503);
  assert.equal(read.body.error, "no leader");
  assert.equal(read.body.leader, LEADER.url);
  assert.equal(read.headers.get("Retry-After"), "1");
});

Deno.test("a write relayed to a leader that does not answer in time is 504 outcome unknown", async () => {
  const silent = capturingFetch((request) => hangUntilAborted(request.signal));
  const { app, node } = testApp({ fetch: silent.fetch, requestTimeoutMs: 40 });
  node.leadership = LEADER;
  const write = await send(app, "/set?key=k&value=v");
  assert.equal(write.status, 504);
  assert.equal(write.body.error, "timeout");
  assert.equal(write.body.outcome, "unknown");
  const read = await send(app, "/get?key=k");
  assert.equal(read.status, 503, "a read changed nothing: retry is safe");
  assert.equal(read.headers.get("Retry-After"), "1");
});

Deno.test("a connection lost after the write was sent is 504 outcome unknown", async () => {
  const reset = capturingFetch(() => {
    throw new TypeError("error reading a body from connection: connection reset");
  });
  const { app, node } = testApp({ fetch: reset.fetch });
  node.leadership = LEADER;
  const write = await send(app, "/delete?key=k", { method: "DELETE" });
  assert.equal(write.status, 504);
  assert.equal(write.body.outcome, "unknown");
});

Deno.test("the relayed answer names the leader even when the leader's answer does not", async () => {
  const { app, node } = testApp({
    fetch: capturingFetch(() => {
      // By the time the answer comes, this node no longer knows a leader: only the relay
      // itself can name the leader it relayed to.
      node.leadership = null;
      return new Response('{"ok":true,"index":2}', {
        headers: { "content-type": "application/json" },
      });
    }).fetch,
  });
  node.leadership = LEADER;
  const answer = await send(app, "/set?key=k&value=v");
  assert.equal(answer.headers.get("X-Raft-Leader"), LEADER.url);
  assert.notEqual(answer.headers.get("X-Raft-Leader"), SELF_URL);
});

Deno.test("a forwarded request at a node that becomes leader while waiting is served there", async () => {
  const leader = capturingFetch(leaderAnswer(200, { ok: true, index: 1 }));
  const { app, node } = testApp({ fetch: leader.fetch });
  node.leadership = null;
  node.leaderAfterWait = "self";
  const answer = await send(app, "/set?key=k&value=v", { headers: { "X-Raft-Forwarded": "n3" } });
  assert.deepEqual(answer.body, { ok: true, index: 1 });
  assert.equal(leader.calls.length, 0);
  node.leadership = null;
  node.leaderAfterWait = LEADER;
  const elsewhere = await send(app, "/set?key=k&value=v", {
    headers: { "X-Raft-Forwarded": "n3" },
  });
  assert.equal(elsewhere.status, 503, "never relayed twice");
  assert.equal(elsewhere.body.leader, LEADER.url);
  assert.equal(leader.calls.length, 0);
});

Deno.test("requestTimeoutMs() takes a relayed timeout only from a forwarded request, clamped", () => {
  const relayed = (value: string, forwarded = true) =>
    new Headers({ "X-Raft-Timeout-Ms": value, ...(forwarded ? { "X-Raft-Forwarded": "n2" } : {}) });
  assert.equal(requestTimeoutMs(relayed("150"), 2_000), 150);
  assert.equal(requestTimeoutMs(relayed("150", false), 2_000), 2_000);
  assert.equal(requestTimeoutMs(relayed("999999"), 2_000), 2_000);
  assert.equal(requestTimeoutMs(relayed("0"), 2_000), 1);
  assert.equal(requestTimeoutMs(relayed("-5"), 2_000), 2_000);
  assert.equal(requestTimeoutMs(relayed("1e3"), 2_000), 2_000);
});
