/**
 * Crashes under load, with real processes: SIGKILL of the leader, SIGKILL of every node at
 * once, and a follower restarted many times. An acknowledged write (a 200 from /set) must
 * never be lost, and the cluster must keep serving whatever a minority does.
 */
import assert from "node:assert/strict";
import { RaftkvClient } from "../../http/mod.ts";
import {
  Cluster,
  mapConcurrent,
  type NodeProcess,
  sleep,
  waitApplied,
  waitFor,
  waitReady,
} from "./_harness.ts";

// deno-lint-ignore no-console
const print = console.log;

const CLIENTS = 4;
/** Time an election may take on a loaded 2-core machine after a kill. */
const ELECTION_TIMEOUT_MS = 60_000;

interface Ack {
  key: string;
  value: string;
  index: number;
  sentAtMs: number;
  ackedAtMs: number;
}

/** Concurrent writers of unique keys; records what was acknowledged and what failed. */
class WriteLoad {
  readonly acks: Ack[] = [];
  readonly failures: string[] = [];
  #stopped = false;
  #runs: Promise<void>[] = [];
  readonly #prefix: string;

  constructor(prefix: string) {
    this.#prefix = prefix;
  }

  /** `servers` for each client; `pauseMs` between a client's writes. */
  start(servers: string[], options: { clients: number; pauseMs: number; timeoutMs: number }) {
    for (let i = 0; i < options.clients; i++) {
      const client = new RaftkvClient({ servers, timeoutMs: options.timeoutMs });
      this.#runs.push(this.#run(client, `${this.#prefix}-c${i}`, options.pauseMs));
    }
  }

  async #run(client: RaftkvClient, name: string, pauseMs: number): Promise<void> {
    // Bounded: at most this many writes per client, far above what a test sends.
    for (let n = 0; n < 100_000 && !this.#stopped; n++) {
      const key = `${name}-${n}`;
      const value = `${name}:${n}:${crypto.randomUUID().slice(0, 8)}`;
      const sentAtMs = Date.now();
      try {
        const answer = await client.set(key, value);
        if (answer.ok && answer.writeIndex !== null) {
          this.acks.push({ key, value, index: answer.writeIndex, sentAtMs, ackedAtMs: Date.now() });
        } else {
          this.failures.push(`${key}: ${answer.status} ${JSON.stringify(answer.body)}`);
          await sleep(50);
        }
      } catch (error) {
        this.failures.push(`${key}: ${error instanceof Error ? error.message : error}`);
        await sleep(50);
      }
      await sleep(pauseMs);
    }
  }

  /** The failures grouped by kind (status and error), for the test output. */
  failureSummary(): string {
    const counts = new Map<string, number>();
    for (const failure of this.failures) {
      const kind = failure.replace(/^[^:]*: /, "").replace(/\d{2,}/g, "N").slice(0, 120);
      counts.set(kind, (counts.get(kind) ?? 0) + 1);
    }
    return [...counts].map(([kind, count]) => `${count} × ${kind}`).join("; ");
  }

  acksSince(timeMs: number): Ack[] {
    return this.acks.filter((ack) => ack.sentAtMs >= timeMs);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all(this.#runs);
  }
}

/** Every acknowledged write reads back, linearizably, through `node`. */
async function assertAcksReadable(node: NodeProcess, acks: Ack[], what: string): Promise<void> {
  const client = node.client(15_000);
  const wrong = (await mapConcurrent(acks, 16, async (ack) => {
    const answer = await client.get(ack.key);
    return answer.value === ack.value ? undefined : `${ack.key}: ${answer.status} ${answer.value}`;
  })).filter((problem) => problem !== undefined);
  assert.deepEqual(wrong, [], `${what}: acknowledged writes missing or different`);
}

/** Every acknowledged write is in `node`'s local copy (stale reads). */
async function assertAcksLocal(node: NodeProcess, acks: Ack[], what: string): Promise<void> {
  const client = node.client(15_000);
  const wrong = (await mapConcurrent(acks, 16, async (ack) => {
    const answer = await client.get(ack.key, { consistency: "stale" });
    return answer.value === ack.value ? undefined : `${ack.key}: ${answer.status} ${answer.value}`;
  })).filter((problem) => problem !== undefined);
  assert.deepEqual(wrong, [], `${what}: acknowledged writes missing on ${node.url}`);
}

async function commitIndexOf(node: NodeProcess): Promise<number> {
  const commit = (await node.status()).commitIndex;
  assert.equal(typeof commit, "number");
  return commit as number;
}

Deno.test({
  name: "SIGKILL of the leader under load loses no acknowledged write and the node catches up",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const cluster = await Cluster.start(3);
    const load = new WriteLoad("leader-kill");
    try {
      const leader = await cluster.leader();
      load.start(cluster.nodes.map((node) => node.url), {
        clients: CLIENTS,
        pauseMs: 10,
        timeoutMs: 8_000,
      });
      await waitFor("writes before the kill", () => load.acks.length >= 40 ? true : undefined);
      const killedAtMs = Date.now();
      await leader.kill();
      const newLeader = await cluster.leader(ELECTION_TIMEOUT_MS);
      assert.notEqual(newLeader, leader);
      // Writes resume: every client gets writes acknowledged that it sent after the kill.
      await waitFor("writes after the kill", () => {
        const after = load.acksSince(killedAtMs);
        const clients = new Set(after.map((ack) => ack.key.replace(/-\d+$/, "")));
        return clients.size === CLIENTS && after.length >= 4 * CLIENTS ? true : undefined;
      }, { timeoutMs: ELECTION_TIMEOUT_MS });
      await load.stop();
      const firstAfter = Math.min(...load.acksSince(killedAtMs).map((ack) => ack.ackedAtMs));
      print(
        `unavailability window after SIGKILL of the leader: ${firstAfter - killedAtMs} ms ` +
          `(${load.acks.length} writes acknowledged, ${load.failures.length} failed or unknown)`,
      );
      print(`failures: ${load.failureSummary()}`);

      await assertAcksReadable(newLeader, load.acks, "after the leader's kill");

      // The killed node restarts on its own --dir, catches up, and serves the same data.
      const commit = await commitIndexOf(newLeader);
      leader.start();
      await waitReady(leader, ELECTION_TIMEOUT_MS);
      await waitApplied(leader, commit, ELECTION_TIMEOUT_MS);
      await assertAcksLocal(leader, load.acks, "the restarted leader");
      const write = await cluster.client().set("after-restart", "yes");
      assert.equal(write.status, 200, JSON.stringify(write.body));
      const read = await leader.client().get("after-restart", {
        consistency: "stale",
        minIndex: write.writeIndex!,
      });
      assert.equal(read.value, "yes");
    } catch (error) {
      print(cluster.logs());
      throw error;
    } finally {
      await load.stop();
      await cluster.destroy();
    }
  },
});

Deno.test({
  name: "SIGKILL of all three nodes at once loses no acknowledged write",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const cluster = await Cluster.start(3);
    const load = new WriteLoad("all-kill");
    try {
      load.start(cluster.nodes.map((node) => node.url), {
        clients: CLIENTS,
        pauseMs: 5,
        timeoutMs: 8_000,
      });
      await waitFor("writes before the kill", () => load.acks.length >= 60 ? true : undefined);
      await Promise.all(cluster.nodes.map((node) => node.kill()));
      await load.stop();
      const acks = [...load.acks];
      for (const node of cluster.nodes) node.start();
      const leader = await cluster.leader(ELECTION_TIMEOUT_MS);
      await assertAcksReadable(leader, acks, "after every node was killed");
      print(`${acks.length} acknowledged writes survived SIGKILL of all three nodes`);
      const write = await cluster.client().set("after-restart", "yes");
      assert.equal(write.status, 200, JSON.stringify(write.body));
      // Every node holds the same data once it has applied the new write.
      for (const node of cluster.nodes) {
        await waitApplied(node, write.writeIndex!, ELECTION_TIMEOUT_MS);
        await assertAcksLocal(node, acks, "after every node was killed");
      }
    } catch (error) {
      print(cluster.logs());
      throw error;
    } finally {
      await load.stop();
      await cluster.destroy();
    }
  },
});

Deno.test({
  name: "a follower restarted 20 times under load rejoins each time and clients see no error",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const cluster = await Cluster.start(3);
    const load = new WriteLoad("restarts");
    try {
      const leader = await cluster.leader();
      const [follower, other] = cluster.followers(leader);
      // The load goes to the nodes that stay up; what matters is that the cluster keeps serving.
      load.start([leader.url, other.url], { clients: CLIENTS, pauseMs: 20, timeoutMs: 8_000 });
      const startedAtMs = Date.now();
      for (let restart = 1; restart <= 20; restart++) {
        const code = await follower.stop("SIGTERM");
        assert.equal(code, 0, `restart ${restart}: exit code ${code} after SIGTERM`);
        follower.start();
        await waitReady(follower, ELECTION_TIMEOUT_MS);
        await waitApplied(follower, await commitIndexOf(leader), ELECTION_TIMEOUT_MS);
      }
      const elapsedMs = Date.now() - startedAtMs;
      await load.stop();
      print(
        `20 follower restarts in ${elapsedMs} ms; ${load.acks.length} writes acknowledged, ` +
          `${load.failures.length} failed`,
      );
      assert.deepEqual(
        load.failures,
        [],
        `clients saw errors while a follower restarted: ${load.failureSummary()}`,
      );
      assert.ok(load.acks.length > 0);
      await waitApplied(follower, await commitIndexOf(leader), ELECTION_TIMEOUT_MS);
      await assertAcksLocal(follower, load.acks, "the restarted follower");
    } catch (error) {
      print(cluster.logs());
      throw error;
    } finally {
      await load.stop();
      await cluster.destroy();
    }
  },
});
