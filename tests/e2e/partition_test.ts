/**
 * Partitions of a real 3-node cluster, made by cutting the TCP proxies its nodes talk through:
 * a leader cut off from the majority stops acknowledging, the majority goes on, and after the
 * heal everyone converges without the writes that were refused; a one-way cut does not make
 * leadership flip-flop (Pre-Vote and CheckQuorum).
 */
import assert from "node:assert/strict";
import type { NodeProcess } from "./_harness.ts";
import { sleep, waitFor } from "./_harness.ts";
import { LinkProxy, ProxiedCluster } from "./_proxy.ts";

/** The server's own deadline for client requests, kept short so that the test is too. */
const REQUEST_TIMEOUT_MS = 2_000;
/** The client waits longer than the server so that it sees the server's 503 or 504. */
const CLIENT_TIMEOUT_MS = REQUEST_TIMEOUT_MS + 3_000;
// deno-lint-ignore no-console
const print = console.log;

const EXTRA_ARGS = ["--request-timeout-ms", String(REQUEST_TIMEOUT_MS)];

type Outcome = "ok" | "refused" | "unknown";

interface Attempt {
  key: string;
  value: string;
  status: number | "network error";
  outcome: Outcome;
  elapsedMs: number;
}

/** One write straight to `node` (no failover to another server): what came back, and when. */
async function writeTo(node: NodeProcess, key: string, value: string): Promise<Attempt> {
  const startMs = performance.now();
  let status: Attempt["status"];
  try {
    status = (await node.client(CLIENT_TIMEOUT_MS).set(key, value)).status;
  } catch {
    status = "network error";
  }
  const outcome: Outcome = status === 200 ? "ok" : status === 503 ? "refused" : "unknown";
  return { key, value, status, outcome, elapsedMs: performance.now() - startMs };
}

async function termOf(node: NodeProcess): Promise<number> {
  return Number((await node.status()).term);
}

Deno.test({
  name:
    "a leader cut off from the majority stops acknowledging; the majority goes on; all converge",
  async fn() {
    const cluster = await ProxiedCluster.start(3, { extraArgs: EXTRA_ARGS });
    try {
      const oldLeader = await cluster.leader();
      const oldIndex = cluster.indexOf(oldLeader);
      const oldTerm = await termOf(oldLeader);
      const majority = cluster.nodes.filter((node) => node !== oldLeader);
      assert.equal((await writeTo(oldLeader, "before", "1")).status, 200);

      cluster.mesh.isolate(oldIndex);
      const cutMs = performance.now();
      // Writes and linearizable reads sent straight to the isolated leader, while it still
      // believes it leads and after it stepped down: none may be acknowledged.
      const attempts: Attempt[] = [];
      const readStatuses: (number | string)[] = [];
      for (let round = 0; round < 3; round++) {
        const writes = [0, 1, 2].map((i) => writeTo(oldLeader, `minority-${round}-${i}`, "lost"));
        const read = oldLeader.client(CLIENT_TIMEOUT_MS).get("before").then(
          (response) => response.status,
          () => "network error",
        );
        attempts.push(...await Promise.all(writes));
        readStatuses.push(await read);
      }
      const minorityMs = performance.now() - cutMs;
      for (const attempt of attempts) {
        assert.ok(
          attempt.status === 503 || attempt.status === 504,
          `isolated leader answered ${JSON.stringify(attempt)}\n${cluster.logs()}`,
        );
        assert.ok(
          attempt.elapsedMs < REQUEST_TIMEOUT_MS + 1_500,
          `answer came after the deadline: ${JSON.stringify(attempt)}`,
        );
      }
      for (const status of readStatuses) {
        assert.ok(status === 503 || status === 504, `isolated leader read answered ${status}`);
      }

      // The majority elects a new leader of a later term and keeps serving writes.
      const newLeader = await cluster.leader({ among: majority, termAbove: oldTerm });
      for (let i = 0; i < 5; i++) {
        const attempt = await writeTo(newLeader, `majority-${i}`, String(i));
        assert.equal(attempt.status, 200, `majority write ${JSON.stringify(attempt)}`);
      }
      // Refused writes are not on the majority's side, now, while the partition lasts.
      for (const attempt of attempts.filter((a) => a.outcome === "refused")) {
        const read = await newLeader.client(CLIENT_TIMEOUT_MS).get(attempt.key);
        assert.equal(read.status, 404, `refused write ${attempt.key} is visible`);
      }

      // CheckQuorum: the isolated node gave up leading; Pre-Vote: it did not raise its term.
      const isolatedStatus = await oldLeader.status();
      assert.notEqual(isolatedStatus.role, "leader", "the isolated node still believes it leads");
      assert.equal(isolatedStatus.term, oldTerm, "the isolated node raised its term");
      const newStatus = await newLeader.status();

      cluster.mesh.healAll();
      const statuses = await cluster.converged(30_000);
      // Coming back, the old leader must not depose the healthy one.
      assert.equal(statuses[0].leader, newStatus.id, "leadership changed after the heal");
      assert.equal(statuses[0].term, newStatus.term, "the term changed after the heal");
      const keys = [
        "before",
        ...attempts.map((a) => a.key),
        ...[0, 1, 2, 3, 4].map((i) => `majority-${i}`),
      ];
      const values = await Promise.all(cluster.nodes.map((node) => readAll(node, keys)));
      for (const [i, nodeValues] of values.entries()) {
        assert.deepEqual(nodeValues, values[0], `node ${cluster.ids[i]} differs after the heal`);
      }
      assert.equal(values[0].get("before"), "1");
      for (let i = 0; i < 5; i++) assert.equal(values[0].get(`majority-${i}`), String(i));
      for (const attempt of attempts) {
        // A 503 promised the write was never proposed; a 504 or a lost answer may go either way.
        if (attempt.outcome === "refused") assert.equal(values[0].get(attempt.key), null);
      }
      const counts = { refused: 0, unknown: 0, unknownApplied: 0 };
      for (const attempt of attempts) {
        counts[attempt.outcome === "refused" ? "refused" : "unknown"]++;
        if (attempt.outcome === "unknown" && values[0].get(attempt.key) !== null) {
          counts.unknownApplied++;
        }
      }
      print(
        `isolated leader ${cluster.ids[oldIndex]} (term ${oldTerm}): ${attempts.length} writes ` +
          `in ${minorityMs.toFixed(0)} ms: ${counts.refused} x 503, ${counts.unknown} x 504/lost ` +
          `(${counts.unknownApplied} applied after all); new leader ` +
          `${statuses[0].leader} term ${statuses[0].term}, applied ${statuses[0].appliedIndex}`,
      );
    } catch (error) {
      print(cluster.logs());
      throw error;
    } finally {
      await cluster.destroy();
    }
  },
});

/** Every key's value on `node`'s local copy (stale read: each node is looked at on its own). */
async function readAll(node: NodeProcess, keys: string[]): Promise<Map<string, string | null>> {
  const client = node.client(CLIENT_TIMEOUT_MS);
  const values = new Map<string, string | null>();
  for (const key of keys) {
    const response = await client.get(key, { consistency: "stale" });
    assert.ok(response.status === 200 || response.status === 404, `stale read ${response.status}`);
    values.set(key, response.value);
  }
  return values;
}

interface Observation {
  /** "term/id" of every leader seen. */
  leaders: Set<string>;
  writesOk: number;
  firstWritten: string | undefined;
}

/** For `durationMs`, samples every node's role and term and writes through `via`. */
async function observe(
  cluster: ProxiedCluster,
  via: NodeProcess,
  durationMs: number,
  prefix: string,
): Promise<Observation> {
  const observation: Observation = { leaders: new Set(), writesOk: 0, firstWritten: undefined };
  const endMs = performance.now() + durationMs;
  for (let i = 0; performance.now() < endMs && i < 400; i++) {
    const statuses = await Promise.all(cluster.nodes.map((node) => node.status()));
    for (const status of statuses) {
      if (status.role === "leader") observation.leaders.add(`${status.term}/${status.id}`);
    }
    const attempt = await writeTo(via, `${prefix}-${i}`, String(i));
    if (attempt.status === 200) {
      observation.writesOk++;
      observation.firstWritten ??= attempt.key;
    }
    await sleep(100);
  }
  return observation;
}

/** Heals, waits for convergence, and checks that `node` has the write `key`. */
async function healAndCheck(cluster: ProxiedCluster, node: NodeProcess, key: string) {
  cluster.mesh.healAll();
  const statuses = await cluster.converged(30_000);
  assert.ok(statuses.every((status) => status.appliedIndex === statuses[0].appliedIndex));
  const value = await waitFor(`${key} on ${node.url}`, async () => {
    const response = await node.client().get(key, { consistency: "stale" });
    return response.status === 200 ? response.value : undefined;
  });
  assert.equal(value, key.slice(key.lastIndexOf("-") + 1));
}

Deno.test({
  name: "a one-way cut from the leader to a follower causes no leader flip-flop (Pre-Vote)",
  async fn() {
    const cluster = await ProxiedCluster.start(3, { extraArgs: EXTRA_ARGS });
    try {
      const leader = await cluster.leader();
      const leaderIndex = cluster.indexOf(leader);
      const followerIndex = (leaderIndex + 1) % 3;
      const startTerm = await termOf(leader);
      // The follower hears nothing from the leader, but everything it sends gets through:
      // without Pre-Vote it would time out, campaign with a higher term and depose the leader,
      // again and again.
      cluster.mesh.link(leaderIndex, followerIndex).cut();
      const seen = await observe(cluster, leader, 8_000, "one-way");
      const terms = await Promise.all(cluster.nodes.map(termOf));
      const leaderChanges = seen.leaders.size - 1;
      print(
        `one-way cut ${cluster.ids[leaderIndex]} -> ${cluster.ids[followerIndex]}: ` +
          `${leaderChanges} leader changes, terms ${startTerm} -> [${terms.join(", ")}], ` +
          `${seen.writesOk} writes acknowledged`,
      );
      assert.ok(leaderChanges <= 2, `leadership flip-flopped: ${[...seen.leaders].join(", ")}`);
      assert.ok(Math.max(...terms) - startTerm <= 2, `terms ran away: ${terms.join(", ")}`);
      assert.ok(seen.writesOk > 0, "no write was acknowledged during the one-way cut");
      await healAndCheck(cluster, cluster.nodes[followerIndex], seen.firstWritten!);
    } catch (error) {
      print(cluster.logs());
      throw error;
    } finally {
      await cluster.destroy();
    }
  },
});

Deno.test({
  name: "a leader that can receive but not send is replaced once, without flip-flop",
  async fn() {
    const cluster = await ProxiedCluster.start(3, { extraArgs: EXTRA_ARGS });
    try {
      const leader = await cluster.leader();
      const leaderIndex = cluster.indexOf(leader);
      const startTerm = await termOf(leader);
      // Every link out of the leader is cut; every link into it works. The followers elect a
      // new leader, whose messages reach the old one: it must follow, not keep campaigning.
      for (let other = 0; other < 3; other++) {
        if (other !== leaderIndex) cluster.mesh.link(leaderIndex, other).cut();
      }
      const others = cluster.nodes.filter((node) => node !== leader);
      const newLeader = await cluster.leader({ among: others, termAbove: startTerm });
      const seen = await observe(cluster, newLeader, 6_000, "mute");
      const terms = await Promise.all(cluster.nodes.map(termOf));
      const leaderChanges = seen.leaders.size - 1;
      print(
        `outbound of ${cluster.ids[leaderIndex]} cut: new leader ` +
          `${cluster.ids[cluster.indexOf(newLeader)]}, ${leaderChanges} more leader changes, ` +
          `terms ${startTerm} -> [${terms.join(", ")}], ${seen.writesOk} writes acknowledged`,
      );
      assert.ok(leaderChanges <= 1, `leadership flip-flopped: ${[...seen.leaders].join(", ")}`);
      assert.ok(Math.max(...terms) - startTerm <= 3, `terms ran away: ${terms.join(", ")}`);
      assert.ok(seen.writesOk > 0, "no write was acknowledged while the old leader was mute");
      const oldStatus = await leader.status();
      assert.notEqual(oldStatus.role, "leader", "the mute node still believes it leads");
      await healAndCheck(cluster, leader, seen.firstWritten!);
    } catch (error) {
      print(cluster.logs());
      throw error;
    } finally {
      await cluster.destroy();
    }
  },
});

/** Reads what arrives within `timeoutMs`: the bytes, "closed" (EOF or reset) or "silent". */
async function readSome(conn: Deno.Conn, timeoutMs: number): Promise<string> {
  const buffer = new Uint8Array(64);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const silent = new Promise<"silent">((resolve) => {
    timer = setTimeout(() => resolve("silent"), timeoutMs);
  });
  const read = conn.read(buffer).then(
    (n) => n === null ? "closed" : new TextDecoder().decode(buffer.subarray(0, n)),
    () => "closed",
  );
  const result = await Promise.race([read, silent]);
  clearTimeout(timer);
  if (result === "silent") {
    conn.close(); // ends the pending read
    await read;
  }
  return result;
}

Deno.test("LinkProxy forwards, cuts by reset or black hole, heals, and closes", async () => {
  const echo = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const echoConns: Deno.Conn[] = [];
  const serving = (async () => {
    for await (const conn of echo) {
      echoConns.push(conn);
      conn.readable.pipeTo(conn.writable).catch(() => {});
    }
  })();
  const proxy = new LinkProxy({ port: (echo.addr as Deno.NetAddr).port });
  const open: Deno.Conn[] = [];
  const connect = async () => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
    open.push(conn);
    return conn;
  };
  const roundTrip = async (conn: Deno.Conn, text: string) => {
    await conn.write(new TextEncoder().encode(text)).catch(() => 0);
    return await readSome(conn, 500);
  };
  try {
    const first = await connect();
    assert.equal(await roundTrip(first, "hello"), "hello");

    proxy.cut("reset");
    assert.equal(await readSome(first, 2_000), "closed", "cut() closes open connections");
    assert.equal(await roundTrip(await connect(), "lost"), "closed");

    proxy.cut("blackhole");
    const held = await connect();
    assert.equal(await roundTrip(held, "void"), "silent");

    proxy.heal();
    assert.equal(await roundTrip(await connect(), "again"), "again");
    assert.ok(proxy.connectionsForwarded >= 2 && proxy.connectionsRefused >= 2);
  } finally {
    await proxy.close();
    for (const conn of open) {
      try {
        conn.close();
      } catch {
        // closed by the test already
      }
    }
    echo.close();
    await serving;
    for (const conn of echoConns) {
      try {
        conn.close();
      } catch {
        // the pipe closed it
      }
    }
  }
  await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: proxy.port }));
});
