/**
 * The client and operating API of API.md, spoken to over real HTTP on a real 3-node cluster:
 * every call through the leader and through each follower, the status codes and error bodies,
 * the X-Raft-* headers, read-your-writes with stale reads, and the operating endpoints.
 */
import assert from "node:assert/strict";
import {
  Cluster,
  type HttpAnswer,
  httpRequest,
  type NodeProcess,
  waitApplied,
  waitFor,
} from "./_harness.ts";

// deno-lint-ignore no-console
const print = console.log;

const REQUEST_TIMEOUT_MS = 3_000;
const JSON_HEADERS = { "Content-Type": "application/json" };
const METRIC_NAMES = [
  "raftkv_term",
  "raftkv_commit_index",
  "raftkv_applied_index",
  "raftkv_http_request_duration_seconds_bucket",
];

function post(url: string, body: unknown): Promise<HttpAnswer> {
  return httpRequest(url, { method: "POST", headers: JSON_HEADERS, body: JSON.stringify(body) });
}

/** Every answer names the applied index it reflects and, with a leader known, the leader. */
function assertRaftHeaders(answer: HttpAnswer, leader: NodeProcess, what: string): void {
  const index = answer.headers.get("X-Raft-Index");
  assert.match(index ?? "", /^\d+$/, `${what}: X-Raft-Index is "${index}"`);
  assert.equal(answer.headers.get("X-Raft-Leader"), leader.url, `${what}: X-Raft-Leader`);
  assert.match(answer.headers.get("Content-Type") ?? "", /application\/json/, `${what}: JSON`);
}

function assertAnswer(
  answer: HttpAnswer,
  status: number,
  body: Record<string, unknown> | undefined,
  what: string,
): void {
  assert.equal(answer.status, status, `${what}: status ${answer.status}, body ${answer.text}`);
  assert.ok(answer.json !== undefined, `${what}: the body is not a JSON object: ${answer.text}`);
  if (body !== undefined) assert.deepEqual(answer.json, body, what);
}

function writeIndex(answer: HttpAnswer, what: string): number {
  const index = answer.json?.index;
  assert.ok(
    typeof index === "number" && Number.isSafeInteger(index) && index > 0,
    `${what}: no index in ${answer.text}`,
  );
  return index;
}

/** set, get, cas (ok, 409, absent), delete, get 404 through one entry node. */
async function crudThrough(node: NodeProcess, leader: NodeProcess, tag: string): Promise<void> {
  const key = `crud-${tag}`;
  const set = await post(`${node.url}/set`, { key, value: "v1" });
  assertAnswer(set, 200, undefined, `${tag} set`);
  assert.equal(set.json?.ok, true);
  const setIndex = writeIndex(set, `${tag} set`);
  assertRaftHeaders(set, leader, `${tag} set`);

  const get = await httpRequest(`${node.url}/get?key=${key}`);
  assertAnswer(get, 200, { key, value: "v1", index: setIndex }, `${tag} get`);
  assertRaftHeaders(get, leader, `${tag} get`);

  const cas = await post(`${node.url}/cas`, { key, expected: "v1", value: "v2" });
  assertAnswer(cas, 200, undefined, `${tag} cas`);
  const casIndex = writeIndex(cas, `${tag} cas`);
  assert.ok(casIndex > setIndex, `${tag}: cas index ${casIndex} after set index ${setIndex}`);
  assertRaftHeaders(cas, leader, `${tag} cas`);

  const casFailed = await post(`${node.url}/cas`, { key, expected: "v1", value: "v3" });
  assertAnswer(casFailed, 409, { ok: false, error: "compare failed", current: "v2" }, `${tag} 409`);
  assertRaftHeaders(casFailed, leader, `${tag} cas 409`);

  // `expected` omitted: the key must not exist.
  const casAbsent = await post(`${node.url}/cas`, { key, value: "v4" });
  assertAnswer(casAbsent, 409, { ok: false, error: "compare failed", current: "v2" }, tag);
  const casNew = await post(`${node.url}/cas`, { key: `${key}-new`, value: "n" });
  assertAnswer(casNew, 200, undefined, `${tag} cas on a missing key`);
  const casMissing = await post(`${node.url}/cas`, {
    key: `${key}-none`,
    expected: "x",
    value: "y",
  });
  assertAnswer(casMissing, 409, { ok: false, error: "compare failed", current: null }, tag);

  const deleted = await post(`${node.url}/delete`, { key });
  assertAnswer(deleted, 200, { ok: true, deleted: true }, `${tag} delete`);
  assertRaftHeaders(deleted, leader, `${tag} delete`);
  const deletedAgain = await httpRequest(`${node.url}/delete?key=${key}`, { method: "DELETE" });
  assertAnswer(deletedAgain, 200, { ok: true, deleted: false }, `${tag} delete again`);

  const missing = await httpRequest(`${node.url}/get?key=${key}`);
  assertAnswer(missing, 404, { error: "key not found", key }, `${tag} get after delete`);
  assertRaftHeaders(missing, leader, `${tag} get 404`);
}

/** /kv/{key}: PUT with the raw body as the value, GET, DELETE. */
async function kvPathThrough(node: NodeProcess, leader: NodeProcess, tag: string): Promise<void> {
  for (const key of [`kv-${tag}`, `dir/${tag}/é ü`]) {
    const url = `${node.url}/kv/${key.split("/").map(encodeURIComponent).join("/")}`;
    const value = `raw {"not":"json"} ${tag} ✓\n`;
    const put = await httpRequest(url, { method: "PUT", body: value });
    assertAnswer(put, 200, undefined, `${tag} PUT ${key}`);
    const index = writeIndex(put, `${tag} PUT ${key}`);
    assertRaftHeaders(put, leader, `${tag} PUT /kv`);
    const get = await httpRequest(url);
    assertAnswer(get, 200, { key, value, index }, `${tag} GET ${key}`);
    const stale = await httpRequest(`${url}?consistency=stale&min_index=${index}`);
    assertAnswer(stale, 200, { key, value, index }, `${tag} stale GET ${key}`);
    const viaGet = await httpRequest(`${node.url}/get?key=${encodeURIComponent(key)}`);
    assertAnswer(viaGet, 200, { key, value, index }, `${tag} /get of ${key}`);
    const del = await httpRequest(url, { method: "DELETE" });
    assertAnswer(del, 200, { ok: true, deleted: true }, `${tag} DELETE ${key}`);
    const gone = await httpRequest(url);
    assertAnswer(gone, 404, { error: "key not found", key }, `${tag} GET ${key} after DELETE`);
  }
}

/** 400, 404, 405 and 413 as API.md lists them, each a JSON body with "error". */
async function errorsThrough(node: NodeProcess, tag: string): Promise<void> {
  const cases: [string, RequestInit, number][] = [
    ["/no/such/route", {}, 404],
    ["/kv", {}, 404],
    ["/get", { method: "DELETE" }, 405],
    ["/delete?key=a", { method: "GET" }, 405],
    ["/set", { method: "DELETE" }, 405],
    ["/cas", { method: "PATCH" }, 405],
    ["/kv/a", { method: "POST", body: "x" }, 405],
    ["/health", { method: "POST" }, 405],
    ["/status", { method: "PUT" }, 405],
    ["/set", { method: "POST", headers: JSON_HEADERS, body: '{"key": "a", "value": ' }, 400],
    ["/set", { method: "POST", headers: JSON_HEADERS, body: "not json" }, 400],
    ["/set?value=1", {}, 400],
    ["/set?key=&value=1", {}, 400],
    ["/set?key=a", {}, 400],
    ["/get", {}, 400],
    ["/get?key=", {}, 400],
    ["/get?key=a&consistency=eventual", {}, 400],
    ["/get?key=a&consistency=stale&min_index=-1", {}, 400],
    ["/delete", { method: "POST" }, 400],
    [`/set?key=${"k".repeat(1025)}&value=1`, {}, 413],
    [`/kv/${"k".repeat(1025)}`, { method: "PUT", body: "v" }, 413],
    [
      "/set",
      {
        method: "POST",
        headers: JSON_HEADERS,
        body: JSON.stringify({ key: "big", value: "v".repeat(512 * 1024 + 1) }),
      },
      413,
    ],
    ["/kv/big", { method: "PUT", body: "v".repeat(512 * 1024 + 1) }, 413],
  ];
  for (const [path, init, status] of cases) {
    const what = `${tag} ${init.method ?? "GET"} ${path.slice(0, 60)}`;
    const answer = await httpRequest(`${node.url}${path}`, init);
    assert.equal(answer.status, status, `${what}: status ${answer.status}, ${answer.text}`);
    assert.equal(typeof answer.json?.error, "string", `${what}: no "error" in ${answer.text}`);
    if (status === 405) assert.ok(answer.headers.get("Allow"), `${what}: no Allow header`);
    if (status === 404 && path === "/no/such/route") {
      assert.deepEqual(answer.json, { error: "not found", path });
    }
  }
  // A value of exactly 512 KiB and a key of exactly 1 KiB are accepted.
  const key = `${tag}-`.padEnd(1024, "k");
  const big = await post(`${node.url}/set`, { key, value: "v".repeat(512 * 1024) });
  assertAnswer(big, 200, undefined, `${tag} a key of 1 KiB and a value of 512 KiB`);
  const read = await post(`${node.url}/get`, { key });
  assert.equal(read.status, 200);
  assert.equal((read.json?.value as string).length, 512 * 1024);
}

Deno.test({
  name: "the client and operating API work through the leader and each follower",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    // A short server deadline keeps the 504 and 503 cases below quick.
    const cluster = await Cluster.start(3, {
      extraArgs: ["--request-timeout-ms", String(REQUEST_TIMEOUT_MS)],
    });
    try {
      const leader = await cluster.leader();
      const followers = cluster.followers(leader);
      assert.equal(followers.length, 2);
      const entries: [string, NodeProcess][] = [
        ["leader", leader],
        ["follower1", followers[0]],
        ["follower2", followers[1]],
      ];

      await t.step('curl "http://127.0.0.1:P/set?key=x&value=42" works as typed', async () => {
        for (const [tag, node] of entries) {
          const port = node.spec.port;
          const response = await fetch(`http://127.0.0.1:${port}/set?key=x&value=42`);
          const body = await response.json();
          assert.equal(response.status, 200, `${tag}: ${JSON.stringify(body)}`);
          assert.equal(body.ok, true);
          assert.ok(Number.isSafeInteger(body.index) && body.index > 0);
          const read = await fetch(`http://127.0.0.1:${port}/get?key=x`);
          assert.deepEqual(await read.json(), { key: "x", value: "42", index: body.index });
        }
      });

      await t.step("set, get, cas and delete through every node", async () => {
        for (const [tag, node] of entries) await crudThrough(node, leader, tag);
      });

      await t.step(
        "the answer to a write reflects an applied index at or above the write",
        async () => {
          // X-Raft-Index is "the applied index it reflects": the write itself is applied when it
          // is acknowledged, so a client may use either number as min_index.
          const low: string[] = [];
          for (const [tag, node] of entries) {
            for (let i = 0; i < 5; i++) {
              const set = await post(`${node.url}/set`, { key: `reflects-${tag}`, value: `${i}` });
              const index = writeIndex(set, `${tag} set`);
              const header = Number(set.headers.get("X-Raft-Index"));
              if (header < index) low.push(`${tag}: X-Raft-Index ${header} < index ${index}`);
            }
          }
          assert.deepEqual(low, [], "X-Raft-Index below the index of the acknowledged write");
        },
      );

      await t.step(
        "parameters from the query, a JSON body or a form body, with each method",
        async () => {
          const node = followers[0];
          const viaPut = await httpRequest(`${node.url}/set?key=m&value=put`, { method: "PUT" });
          assertAnswer(viaPut, 200, undefined, "PUT /set");
          const viaForm = await httpRequest(`${node.url}/set`, {
            method: "POST",
            headers: { "Content-Type": "application/x-www-form-urlencoded" },
            body: "key=m&value=form+%E2%9C%93",
          });
          assertAnswer(viaForm, 200, undefined, "form POST /set");
          const viaPost = await post(`${node.url}/get`, { key: "m" });
          assertAnswer(viaPost, 200, undefined, "POST /get");
          assert.equal(viaPost.json?.value, "form ✓");
          const casGet = await httpRequest(`${node.url}/cas?key=m&expected=form+%E2%9C%93&value=c`);
          assertAnswer(casGet, 200, undefined, "GET /cas");
          const casPut = await httpRequest(`${node.url}/cas?key=m&expected=c&value=d`, {
            method: "PUT",
          });
          assertAnswer(casPut, 200, undefined, "PUT /cas");
          const numeric = await post(`${node.url}/set`, { key: "n", value: 42 });
          assertAnswer(numeric, 200, undefined, 'JSON {"value": 42}');
          const read = await httpRequest(`${leader.url}/get?key=n&consistency=linearizable`);
          assert.equal(read.json?.value, "42");
        },
      );

      await t.step("/kv/{key} through every node", async () => {
        for (const [tag, node] of entries) await kvPathThrough(node, leader, tag);
      });

      await t.step(
        "errors: 400, 404, 405 and 413 with JSON bodies, through every node",
        async () => {
          for (const [tag, node] of entries) await errorsThrough(node, tag);
        },
      );

      await t.step(
        "a stale read with min_index on a follower reads the write just made",
        async () => {
          for (let i = 0; i < 20; i++) {
            const writer = entries[i % 3][1];
            const reader = followers[i % 2];
            const key = `ryw-${i}`;
            const set = await post(`${writer.url}/set`, { key, value: `v${i}` });
            const index = writeIndex(set, `write ${i}`);
            const read = await httpRequest(
              `${reader.url}/get?key=${key}&consistency=stale&min_index=${index}`,
            );
            assertAnswer(read, 200, { key, value: `v${i}`, index }, `stale read ${i}`);
            assert.ok(
              Number(read.headers.get("X-Raft-Index")) >= index,
              "X-Raft-Index >= min_index",
            );
          }
          // Without min_index a stale read is served locally; the key may or may not be there yet.
          const stale = await httpRequest(`${followers[1].url}/get?key=ryw-0&consistency=stale`);
          assert.ok(stale.status === 200 || stale.status === 404, stale.text);
        },
      );

      await t.step("/health, /ready, /status and /metrics", async () => {
        const commit = Number((await leader.status()).commitIndex);
        for (const [tag, node] of entries) {
          await waitApplied(node, commit);
          const health = await httpRequest(`${node.url}/health`);
          assertAnswer(health, 200, undefined, `${tag} /health`);
          const ready = await httpRequest(`${node.url}/ready`);
          assertAnswer(ready, 200, undefined, `${tag} /ready`);
          assert.equal(ready.json?.ok, true);
          const status = await httpRequest(`${node.url}/status`);
          assertAnswer(status, 200, undefined, `${tag} /status`);
          const body = status.json!;
          for (
            const field of [
              "term",
              "commitIndex",
              "appliedIndex",
              "lastLogIndex",
              "snapshotIndex",
            ]
          ) {
            assert.ok(Number.isSafeInteger(body[field]), `${tag} /status ${field}: ${status.text}`);
          }
          assert.equal(typeof body.id, "string");
          assert.equal(body.role, node === leader ? "leader" : "follower", `${tag} role`);
          assert.equal(body.leaderUrl, leader.url, `${tag} leaderUrl`);
          assert.equal(body.leader, (await leader.status()).id, `${tag} leader id`);
          assert.ok((body.appliedIndex as number) <= (body.commitIndex as number));
          assert.ok((body.commitIndex as number) <= (body.lastLogIndex as number));
          const members = body.members as Record<string, unknown>[];
          assert.equal(members.length, 3, `${tag} members`);
          assert.deepEqual(
            members.map((member) => member.url).sort(),
            cluster.nodes.map((n) => n.url).sort(),
          );
          for (const member of members) {
            assert.equal(member.voter, true);
            if (node !== leader || member.id === body.id) continue;
            for (const field of ["matchIndex", "nextIndex", "lastContactMs"]) {
              assert.equal(typeof member[field], "number", `leader's ${field}: ${status.text}`);
            }
          }
          const metrics = await httpRequest(`${node.url}/metrics`);
          assert.equal(metrics.status, 200);
          assert.match(metrics.headers.get("Content-Type") ?? "", /text\/plain/);
          for (const name of METRIC_NAMES) {
            assert.match(metrics.text, new RegExp(`^${name}\\b`, "m"), `${tag} /metrics ${name}`);
          }
        }
      });

      await t.step(
        "without a quorum: 504 for a proposed write, then 503 with Retry-After",
        async () => {
          await Promise.all(followers.map((node) => node.kill()));
          // Sent at once: the leader has not noticed yet, so it proposes and cannot commit.
          const proposed = await post(`${leader.url}/set`, { key: "lost-quorum", value: "x" });
          assert.equal(proposed.status, 504, `a proposed write without quorum: ${proposed.text}`);
          assert.equal(proposed.json?.error, "timeout");
          assert.equal(proposed.json?.outcome, "unknown");
          // CheckQuorum: the leader steps down once it has not heard from a majority.
          await waitFor("the lone leader to step down", async () => {
            const status = await leader.status();
            return status.role !== "leader" ? true : undefined;
          }, { timeoutMs: 30_000 });
          const refused = await post(`${leader.url}/set`, { key: "no-leader", value: "x" });
          assert.equal(refused.status, 503, `a write with no leader: ${refused.text}`);
          assert.equal(refused.json?.error, "no leader");
          assert.ok(refused.headers.get("Retry-After"), "503 without Retry-After");
          const read = await httpRequest(`${leader.url}/get?key=x`);
          assert.equal(read.status, 503, `a linearizable read with no leader: ${read.text}`);
          assert.ok(read.headers.get("Retry-After"), "503 without Retry-After");
          assert.equal(typeof read.json?.error, "string");
          const ready = await httpRequest(`${leader.url}/ready`);
          assert.equal(ready.status, 503, ready.text);
          const health = await httpRequest(`${leader.url}/health`);
          assert.equal(health.status, 200, health.text);
          // A stale read is local: it still answers.
          const stale = await httpRequest(`${leader.url}/get?key=x&consistency=stale`);
          assertAnswer(stale, 200, undefined, "a stale read with no leader");
        },
      );
    } catch (error) {
      print(cluster.logs());
      throw error;
    } finally {
      await cluster.destroy();
    }
  },
});
