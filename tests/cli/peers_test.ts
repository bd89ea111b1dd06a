import assert from "node:assert/strict";
import { clusterIdOf, parsePeers, selfIdOf, UsageError } from "../../http/peers.ts";

const LIST = "1=http://127.0.0.1:2020,2=http://127.0.0.1:2021,3=http://127.0.0.1:2022";

Deno.test("an ID=URL list names a node without --id by its own URL, so one list serves all", () => {
  const clusterIds = new Set<string>();
  for (const [port, expected] of [[2020, "1"], [2021, "2"], [2022, "3"]] as const) {
    const selfUrl = `http://127.0.0.1:${port}`;
    const selfId = selfIdOf(undefined, LIST, selfUrl);
    assert.deepEqual(selfId, expected);
    const members = parsePeers(LIST, { selfId, selfUrl });
    assert.deepEqual(members.map((member) => member.id), ["1", "2", "3"]);
    clusterIds.add(clusterIdOf(members));
  }
  assert.deepEqual(clusterIds.size, 1);
});

Deno.test("--id wins, plain URLs derive host:port, and an unlisted node is added", () => {
  assert.deepEqual(selfIdOf("n1", LIST, "http://127.0.0.1:2020"), "n1");
  assert.deepEqual(
    selfIdOf(undefined, "http://127.0.0.1:2020", "http://127.0.0.1:2020"),
    "127.0.0.1:2020",
  );
  assert.deepEqual(selfIdOf(undefined, LIST, "http://127.0.0.1:2030"), "127.0.0.1:2030");
  const members = parsePeers(LIST, { selfId: "127.0.0.1:2030", selfUrl: "http://127.0.0.1:2030" });
  assert.deepEqual(members.map((member) => member.id), ["1", "127.0.0.1:2030", "2", "3"]);
});

Deno.test("--id that contradicts the id listed at this node's URL is a usage error", () => {
  assert.throws(
    () => parsePeers(LIST, { selfId: "9", selfUrl: "http://127.0.0.1:2020" }),
    (error) =>
      error instanceof UsageError && error.message.includes(`listed as "1" but --id is "9"`),
  );
});
