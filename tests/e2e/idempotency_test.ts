/**
 * Retried writes with the same request id (body parameter `request_id` or header
 * `Idempotency-Key`) are applied at most once and get the first answer, on real processes and
 * through any node.
 */
import assert from "node:assert/strict";
import { Cluster, type HttpAnswer, httpRequest, type NodeProcess } from "./_harness.ts";

// deno-lint-ignore no-console
const print = console.log;

function postJson(
  node: NodeProcess,
  path: string,
  body: Record<string, unknown>,
  headers: Record<string, string> = {},
): Promise<HttpAnswer> {
  return httpRequest(`${node.url}${path}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
}

async function valueOf(node: NodeProcess, key: string): Promise<string | null> {
  return (await node.client().get(key)).value;
}

Deno.test({
  name: "a retried write with the same request id gets the first answer and applies once",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const cluster = await Cluster.start(3);
    try {
      const leader = await cluster.leader();
      const [follower1, follower2] = cluster.followers(leader);

      await t.step("a CAS counter retried after it moved on is not advanced twice", async () => {
        const start = await postJson(leader, "/set", { key: "counter", value: "0" });
        assert.equal(start.status, 200, start.text);
        const first = await postJson(follower1, "/cas", {
          key: "counter",
          expected: "0",
          value: "1",
          request_id: "inc-0-1",
        });
        assert.equal(first.status, 200, first.text);
        const second = await postJson(leader, "/cas", {
          key: "counter",
          expected: "1",
          value: "2",
          request_id: "inc-1-2",
        });
        assert.equal(second.status, 200, second.text);
        // The retry of the first increment, through every node: the first (successful) answer,
        // not a 409 "compare failed", and the counter stays at 2.
        for (const node of [leader, follower1, follower2]) {
          const retry = await postJson(node, "/cas", {
            key: "counter",
            expected: "0",
            value: "1",
            request_id: "inc-0-1",
          });
          assert.equal(retry.status, 200, `retry through ${node.url}: ${retry.text}`);
          assert.deepEqual(retry.json, first.json, `retry through ${node.url}`);
        }
        assert.equal(await valueOf(leader, "counter"), "2");
      });

      await t.step("the Idempotency-Key header works like request_id", async () => {
        const headers = { "Idempotency-Key": "set-k-a" };
        const first = await postJson(follower2, "/set", { key: "k", value: "a" }, headers);
        assert.equal(first.status, 200, first.text);
        const other = await postJson(leader, "/set", { key: "k", value: "b" });
        assert.equal(other.status, 200, other.text);
        for (const node of [leader, follower1, follower2]) {
          const retry = await postJson(node, "/set", { key: "k", value: "a" }, headers);
          assert.equal(retry.status, 200, retry.text);
          assert.deepEqual(retry.json, first.json, `retry through ${node.url}`);
        }
        // Same id in the query string of /set and on PUT /kv/{key}.
        const viaQuery = await httpRequest(
          `${follower1.url}/set?key=k&value=a&request_id=set-k-a`,
        );
        assert.deepEqual(viaQuery.json, first.json);
        const viaKv = await httpRequest(`${follower1.url}/kv/k`, {
          method: "PUT",
          headers,
          body: "a",
        });
        assert.deepEqual(viaKv.json, first.json);
        assert.equal(await valueOf(leader, "k"), "b", "a retried set overwrote a later one");
      });

      await t.step("a retried delete returns its first answer", async () => {
        await postJson(leader, "/set", { key: "gone", value: "x" });
        const first = await postJson(follower1, "/delete", { key: "gone", request_id: "del-1" });
        assert.deepEqual(first.json, { ok: true, deleted: true });
        await postJson(leader, "/set", { key: "gone", value: "back" });
        const retry = await postJson(follower2, "/delete", { key: "gone", request_id: "del-1" });
        assert.deepEqual(retry.json, { ok: true, deleted: true });
        assert.equal(await valueOf(leader, "gone"), "back", "a retried delete deleted again");
      });

      await t.step(
        "concurrent retries of one increment through every node apply once",
        async () => {
          await postJson(leader, "/set", { key: "racer", value: "10" });
          const nodes = [leader, follower1, follower2, leader, follower1, follower2];
          const answers = await Promise.all(nodes.map((node) =>
            postJson(node, "/cas", {
              key: "racer",
              expected: "10",
              value: "11",
            }, { "Idempotency-Key": "race-10-11" })
          ));
          for (const answer of answers) {
            assert.equal(answer.status, 200, answer.text);
            assert.deepEqual(answer.json, answers[0].json);
          }
          const next = await postJson(leader, "/cas", {
            key: "racer",
            expected: "11",
            value: "12",
          });
          assert.equal(next.status, 200, next.text);
          assert.equal(await valueOf(leader, "racer"), "12");
        },
      );

      await t.step("request_id and Idempotency-Key that disagree are refused", async () => {
        const answer = await postJson(
          leader,
          "/set",
          { key: "k", value: "z", request_id: "one" },
          { "Idempotency-Key": "two" },
        );
        assert.equal(answer.status, 400, answer.text);
        assert.equal(typeof answer.json?.error, "string");
        assert.equal(await valueOf(leader, "k"), "b");
      });

      await t.step(
        "a retry after a snapshot and a restart of every node still applies once",
        async () => {
          const first = await postJson(follower1, "/cas", {
            key: "counter",
            expected: "2",
            value: "3",
            request_id: "inc-2-3",
          });
          assert.equal(first.status, 200, first.text);
          for (const node of cluster.nodes) {
            const snapshot = await httpRequest(`${node.url}/cluster/snapshot`, { method: "POST" });
            assert.equal(snapshot.status, 200, `snapshot on ${node.url}: ${snapshot.text}`);
          }
          await postJson(leader, "/set", { key: "after-snapshot", value: "1" });
          await Promise.all(cluster.nodes.map((node) => node.kill()));
          for (const node of cluster.nodes) node.start();
          const newLeader = await cluster.leader(60_000);
          // inc-0-1 comes back from the snapshot's dedup table, inc-2-3 as well, and the log
          // after the snapshot is replayed on top.
          const old = await postJson(newLeader, "/cas", {
            key: "counter",
            expected: "0",
            value: "1",
            request_id: "inc-0-1",
          });
          assert.equal(old.status, 200, `retry of inc-0-1 after the restart: ${old.text}`);
          assert.ok((old.json?.index as number) < (first.json?.index as number), old.text);
          const retry = await postJson(newLeader, "/cas", {
            key: "counter",
            expected: "2",
            value: "3",
            request_id: "inc-2-3",
          });
          assert.deepEqual(retry.json, first.json);
          assert.equal(await valueOf(newLeader, "counter"), "3");
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
