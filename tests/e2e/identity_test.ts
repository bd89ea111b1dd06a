/**
 * A node's --dir is its identity: a restart on another node's dir is refused with exit code 2
 * and no data lost, a second process on a dir in use is refused while the first keeps serving,
 * and a port in use is one clear error.
 */
import assert from "node:assert/strict";
import { Cluster, freePort, NodeProcess, waitExit, waitReady } from "./_harness.ts";

// deno-lint-ignore no-console
const print = console.log;

/** The process said why it stopped on one line of stderr, in Deno's error style. */
function assertOneErrorLine(node: NodeProcess, pattern: RegExp, what: string): void {
  const lines = node.output.trim().split("\n").filter((line) => line.trim() !== "");
  const errors = lines.filter((line) => line.startsWith("error: "));
  assert.equal(errors.length, 1, `${what}: expected one "error: " line, got:\n${node.output}`);
  assert.match(errors[0], pattern, `${what}: unclear error line`);
  assert.equal(lines.length, 1, `${what}: expected only the error line, got:\n${node.output}`);
}

Deno.test({
  name: "nodes started on each other's --dir exit with code 2 and keep their data",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const cluster = await Cluster.start(3);
    const impostors: NodeProcess[] = [];
    try {
      const client = cluster.client();
      for (let i = 0; i < 5; i++) {
        const answer = await client.set(`before-swap-${i}`, `v${i}`);
        assert.equal(answer.status, 200, JSON.stringify(answer.body));
      }
      const [a, b] = cluster.nodes;
      assert.equal(await a.stop(), 0);
      assert.equal(await b.stop(), 0);
      for (const [node, other] of [[a, b], [b, a]]) {
        const impostor = new NodeProcess({ ...node.spec, dir: other.spec.dir });
        impostors.push(impostor);
        impostor.start();
        const code = await waitExit(impostor);
        assert.equal(code, 2, `port ${node.spec.port} on ${other.spec.dir}:\n${impostor.output}`);
        assertOneErrorLine(
          impostor,
          /^error: Cannot use this data dir: it belongs to node/,
          "swap",
        );
      }

      a.start();
      b.start();
      await Promise.all([waitReady(a), waitReady(b)]);
      for (const node of [a, b]) {
        for (let i = 0; i < 5; i++) {
          const read = await node.client().get(`before-swap-${i}`);
          assert.equal(read.value, `v${i}`, `${node.url}: ${JSON.stringify(read.body)}`);
          const local = await node.client().get(`before-swap-${i}`, { consistency: "stale" });
          assert.equal(local.value, `v${i}`, `${node.url} (stale): ${JSON.stringify(local.body)}`);
        }
      }
    } catch (error) {
      print(cluster.logs());
      throw error;
    } finally {
      await Promise.all(impostors.map((node) => node.kill()));
      await cluster.destroy();
    }
  },
});

Deno.test({
  name: "a second process on a --dir in use is refused and the first keeps serving",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const cluster = await Cluster.start(3);
    const second = new NodeProcess({
      port: freePort(),
      dir: cluster.nodes[2].spec.dir,
      args: cluster.nodes[2].spec.args,
    });
    try {
      second.start();
      const code = await waitExit(second);
      assert.notEqual(code, 0, second.output);
      assertOneErrorLine(second, /^error: .*in use by another raftkv process/, "dir in use");

      const first = cluster.nodes[2];
      await waitReady(first);
      const write = await first.client().set("still-serving", "yes");
      assert.equal(write.status, 200, JSON.stringify(write.body));
      const read = await first.client().get("still-serving", {
        consistency: "stale",
        minIndex: write.writeIndex!,
      });
      assert.equal(read.value, "yes");
    } catch (error) {
      print(cluster.logs());
      throw error;
    } finally {
      await second.kill();
      await cluster.destroy();
    }
  },
});

Deno.test({
  name: "a --port in use is one clear error and a non-zero exit",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (listener.addr as Deno.NetAddr).port;
    const dir = await Deno.makeTempDir({ prefix: "raftkv-e2e-port-" });
    const node = new NodeProcess({ port, dir: `${dir}/node`, args: [] });
    try {
      node.start();
      const code = await waitExit(node);
      assert.notEqual(code, 0, node.output);
      assertOneErrorLine(
        node,
        new RegExp(`^error: .*127\\.0\\.0\\.1:${port}.*address in use`),
        "port",
      );
    } finally {
      await node.kill();
      listener.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
