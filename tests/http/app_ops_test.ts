/** The operating API of API.md: health, readiness, status, metrics and /cluster/*. */
import assert from "node:assert/strict";
import { Metrics } from "../../http/metrics.ts";
import { capturingFetch, jsonInit, LEADER, SELF_URL, send, testApp } from "./fake_node.ts";
import { parseLabels, parsePrometheusText, sampleValue } from "./prometheus_parser.ts";

const NEW_URL = "http://n3.test:2020";

function statusFetch(id: unknown) {
  return capturingFetch((request) => {
    if (request.url === `${NEW_URL}/status`) return Response.json({ id, role: "follower" });
    return Response.json({ ok: true, relayed: true }, { headers: { "X-Raft-Index": "12" } });
  });
}

Deno.test("GET /health answers 200 {ok:true} whatever the cluster state", async () => {
  const { app, node } = testApp();
  node.leadership = null;
  const answer = await send(app, "/health");
  assert.equal(answer.status, 200);
  assert.deepEqual(answer.body, { ok: true });
});

Deno.test("GET /ready is 200 with a known leader and 503 without one", async () => {
  const { app, node } = testApp();
  const ready = await send(app, "/ready");
  assert.equal(ready.status, 200);
  assert.equal(ready.body.ok, true);
  node.leadership = LEADER;
  assert.equal((await send(app, "/ready")).status, 200, "a follower with a leader is ready");
  node.leadership = null;
  const notReady = await send(app, "/ready");
  assert.equal(notReady.status, 503);
  assert.equal(notReady.body.ok, false);
  assert.equal(notReady.body.reason, "no leader known");
});

Deno.test("GET /status answers the node status flat, with clusterId and the key count", async () => {
  const { app } = testApp();
  await send(app, "/set?key=a&value=1");
  const answer = await send(app, "/status");
  assert.equal(answer.status, 200);
  assert.deepEqual(
    Object.keys(answer.body).sort(),
    [
      "appliedIndex",
      "clusterId",
      "commitIndex",
      "id",
      "keys",
      "lastLogIndex",
      "leader",
      "leaderUrl",
      "logEntries",
      "members",
      "role",
      "snapshotBytes",
      "snapshotIndex",
      "term",
    ],
  );
  assert.equal(answer.body.id, "n1");
  assert.equal(answer.body.role, "leader");
  assert.equal(answer.body.leaderUrl, SELF_URL);
  assert.equal(answer.body.clusterId, "cluster-test");
  assert.equal(answer.body.keys, 1);
  assert.equal(answer.body.appliedIndex, 1);
  const members = answer.body.members as Record<string, unknown>[];
  assert.deepEqual(members[1], { ...LEADER, matchIndex: 0, nextIndex: 1, lastContactMs: 5 });
});

Deno.test("GET /metrics is valid Prometheus text with the raftkv metrics", async () => {
  const { app } = testApp();
  await send(app, "/set?key=a&value=1");
  await send(app, "/kv/some%2Fkey");
  await send(app, "/kv/other");
  await send(app, "/nowhere");
  const response = await app.request("/metrics");
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  const families = parsePrometheusText(await response.text());
  assert.equal(sampleValue(families, "raftkv_term"), 2);
  assert.equal(sampleValue(families, "raftkv_role", { role: "leader" }), 1);
  assert.equal(sampleValue(families, "raftkv_role", { role: "follower" }), 0);
  assert.equal(sampleValue(families, "raftkv_commit_index"), 1);
  assert.equal(sampleValue(families, "raftkv_applied_index"), 1);
  assert.equal(sampleValue(families, "raftkv_proposals_total", { result: "ok" }), 1);
  assert.equal(sampleValue(families, "raftkv_peer_match_index", { peer: "n2" }), 0);
  assert.equal(sampleValue(families, "raftkv_peer_lag_entries", { peer: "n2" }), 1);
  const duration = "raftkv_http_request_duration_seconds_count";
  assert.equal(sampleValue(families, duration, { route: "/kv/:key{.*}", status: "404" }), 2);
  assert.equal(sampleValue(families, duration, { route: "/set", status: "200" }), 1);
  assert.equal(sampleValue(families, duration, { route: "unmatched", status: "404" }), 1);
  assert.equal(families.get("raftkv_http_request_duration_seconds")?.type, "histogram");
  const routes = families.get("raftkv_http_request_duration_seconds")!.samples
    .map((sample) => sample.labels.route);
  assert.ok(!routes.includes("/kv/other"), "routes are patterns, not raw paths");
});

Deno.test("the metrics registry escapes label values and the parser reads them back", () => {
  const metrics = new Metrics();
  metrics.counter("t_total", "help with \\ and\nnewline").inc({ path: 'a"b\\c\nd' }, 2);
  const families = parsePrometheusText(metrics.render());
  assert.equal(sampleValue(families, "t_total", { path: 'a"b\\c\nd' }), 2);
  assert.deepEqual(parseLabels('{a="1",b="x\\"y"}'), { a: "1", b: 'x"y' });
  assert.throws(() => parsePrometheusText("t_total 1\n"), SyntaxError);
  assert.throws(() => parsePrometheusText("# TYPE t counter\nt{a=1} 1\n"), SyntaxError);
  assert.throws(() => metrics.gauge("t_total", "again"), TypeError);
});

Deno.test("POST /cluster/members learns the new node's id from its /status and adds a learner", async () => {
  const probe = statusFetch("n3");
  const { app, node } = testApp({ fetch: probe.fetch });
  const answer = await send(app, "/cluster/members", jsonInit("POST", { url: `${NEW_URL}/` }));
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  assert.equal(answer.body.ok, true);
  assert.equal(probe.calls[0].url, `${NEW_URL}/status`);
  assert.deepEqual(node.changes, [{ type: "addLearner", id: "n3", url: NEW_URL }]);
  assert.deepEqual((answer.body.members as unknown[]).at(-1), {
    id: "n3",
    url: NEW_URL,
    voter: false,
  });
  const again = await send(app, "/cluster/members", jsonInit("POST", { url: NEW_URL }));
  assert.equal(again.status, 200, "adding the same URL again is a retry");
  assert.equal(node.changes.length, 1);
});

Deno.test("POST /cluster/members refuses bad URLs, unreachable nodes and taken ids", async () => {
  const refused = capturingFetch(() => {
    throw new TypeError("Connection refused");
  });
  const { app, node } = testApp({ fetch: refused.fetch });
  for (const url of ["", "not a url", "ftp://n3.test", "http://u:p@n3.test", 42]) {
    const answer = await send(app, "/cluster/members", jsonInit("POST", { url }));
    assert.equal(answer.status, 400, `url ${url}`);
  }
  const unreachable = await send(app, "/cluster/members", jsonInit("POST", { url: NEW_URL }));
  assert.equal(unreachable.status, 400);
  assert.match(String(unreachable.body.error), /Cannot reach the new member/);
  const taken = testApp({ fetch: statusFetch("n2").fetch });
  const conflict = await send(taken.app, "/cluster/members", jsonInit("POST", { url: NEW_URL }));
  assert.equal(conflict.status, 409);
  const noId = testApp({ fetch: statusFetch(7).fetch });
  assert.equal(
    (await send(noId.app, "/cluster/members", jsonInit("POST", { url: NEW_URL }))).status,
    400,
  );
  assert.equal(node.changes.length + taken.node.changes.length + noId.node.changes.length, 0);
});

Deno.test("cluster changes on a follower are relayed to the leader", async () => {
  const leader = statusFetch("n3");
  const { app, node } = testApp({ fetch: leader.fetch });
  node.leadership = LEADER;
  const add = await send(app, "/cluster/members", jsonInit("POST", { url: NEW_URL }));
  assert.deepEqual(add.body, { ok: true, relayed: true });
  assert.equal(add.headers.get("X-Raft-Index"), "12");
  await send(app, "/cluster/members/n2", { method: "DELETE" });
  await send(app, "/cluster/leader", jsonInit("POST", { id: "n1" }));
  assert.deepEqual(leader.calls.map((call) => `${call.method} ${call.url}`), [
    `POST ${LEADER.url}/cluster/members`,
    `DELETE ${LEADER.url}/cluster/members/n2`,
    `POST ${LEADER.url}/cluster/leader`,
  ]);
  assert.equal(node.changes.length, 0);
});

Deno.test("DELETE /cluster/members/{id} removes a member; unknown is 404, unsafe is 409", async () => {
  const { app, node } = testApp({ fetch: statusFetch("n3").fetch });
  const unsafe = await send(app, "/cluster/members/n2", { method: "DELETE" });
  assert.equal(unsafe.status, 409, "the fake refuses to drop below two members");
  assert.equal((await send(app, "/cluster/members/n9", { method: "DELETE" })).status, 404);
  await send(app, "/cluster/members", jsonInit("POST", { url: NEW_URL }));
  const removed = await send(app, "/cluster/members/n3", { method: "DELETE" });
  assert.equal(removed.status, 200);
  assert.equal(removed.body.ok, true);
  assert.deepEqual(node.changes.at(-1), { type: "remove", id: "n3" });
  assert.equal((await send(app, "/cluster/members/n3", { method: "GET" })).status, 405);
});

Deno.test("POST /cluster/leader transfers leadership to a known member", async () => {
  const { app, node } = testApp();
  assert.equal((await send(app, "/cluster/leader", jsonInit("POST", {}))).status, 400);
  assert.equal((await send(app, "/cluster/leader", jsonInit("POST", { id: "n9" }))).status, 404);
  const answer = await send(app, "/cluster/leader", jsonInit("POST", { id: "n2" }));
  assert.equal(answer.body.ok, true);
  assert.equal(answer.body.leader, "n2");
  assert.ok(Array.isArray(answer.body.members), "the answer lists the members");
  assert.deepEqual(node.transfers, ["n2"]);
  assert.equal(answer.headers.get("X-Raft-Leader"), LEADER.url);
});

Deno.test("POST /cluster/snapshot answers the snapshot index", async () => {
  const { app } = testApp();
  await send(app, "/set?key=a&value=1");
  assert.deepEqual((await send(app, "/cluster/snapshot", { method: "POST" })).body, {
    ok: true,
    index: 1,
  });
});

Deno.test("operating routes answer 405 with Allow for a wrong method", async () => {
  const { app } = testApp();
  const cases: [string, string, string][] = [
    ["/health", "POST", "GET"],
    ["/ready", "DELETE", "GET"],
    ["/status", "PUT", "GET"],
    ["/metrics", "POST", "GET"],
    ["/cluster/members", "GET", "POST"],
    ["/cluster/leader", "GET", "POST"],
    ["/cluster/snapshot", "GET", "POST"],
  ];
  for (const [path, method, allow] of cases) {
    const answer = await send(app, path, { method });
    assert.equal(answer.status, 405, `${method} ${path}`);
    assert.equal(answer.headers.get("Allow"), allow);
  }
});
