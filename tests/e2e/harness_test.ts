/** The e2e harness itself: a node that cannot bind its port is noticed, not waited on. */
import assert from "node:assert/strict";
import { NodeProcess, waitServing } from "./_harness.ts";

Deno.test("waitServing() tells a node whose port was taken from one that serves", async () => {
  const root = await Deno.makeTempDir({ prefix: "raftkv-e2e-harness-" });
  // Another process's listener holds the port the node is told to use.
  const squatter = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (squatter.addr as Deno.NetAddr).port;
  const blocked = new NodeProcess({ port, dir: `${root}/blocked`, args: [] });
  try {
    blocked.start();
    assert.equal(await waitServing([blocked], 30_000), "portTaken");
    squatter.close();
    await blocked.stop();
    blocked.start();
    assert.equal(await waitServing([blocked], 30_000), "serving");
  } finally {
    try {
      squatter.close();
    } catch {
      // closed above
    }
    await blocked.kill();
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
});
