/** The dashboard's routes through app.request(): the page and GET /ui/cluster.json. */
import assert from "node:assert/strict";
import { APP_JS } from "../../http/ui/app_js.ts";
import { capturingFetch, LEADER, send, testApp } from "../http/fake_node.ts";

const N2_STATUS = `${LEADER.url}/status`;

function followerStatus(term: number) {
  return {
    id: "n2",
    role: "follower",
    term,
    leader: "n1",
    leaderUrl: null,
    commitIndex: 3,
    appliedIndex: 3,
    lastLogIndex: 3,
    snapshotIndex: 0,
    keys: 0,
    members: [{ id: "n1", url: "http://n1.test:2020", voter: true }, { ...LEADER }],
  };
}

function refused(): Promise<Response> {
  const cause = new Error("tcp connect error: Connection refused (os error 111)");
  return Promise.reject(new TypeError("fetch failed", { cause }));
}

Deno.test("GET /ui serves a self-contained page, its script and its stylesheet", async () => {
  const { app } = testApp();
  for (const path of ["/ui", "/ui/"]) {
    const page = await app.request(path);
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
    assert.match(page.headers.get("content-security-policy") ?? "", /default-src 'self'/);
    const html = await page.text();
    assert.doesNotMatch(html, /(src|href)="(https?:)?\/\//, "nothing loads from another origin");
  }
  const script = await app.request("/ui/app.js");
  assert.match(script.headers.get("content-type") ?? "", /^text\/javascript/);
  assert.equal(await script.text(), APP_JS);
  const style = await app.request("/ui/style.css");
  assert.match(style.headers.get("content-type") ?? "", /^text\/css/);
  await style.text();
  assert.equal((await send(app, "/ui/app.js", { method: "POST" })).status, 405);
});

Deno.test("the dashboard script is valid JavaScript", () => {
  // Parsing without running it: a syntax error in the string would only show in a browser.
  assert.doesNotThrow(() => new Function(APP_JS));
});

Deno.test("cluster.json on the leader: each member's own status and the leader's lag", async () => {
  const { fetch, calls } = capturingFetch(() => Response.json(followerStatus(2)));
  const { app, node } = testApp({ fetch });
  await send(app, "/set?key=a&value=1");
  node.advance(2);
  const answer = await send(app, "/ui/cluster.json");
  assert.equal(answer.status, 200);
  assert.deepEqual(calls.map((call) => call.url), [N2_STATUS], "this node is not fetched");
  const { leaderId, servedBy, clusterId, members } = answer.body as Record<string, unknown>;
  assert.deepEqual({ leaderId, servedBy, clusterId }, {
    leaderId: "n1",
    servedBy: "n1",
    clusterId: "cluster-test",
  });
  const [n1, n2] = members as Record<string, Record<string, unknown>>[];
  assert.equal(n1.self, true);
  assert.equal(n1.report.role, "leader");
  assert.equal(n1.report.keys, 1);
  assert.equal(n1.lagEntries, 0);
  assert.equal(n1.lastContactMs, null);
  assert.equal(n2.reachable, true);
  assert.equal(n2.report.role, "follower");
  assert.equal(n2.report.appliedIndex, 3);
  assert.equal(n2.matchIndex, 2, "the fake leader's match index is applied - 1");
  assert.equal(n2.lagEntries, 1);
  assert.equal(n2.lastContactMs, 5);
});

Deno.test("cluster.json shows a member that refuses connections as unreachable", async () => {
  const { app } = testApp({ fetch: refused });
  const answer = await send(app, "/ui/cluster.json");
  assert.equal(answer.status, 200);
  const n2 = (answer.body.members as Record<string, unknown>[])[1];
  assert.equal(n2.reachable, false);
  assert.equal(n2.error, "connection refused");
  assert.equal(n2.report, null);
  assert.equal(answer.body.leaderId, "n1");
});

Deno.test("cluster.json on a follower takes lag from the leader's status", async () => {
  const leaderStatus = {
    ...followerStatus(3),
    role: "leader",
    leader: "n2",
    lastLogIndex: 9,
    members: [
      { id: "n1", url: "http://n1.test:2020", voter: true, matchIndex: 7, lastContactMs: 40 },
      { ...LEADER },
    ],
  };
  const { fetch } = capturingFetch(() => Response.json(leaderStatus));
  const { app, node } = testApp({ fetch });
  node.leadership = LEADER;
  const answer = await send(app, "/ui/cluster.json");
  const [n1, n2] = answer.body.members as Record<string, Record<string, unknown>>[];
  assert.equal(answer.body.leaderId, "n2");
  assert.equal(n1.report.role, "follower");
  assert.equal(n1.lagEntries, 2);
  assert.equal(n1.lastContactMs, 40);
  assert.equal(n2.lagEntries, 0);
});

Deno.test("cluster.json treats a malformed /status as unreachable, with the reason", async () => {
  const { fetch } = capturingFetch(() => Response.json({ ...followerStatus(2), term: -1 }));
  const { app } = testApp({ fetch });
  const n2 = ((await send(app, "/ui/cluster.json")).body.members as Record<string, unknown>[])[1];
  assert.equal(n2.reachable, false);
  assert.equal(n2.error, 'Invalid status: field "term" is not a count');
});

Deno.test("concurrent cluster.json requests share one round of member fetches", async () => {
  const { fetch, calls } = capturingFetch(() => Response.json(followerStatus(2)));
  const { app } = testApp({ fetch });
  const answers = await Promise.all([1, 2, 3].map(() => send(app, "/ui/cluster.json")));
  assert.deepEqual(answers.map((answer) => answer.status), [200, 200, 200]);
  assert.equal(calls.length, 1);
});
