/**
 * Bad input (DESIGN.md, Testing): every route fed malformed, oversized and hostile requests
 * answers a 4xx JSON with a clear message, keeps serving, and changes nothing stored.
 */
import assert from "node:assert/strict";
import { BODY_BYTES_MAX } from "../../http/params.ts";
import { VALUE_BYTES_MAX } from "../../kv/mod.ts";
import { send, testApp } from "./fake_node.ts";

interface BadCase {
  name: string;
  path: string;
  init?: RequestInit;
  status: number;
}

const json = (body: BodyInit, method = "POST"): RequestInit => ({
  method,
  headers: { "content-type": "application/json" },
  body,
});
const form = (body: BodyInit): RequestInit => ({
  method: "POST",
  headers: { "content-type": "application/x-www-form-urlencoded" },
  body,
});
const invalidUtf8 = new Uint8Array([0x6b, 0xff, 0xfe, 0x80]);

const CASES: BadCase[] = [
  { name: "garbage JSON", path: "/set", init: json("{key: x"), status: 400 },
  { name: "truncated JSON", path: "/set", init: json('{"key":"a","value":'), status: 400 },
  { name: "JSON array", path: "/set", init: json('["a","b"]'), status: 400 },
  { name: "JSON string", path: "/set", init: json('"a"'), status: 400 },
  { name: "JSON null body", path: "/set", init: json("null"), status: 400 },
  { name: "JSON object value", path: "/set", init: json('{"key":"a","value":{}}'), status: 400 },
  { name: "JSON array key", path: "/set", init: json('{"key":["a"],"value":"1"}'), status: 400 },
  { name: "JSON null key", path: "/set", init: json('{"key":null,"value":"1"}'), status: 400 },
  { name: "JSON float", path: "/set", init: json('{"key":"a","value":0.1}'), status: 400 },
  {
    name: "JSON lone surrogate",
    path: "/set",
    init: json('{"key":"\\ud800","value":"1"}'),
    status: 400,
  },
  { name: "invalid UTF-8 JSON", path: "/set", init: json(invalidUtf8), status: 400 },
  { name: "invalid UTF-8 form", path: "/set", init: form(invalidUtf8), status: 400 },
  {
    name: "invalid UTF-8 escaped in form",
    path: "/set",
    init: form("key=a&value=%FF"),
    status: 400,
  },
  { name: "invalid UTF-8 in query", path: "/set?key=%C3%28&value=1", status: 400 },
  { name: "bad escape in query", path: "/set?key=%G1&value=1", status: 400 },
  { name: "truncated escape in query", path: "/set?key=a&value=%4", status: 400 },
  {
    name: "invalid UTF-8 raw body",
    path: "/kv/a",
    init: { method: "PUT", body: invalidUtf8 },
    status: 400,
  },
  { name: "invalid UTF-8 in path key", path: "/kv/%E0%A4", init: { method: "PUT" }, status: 400 },
  { name: "bad escape in path key", path: "/kv/a%zz", init: { method: "DELETE" }, status: 400 },
  {
    name: "text/plain body",
    path: "/set",
    init: { method: "POST", headers: { "content-type": "text/plain" }, body: "key=a&value=1" },
    status: 415,
  },
  {
    name: "body without content type",
    path: "/cas",
    init: { method: "POST", body: new Uint8Array([1, 2, 3]) },
    status: 415,
  },
  {
    name: "XML body",
    path: "/delete",
    init: { method: "POST", headers: { "content-type": "application/xml" }, body: "<key/>" },
    status: 415,
  },
  {
    name: "multipart without boundary",
    path: "/set",
    init: { method: "POST", headers: { "content-type": "multipart/form-data" }, body: "x" },
    status: 400,
  },
  { name: "repeated query parameter", path: "/set?key=a&key=b&value=1", status: 400 },
  {
    name: "query and body disagree",
    path: "/set?key=a",
    init: json('{"key":"b","value":"1"}'),
    status: 400,
  },
  { name: "unknown consistency", path: "/get?key=a&consistency=strong", status: 400 },
  { name: "negative min_index", path: "/get?key=a&consistency=stale&min_index=-1", status: 400 },
  { name: "fractional min_index", path: "/get?key=a&consistency=stale&min_index=1.5", status: 400 },
  { name: "text min_index", path: "/get?key=a&consistency=stale&min_index=abc", status: 400 },
  {
    name: "unsafe min_index",
    path: "/get?key=a&consistency=stale&min_index=99999999999999999",
    status: 400,
  },
  { name: "empty min_index", path: "/get?key=a&consistency=stale&min_index=", status: 400 },
  { name: "missing key", path: "/delete", init: { method: "DELETE" }, status: 400 },
  { name: "empty key", path: "/cas?key=&value=1", status: 400 },
  { name: "missing value", path: "/cas?key=a&expected=1", status: 400 },
  {
    name: "body over the body limit",
    path: "/set",
    init: json(new Uint8Array(BODY_BYTES_MAX + 1)),
    status: 413,
  },
  {
    name: "raw value over the value limit",
    path: "/kv/a",
    init: { method: "PUT", body: "x".repeat(VALUE_BYTES_MAX + 1) },
    status: 413,
  },
  { name: "key over the key limit in path", path: `/kv/${"k".repeat(1025)}`, status: 413 },
  { name: "dot segments", path: "/kv/../../etc/passwd", status: 404 },
  { name: "encoded dot segments", path: "/%2e%2e/%2e%2e/etc/passwd", status: 404 },
  { name: "double slash", path: "//set?key=a&value=1", status: 404 },
  { name: "upper-case route", path: "/SET?key=a&value=1", status: 404 },
  { name: "trailing segment", path: "/set/extra?key=a&value=1", status: 404 },
  { name: "empty /kv key", path: "/kv/", init: { method: "PUT", body: "1" }, status: 400 },
  { name: "long path", path: `/${"a".repeat(10_000)}`, status: 404 },
  { name: "member with no url", path: "/cluster/members", init: json("{}"), status: 400 },
  {
    name: "member url not a string",
    path: "/cluster/members",
    init: json('{"url":[1]}'),
    status: 400,
  },
  { name: "transfer to nobody", path: "/cluster/leader", init: json('{"id":""}'), status: 400 },
  { name: "OPTIONS on /set", path: "/set", init: { method: "OPTIONS" }, status: 405 },
  { name: "PATCH on /kv", path: "/kv/a", init: { method: "PATCH", body: "1" }, status: 405 },
];

Deno.test("hostile and malformed requests get a 4xx JSON and change nothing", async () => {
  const { app, node, logs, exits } = testApp();
  await send(app, "/set?key=a&value=original");
  const before = node.stateMachine.snapshot();
  for (const bad of CASES) {
    const answer = await send(app, bad.path, bad.init);
    assert.equal(answer.status, bad.status, `${bad.name}: ${JSON.stringify(answer.body)}`);
    assert.equal(typeof answer.body.error, "string", `${bad.name}: has an error message`);
    assert.ok(String(answer.body.error).length > 0);
    assert.ok(answer.headers.has("X-Raft-Index"), `${bad.name}: X-Raft-Index`);
  }
  assert.deepEqual(node.stateMachine.snapshot(), before, "nothing stored changed");
  assert.equal(node.proposals.length, 1, "nothing was proposed");
  assert.deepEqual(node.changes, []);
  assert.deepEqual(exits, []);
  assert.deepEqual(logs.filter((record) => record.level === "error"), []);
  const still = await send(app, "/get?key=a");
  assert.deepEqual(still.body, { key: "a", value: "original", index: 1 });
});

Deno.test("an error message echoes a hostile path only up to a bound", async () => {
  const { app } = testApp();
  const answer = await send(app, `/${"x".repeat(50_000)}`);
  assert.equal(answer.status, 404);
  assert.ok(String(answer.body.path).length <= 1024);
});

Deno.test("a streamed body over the limit is refused without reading all of it", async () => {
  const { app, node } = testApp();
  let pulled = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulled++;
      controller.enqueue(new Uint8Array(64 * 1024));
      if (pulled > 1_000) controller.close();
    },
  });
  const answer = await send(app, "/set", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body,
  });
  assert.equal(answer.status, 413);
  assert.ok(pulled * 64 * 1024 < BODY_BYTES_MAX + 2 * 64 * 1024, "stopped reading at the limit");
  assert.equal(node.proposals.length, 0);
});
