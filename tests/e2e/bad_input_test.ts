/**
 * Hostile and malformed requests against every route of a real node (client API, operating
 * API and the peer routes /raft/*): each gets a 4xx, never a 5xx, with a JSON body naming the
 * error; the node keeps serving; and nothing stored changes (the applied and last log index,
 * the term, the leader and the values of known keys are the same before and after).
 */
import assert from "node:assert/strict";
import { encode } from "@msgpack/msgpack";
import {
  Cluster,
  freePort,
  type HttpAnswer,
  httpRequest,
  type NodeProcess,
  rawHttp,
  waitApplied,
} from "./_harness.ts";

// deno-lint-ignore no-console
const print = console.log;

const KEY_BYTES_MAX = 1024;
const VALUE_BYTES_MAX = 512 * 1024;
/** Deno.serve's HTTP parser refuses a request target over 64 KiB before raftkv sees it. */
const PARSER_URI_BYTES_MAX = 65_534;
const KNOWN: Record<string, string> = {
  known: "original",
  "dir/nested": "nested value",
  "é": "ü",
};

interface Case {
  name: string;
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  /** Sent over a raw socket: fetch would normalize or refuse it. */
  raw?: boolean;
  /** Refused by Deno.serve's HTTP parser (not valid HTTP/1.1): a bare 400 without a body. */
  parserLevel?: boolean;
}

const JSON_TYPE = { "Content-Type": "application/json" };
const FORM_TYPE = { "Content-Type": "application/x-www-form-urlencoded" };
const MSGPACK_TYPE = { "Content-Type": "application/msgpack" };

function req(
  name: string,
  method: string,
  path: string,
  body?: string | Uint8Array,
  headers?: Record<string, string>,
): Case {
  return { name, method, path, body, headers };
}

function json(name: string, path: string, body: string | Uint8Array, method = "POST"): Case {
  return { name, method, path, headers: JSON_TYPE, body };
}

function bytes(...values: number[]): Uint8Array {
  return new Uint8Array(values);
}

const longKey = "k".repeat(KEY_BYTES_MAX + 1);
const longValue = "v".repeat(VALUE_BYTES_MAX + 1);
const deepJson = `{"key":"known","value":${"[".repeat(50_000)}${"]".repeat(50_000)}}`;

/** Client routes: /set, /get, /cas, /delete, /kv/{key}. */
function clientCases(): Case[] {
  const cases: Case[] = [];
  for (const path of ["/set", "/get", "/cas", "/delete"]) {
    cases.push(
      { name: `${path} without a key`, method: "POST", path, headers: JSON_TYPE, body: "{}" },
      json(`${path} with an empty key`, path, '{"key":"","value":"x","expected":"original"}'),
      json(`${path} with a null key`, path, '{"key":null,"value":"x"}'),
      json(`${path} with a key of 1025 bytes`, path, JSON.stringify({ key: longKey, value: "x" })),
      { name: `${path} with an empty key in the query`, method: "POST", path: `${path}?key=` },
      {
        name: `${path} with a key of 1025 bytes in a form`,
        method: "POST",
        path,
        headers: FORM_TYPE,
        body: `key=${longKey}&value=x`,
      },
      json(`${path} with a truncated JSON body`, path, '{"key":"known","value":"x"'),
      json(`${path} with JSON garbage`, path, "}{ not json at all"),
      json(`${path} with a JSON array`, path, '["known","x"]'),
      json(`${path} with a JSON string`, path, '"known"'),
      json(`${path} with JSON null`, path, "null"),
      json(`${path} with trailing garbage`, path, '{"key":"known","value":"x"} trailing'),
      json(`${path} with an object key`, path, '{"key":{"a":1},"value":"x"}'),
      json(`${path} with a boolean key`, path, '{"key":true,"value":"x"}'),
      json(`${path} with a lone surrogate key`, path, '{"key":"\\ud800","value":"x"}'),
      json(`${path} with invalid UTF-8 in JSON`, path, bytes(0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d)),
      json(
        `${path} with invalid UTF-8 in a JSON string`,
        path,
        bytes(
          ...new TextEncoder().encode('{"key":"known","value":"'),
          0xc3,
          0x28,
          ...new TextEncoder().encode('"}'),
        ),
      ),
      {
        name: `${path} with invalid UTF-8 in a form`,
        method: "POST",
        path,
        headers: FORM_TYPE,
        body: "key=known&value=%FF%FE",
      },
      { name: `${path} with invalid UTF-8 in the query`, method: "POST", path: `${path}?key=%FF` },
      { name: `${path} with a bad percent escape`, method: "POST", path: `${path}?key=%zz` },
      {
        name: `${path} with text/plain`,
        method: "POST",
        path,
        headers: { "Content-Type": "text/plain" },
        body: "key=known&value=x",
      },
      {
        name: `${path} with application/xml`,
        method: "POST",
        path,
        headers: { "Content-Type": "application/xml" },
        body: "<key>known</key>",
      },
      {
        name: `${path} with MessagePack`,
        method: "POST",
        path,
        headers: MSGPACK_TYPE,
        body: encode({ key: "known", value: "x" }),
      },
      {
        name: `${path} with a body and no content type`,
        method: "POST",
        path,
        body: bytes(0x00, 0x01, 0xff),
      },
      {
        name: `${path} with a garbage multipart body`,
        method: "POST",
        path,
        headers: { "Content-Type": "multipart/form-data; boundary=x" },
        body: "--y\r\ngarbage",
      },
      {
        name: `${path} with a body over the limit`,
        method: "POST",
        path,
        headers: JSON_TYPE,
        body: JSON.stringify({ key: "known", value: "v".repeat(4 * 1024 * 1024) }),
      },
      req(
        `${path} with the key twice`,
        "POST",
        `${path}?key=known&key=other&value=x&expected=original`,
      ),
      json(`${path} with a key that disagrees with the query`, `${path}?key=known`, '{"key":"x"}'),
      { name: `${path} with PATCH`, method: "PATCH", path: `${path}?key=known&value=x` },
      { name: `${path} with an unknown method`, method: "FOO", path: `${path}?key=known` },
      { name: `${path} with OPTIONS`, method: "OPTIONS", path },
      req(`${path} with a very long URL`, "POST", `${path}?key=${"a".repeat(60_000)}`),
    );
  }
  cases.push(
    json(
      "/set with a value of 512 KiB + 1",
      "/set",
      JSON.stringify({ key: "known", value: longValue }),
    ),
    json("/set without a value", "/set", '{"key":"known"}'),
    json("/set with a null value", "/set", '{"key":"known","value":null}'),
    json("/set with a float value", "/set", '{"key":"known","value":1.5}'),
    json("/set with a huge number", "/set", '{"key":"known","value":1e400}'),
    json("/set with an array value", "/set", '{"key":"known","value":["x"]}'),
    json("/set with a deeply nested value", "/set", deepJson),
    json("/set with an empty request_id", "/set", '{"key":"known","value":"x","request_id":""}'),
    json(
      "/set with a long request_id",
      "/set",
      JSON.stringify({
        key: "known",
        value: "x",
        request_id: "r".repeat(300),
      }),
    ),
    json(
      "/cas with an expected of 512 KiB + 1",
      "/cas",
      JSON.stringify({
        key: "known",
        expected: longValue,
        value: "x",
      }),
    ),
    json("/cas without a value", "/cas", '{"key":"known","expected":"original"}'),
    req("/get with a bad consistency", "GET", "/get?key=known&consistency=all"),
    req("/get with a bad min_index", "GET", "/get?key=known&min_index=abc"),
    req("/get with a negative min_index", "GET", "/get?key=known&min_index=-5"),
    req(
      "/get with a huge min_index",
      "GET",
      "/get?key=known&consistency=stale&min_index=99999999999999999999",
    ),
    req("/delete with GET", "GET", "/delete?key=known"),
    req("/get with DELETE", "DELETE", "/get?key=known"),
    req("/set with HEAD", "HEAD", "/set?key=known&value=x"),
    req("PUT /kv/{key} over the value limit", "PUT", "/kv/known", longValue),
    req("PUT /kv/{key} with invalid UTF-8", "PUT", "/kv/known", bytes(0xff)),
    req(
      "PUT /kv/{key} with a truncated UTF-8 sequence",
      "PUT",
      "/kv/known",
      bytes(0x61, 0xe2, 0x82),
    ),
    req("PUT /kv/{key} with a 1025-byte key", "PUT", `/kv/${longKey}`, "x"),
    req("PUT /kv/{key} with invalid UTF-8 in the key", "PUT", "/kv/%FF", "x"),
    { name: "PUT /kv/{key} with a truncated escape", method: "PUT", path: "/kv/%C3", body: "x" },
    { name: "PUT /kv/{key} with a bad escape", method: "PUT", path: "/kv/a%zzb", body: "x" },
    { name: "POST /kv/{key}", method: "POST", path: "/kv/known", body: "x" },
    { name: "PATCH /kv/{key}", method: "PATCH", path: "/kv/known", body: "x" },
    req(
      "PUT /kv/{key} with a request_id of 300 bytes",
      "PUT",
      `/kv/known?request_id=${"r".repeat(300)}`,
      "x",
    ),
    req("DELETE /kv/{key} with an empty Idempotency-Key", "DELETE", "/kv/known", undefined, {
      "Idempotency-Key": "",
    }),
    req("GET /kv/ with no key", "GET", "/kv/"),
    req("PUT /kv with no key", "PUT", "/kv", "x"),
  );
  return cases;
}

/** Operating routes: /health, /ready, /status, /metrics, /cluster/*. */
function opsCases(): Case[] {
  const closedPort = freePort();
  return [
    req("POST /health", "POST", "/health", "x"),
    req("DELETE /ready", "DELETE", "/ready"),
    { name: "PUT /status", method: "PUT", path: "/status", headers: JSON_TYPE, body: "{}" },
    req("POST /metrics", "POST", "/metrics"),
    req("GET /health/extra", "GET", "/health/extra"),
    req("GET /cluster/members", "GET", "/cluster/members"),
    json("POST /cluster/members without a url", "/cluster/members", "{}"),
    json("POST /cluster/members with an empty url", "/cluster/members", '{"url":""}'),
    json("POST /cluster/members with a bad url", "/cluster/members", '{"url":"not a url"}'),
    json(
      "POST /cluster/members with an ftp url",
      "/cluster/members",
      '{"url":"ftp://127.0.0.1:1"}',
    ),
    json(
      "POST /cluster/members with credentials",
      "/cluster/members",
      JSON.stringify({
        url: "http://user:pw@127.0.0.1:1",
      }),
    ),
    json(
      "POST /cluster/members with a url that does not answer",
      "/cluster/members",
      JSON.stringify({
        url: `http://127.0.0.1:${closedPort}`,
      }),
    ),
    json("POST /cluster/members with garbage JSON", "/cluster/members", "{url:"),
    json("POST /cluster/members with a number", "/cluster/members", '{"url":1.5}'),
    req(
      "POST /cluster/members with MessagePack",
      "POST",
      "/cluster/members",
      encode({ url: "http://127.0.0.1:1" }),
      MSGPACK_TYPE,
    ),
    req("DELETE /cluster/members/{unknown}", "DELETE", "/cluster/members/nobody"),
    req("DELETE /cluster/members/{bad escape}", "DELETE", "/cluster/members/%zz"),
    req("DELETE /cluster/members/{huge id}", "DELETE", `/cluster/members/${"i".repeat(5_000)}`),
    req("DELETE /cluster/members/", "DELETE", "/cluster/members/"),
    { name: "GET /cluster/members/{id}", method: "GET", path: "/cluster/members/nobody" },
    json("POST /cluster/leader without an id", "/cluster/leader", "{}"),
    json("POST /cluster/leader with an empty id", "/cluster/leader", '{"id":""}'),
    json("POST /cluster/leader with an unknown id", "/cluster/leader", '{"id":"nobody"}'),
    json("POST /cluster/leader with an array id", "/cluster/leader", '{"id":["a"]}'),
    json("POST /cluster/leader with garbage", "/cluster/leader", "\u0000\u0001"),
    req("GET /cluster/leader", "GET", "/cluster/leader"),
    req("GET /cluster/snapshot", "GET", "/cluster/snapshot"),
    req("DELETE /cluster/snapshot", "DELETE", "/cluster/snapshot"),
    req("GET /cluster", "GET", "/cluster"),
  ];
}

/** Peer routes: malformed MessagePack and malformed messages addressed to this node. */
function raftCases(selfId: string): Case[] {
  const base = {
    type: "appendEntries",
    from: "intruder",
    to: selfId,
    term: 1,
    prevLogIndex: 0,
    prevLogTerm: 0,
    entries: [],
    leaderCommit: 0,
  };
  const message = (name: string, fields: Record<string, unknown>, path = "/raft/messages") => ({
    name,
    method: "POST",
    path,
    headers: MSGPACK_TYPE,
    body: encode([{ ...base, ...fields }]),
  });
  const withoutLeaderCommit: Record<string, unknown> = { ...base };
  delete withoutLeaderCommit.leaderCommit;
  return [
    req("GET /raft/messages", "GET", "/raft/messages"),
    req("PUT /raft/snapshot", "PUT", "/raft/snapshot", "x"),
    req("POST /raft/nothing", "POST", "/raft/nothing", "x"),
    req("POST /raft", "POST", "/raft", "x"),
    req("/raft/messages with an empty body", "POST", "/raft/messages", undefined, MSGPACK_TYPE),
    req(
      "/raft/messages with garbage bytes",
      "POST",
      "/raft/messages",
      bytes(0xc1, 0xff, 0x00, 0x13, 0x37),
      MSGPACK_TYPE,
    ),
    req(
      "/raft/messages with truncated MessagePack",
      "POST",
      "/raft/messages",
      encode([base]).subarray(0, 20),
      MSGPACK_TYPE,
    ),
    req("/raft/messages with JSON", "POST", "/raft/messages", JSON.stringify([base]), JSON_TYPE),
    req("/raft/messages with text/plain", "POST", "/raft/messages", encode([base]), {
      "Content-Type": "text/plain",
    }),
    req(
      "/raft/messages with a map instead of an array",
      "POST",
      "/raft/messages",
      encode(base),
      MSGPACK_TYPE,
    ),
    req(
      "/raft/messages with an array header claiming 4 billion items",
      "POST",
      "/raft/messages",
      bytes(0xdd, 0xff, 0xff, 0xff, 0xff),
      MSGPACK_TYPE,
    ),
    req("/raft/messages from another cluster", "POST", "/raft/messages", encode([base]), {
      ...MSGPACK_TYPE,
      "X-Raft-Cluster": "another-cluster",
    }),
    req(
      "/raft/messages over the size limit",
      "POST",
      "/raft/messages",
      new Uint8Array(8 * 1024 * 1024 + 1),
      MSGPACK_TYPE,
    ),
    req(
      "/raft/messages with 100,000 nested arrays",
      "POST",
      "/raft/messages",
      new Uint8Array([...new Array(100_000).fill(0x91), 0xc0]),
      MSGPACK_TYPE,
    ),
    req(
      "/raft/messages with a map header claiming 4 billion entries",
      "POST",
      "/raft/messages",
      bytes(0x91, 0xdf, 0xff, 0xff, 0xff, 0xff),
      MSGPACK_TYPE,
    ),
    req(
      "/raft/messages with a string header claiming 4 GiB",
      "POST",
      "/raft/messages",
      bytes(0x91, 0xdb, 0xff, 0xff, 0xff, 0xff, 0x61),
      MSGPACK_TYPE,
    ),
    message("a message of an unknown type", { type: "takeOver" }),
    message("a message without a type", { type: undefined }),
    message("a negative term", { term: -1 }),
    message("a term beyond safe integers", { term: 2 ** 60 }),
    message("a fractional term", { term: 1.5 }),
    message("a term as a string", { term: "1" }),
    message("a numeric sender", { from: 12 }),
    message("an oversized sender", { from: "x".repeat(10_000) }),
    message("entries that are not an array", { entries: "x" }),
    message("an entry of a bad shape", {
      entries: [{ type: "command", index: 1, term: 1, data: "x" }],
    }),
    message("an entry of an unknown type", { entries: [{ type: "magic", index: 1, term: 1 }] }),
    message("no leaderCommit", { leaderCommit: undefined }),
    req(
      "/raft/messages with a field missing",
      "POST",
      "/raft/messages",
      encode([withoutLeaderCommit]),
      MSGPACK_TYPE,
    ),
    message("/raft/snapshot with an appendEntries", {}, "/raft/snapshot"),
    req("/raft/snapshot with garbage", "POST", "/raft/snapshot", bytes(0x93, 0xc1), MSGPACK_TYPE),
  ];
}

/** Requests fetch would not send as written: dot segments, NUL, raw bytes, huge targets. */
function rawCases(): Case[] {
  const raw = (name: string, method: string, path: string, parserLevel = false): Case => ({
    name,
    method,
    path,
    raw: true,
    parserLevel,
  });
  return [
    raw("dot segments to /status", "GET", "/../status"),
    raw("dot segments to /etc/passwd", "GET", "/../../../../etc/passwd"),
    raw("encoded dot segments", "GET", "/%2e%2e/%2e%2e/etc/passwd"),
    raw("dot segments in /kv", "GET", "/kv/../../etc/passwd"),
    raw("encoded dot segments in /kv", "GET", "/kv/..%2f..%2fetc%2fpasswd"),
    raw("a NUL key in /kv", "GET", "/kv/%00"),
    raw("a NUL in a route", "GET", "/get%00?key=known"),
    raw("a NUL in a route for a write", "POST", "/set%00?key=known&value=x"),
    raw("backslashes", "GET", "/..\\..\\status"),
    raw("a double slash before /set", "POST", "//set?key=known&value=x"),
    raw("dot segments into /raft", "POST", "/raft/../raft/nothing"),
    raw("a bad escape in a route", "GET", "/%zz"),
    raw("a path of 60 KiB", "GET", `/${"p".repeat(60_000)}`),
    raw("a NUL byte in the request line", "GET", "/get?key=a\u0000b", true),
    raw("raw bytes 0xff in the request line", "GET", "/kv/\u00ff\u00fe", true),
    raw("a space in the request target", "GET", "/get?key=a b", true),
    raw("a request target without a slash", "GET", "status", true),
    raw("a method with bad characters", "G@T", "/status", true),
    raw("a URL over 64 KiB", "GET", `/get?key=${"a".repeat(PARSER_URI_BYTES_MAX + 10)}`, true),
    raw("a URL of 1 MiB", "POST", `/set?key=known&value=${"a".repeat(1024 * 1024)}`, true),
  ];
}

async function send(node: NodeProcess, request: Case): Promise<HttpAnswer> {
  if (request.raw === true) {
    const headers = Object.entries(request.headers ?? {}).map(([name, value]) =>
      `\r\n${name}: ${value}`
    );
    const body = typeof request.body === "string"
      ? new TextEncoder().encode(request.body)
      : request.body;
    return await rawHttp(
      node.spec.port,
      `${request.method} ${request.path} HTTP/1.1${headers.join("")}`,
      body,
    );
  }
  return await httpRequest(`${node.url}${request.path}`, {
    method: request.method,
    headers: request.headers,
    body: request.body as BodyInit | undefined,
  });
}

/** What must not change: indexes, term, leader, key count and the known keys' values. */
async function fingerprint(cluster: Cluster): Promise<string> {
  const parts: unknown[] = [];
  for (const node of cluster.nodes) {
    const status = await node.status();
    const values: Record<string, string | null> = {};
    for (const key of Object.keys(KNOWN)) {
      values[key] = (await node.client().get(key, { consistency: "stale" })).value;
    }
    parts.push({
      node: node.url,
      appliedIndex: status.appliedIndex,
      commitIndex: status.commitIndex,
      lastLogIndex: status.lastLogIndex,
      term: status.term,
      leader: status.leader,
      keys: status.keys,
      values,
    });
  }
  return JSON.stringify(parts, null, 1);
}

/** Runs every case against `node`; returns the problems found. */
async function feed(node: NodeProcess, cases: Case[]): Promise<string[]> {
  const problems: string[] = [];
  for (const request of cases) {
    const what = `${request.name} (${request.method} ${request.path.slice(0, 60)} on ${node.url})`;
    let answer: HttpAnswer;
    try {
      answer = await send(node, request);
    } catch (error) {
      problems.push(`${what}: no answer: ${error}`);
      continue;
    }
    if (answer.status < 400 || answer.status > 499) {
      problems.push(`${what}: status ${answer.status}: ${answer.text.slice(0, 200)}`);
    } else if (request.method === "HEAD" || request.parserLevel === true) {
      // HEAD answers carry no body; the HTTP parser's own 400 has none either.
    } else if (typeof answer.json?.error !== "string") {
      problems.push(
        `${what}: ${answer.status} without a JSON "error": ${answer.text.slice(0, 200)}`,
      );
    }
    const health = await httpRequest(`${node.url}/health`).catch((error) => error);
    if (health.status !== 200) {
      problems.push(`${what}: the node stopped serving: ${health}`);
      break;
    }
  }
  return problems;
}

Deno.test({
  name: "malformed, oversized and hostile requests on every route get a 4xx and change nothing",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const cluster = await Cluster.start(3);
    try {
      const leader = await cluster.leader();
      const follower = cluster.followers(leader)[0];
      let lastIndex = 0;
      for (const [key, value] of Object.entries(KNOWN)) {
        const answer = await leader.client().set(key, value);
        assert.equal(answer.status, 200, JSON.stringify(answer.body));
        lastIndex = answer.writeIndex!;
      }
      await Promise.all(cluster.nodes.map((node) => waitApplied(node, lastIndex)));
      const before = await fingerprint(cluster);

      const problems: string[] = [];
      const startedAtMs = Date.now();
      let requests = 0;
      for (const node of [leader, follower]) {
        const selfId = String((await node.status()).id);
        const cases = [...clientCases(), ...opsCases(), ...raftCases(selfId), ...rawCases()];
        requests += cases.length;
        problems.push(...await feed(node, cases));
      }
      print(`${requests} bad requests in ${Date.now() - startedAtMs} ms`);
      assert.deepEqual(problems, [], `bad requests that were not answered with a JSON 4xx`);

      const after = await fingerprint(cluster);
      assert.equal(after, before, "bad requests changed what is stored");

      // Still serving: a write through each node is applied everywhere.
      for (const node of cluster.nodes) {
        const write = await node.client().set(`after-${node.spec.port}`, "ok");
        assert.equal(write.status, 200, JSON.stringify(write.body));
        for (const reader of cluster.nodes) {
          const read = await reader.client().get(`after-${node.spec.port}`, {
            consistency: "stale",
            minIndex: write.writeIndex!,
          });
          assert.equal(read.value, "ok");
        }
      }
    } catch (error) {
      print(cluster.logs());
      throw error;
    } finally {
      await cluster.destroy();
    }
  },
});
