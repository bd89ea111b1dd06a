import { neverSent } from "./_harness.ts";
import { seededRandom } from "../linearizability/history.ts";
/**
 * Live membership changes under a steady load whose history is checked for linearizability:
 * grow 3 → 5 with two nodes started with --join, transfer leadership twice, remove two members
 * (the leader among them), and replace a SIGKILLed member with a fresh node on a new port. No
 * acknowledged write may be lost; the unavailability around each leader change is printed.
 * Then each unsafe request is refused with a clear 4xx.
 *
 * Replay the same operation mix with RAFTKV_SEED=<seed> (timings still differ run to run).
 */
import assert from "node:assert/strict";
import { RaftkvClient, UnavailableError } from "../../http/mod.ts";
import {
  Cluster,
  freePort,
  type HttpAnswer,
  httpRequest,
  mapConcurrent,
  NodeProcess,
  sleep,
  waitExit,
  waitFor,
  waitReady,
} from "./_harness.ts";
import { checkHistory } from "../linearizability/checker.ts";
import { describeOperation, HistoryRecorder, type OpInput } from "../linearizability/history.ts";

// deno-lint-ignore no-console
const print = console.log;

const CLIENTS = 8;
const KEYS = ["k0", "k1", "k2", "k3"];
const REQUEST_TIMEOUT_MS = 2_000;
const CLIENT_TIMEOUT_MS = 3_000;
/** Snapshots every 100 entries: a node that joins gets a snapshot, then the log after it. */
const NODE_ARGS = [
  "--request-timeout-ms",
  String(REQUEST_TIMEOUT_MS),
  "--snapshot-entries",
  "100",
  "--log-level",
  "info",
];

interface Member {
  id: string;
  url: string;
  voter: boolean;
}

interface Event {
  atMs: number;
  /** When the step was done (the change answered, the new leader known). */
  endMs: number;
  what: string;
  /** Measure the unavailability around it (a leader change, or the replacement of a node). */
  measured: boolean;
}

/** The state the clients and the steps share. */
class Run {
  readonly recorder = new HistoryRecorder();
  /** Why each refused (503) operation was refused, for a failing run's report. */
  readonly refusals: string[] = [];
  /** Values whose write was acknowledged, by unique key: none may be lost. */
  readonly acknowledged = new Map<string, string>();
  /** When each acknowledged write completed (ms since start), to measure unavailability. */
  readonly ackTimesMs: number[] = [];
  readonly events: Event[] = [];
  readonly unexpected: string[] = [];
  /** Nodes clients may talk to: running members. */
  serving: NodeProcess[] = [];
  stopped = false;
  readonly startMs = performance.now();

  nowMs(): number {
    return performance.now() - this.startMs;
  }

  note(what: string, measured = false): Event {
    const event = { atMs: this.nowMs(), endMs: this.nowMs(), what, measured };
    this.events.push(event);
    print(`${(this.nowMs() / 1000).toFixed(1)}s ${what}`);
    return event;
  }
}

/** One client: register operations on KEYS (recorded) and unique writes (must survive). */
async function clientLoop(run: Run, client: number, seed: number): Promise<void> {
  const random = seededRandom(seed * 1_000 + client);
  for (let n = 0; !run.stopped; n++) {
    const node = run.serving[Math.floor(random() * run.serving.length)];
    const server = new RaftkvClient({ servers: [node.url], timeoutMs: CLIENT_TIMEOUT_MS });
    if (n % 2 === 1) {
      await uniqueWrite(run, server, `u-${client}-${n}`);
      continue;
    }
    const key = KEYS[Math.floor(random() * KEYS.length)];
    const roll = random();
    const value = `c${client}-${n}`;
    const input: OpInput = roll < 0.4
      ? { type: "get" }
      : roll < 0.8
      ? { type: "set", value }
      : { type: "cas", expected: random() < 0.5 ? null : `c${client}-${n - 2}`, value };
    const id = run.recorder.invoke(client, key, input);
    try {
      const output = await registerCall(run, server, key, input);
      if (output === "refused") run.recorder.fail(id);
      else if (output === "unknown") run.recorder.indeterminate(id);
      else run.recorder.complete(id, output);
    } catch (error) {
      if (neverSent(error)) {
        run.refusals.push(`${run.nowMs().toFixed(1)} ${JSON.stringify(input)} ${key}: never sent`);
        run.recorder.fail(id);
      } else if (error instanceof UnavailableError) run.recorder.indeterminate(id);
      else throw error;
    }
  }
}

async function uniqueWrite(run: Run, server: RaftkvClient, key: string): Promise<void> {
  try {
    const answer = await server.set(key, key);
    if (answer.status === 200) {
      run.acknowledged.set(key, key);
      run.ackTimesMs.push(run.nowMs());
    } else if (answer.status !== 503 && answer.status !== 504 && answer.status !== 500) {
      run.unexpected.push(`set ${key}: ${answer.status}`);
    }
  } catch (error) {
    if (!(error instanceof UnavailableError)) throw error;
  }
}

type Output = NonNullable<ReturnType<HistoryRecorder["operations"]>[0]["completion"]>["output"];

async function registerCall(
  run: Run,
  server: RaftkvClient,
  key: string,
  input: OpInput,
): Promise<Output | "refused" | "unknown"> {
  let status: number;
  let lastBody: unknown;
  switch (input.type) {
    case "get": {
      const answer = await server.get(key, { consistency: "linearizable" });
      if (answer.status === 200 || (answer.status === 404 && answer.body.key === key)) {
        return { type: "get", value: answer.value };
      }
      status = answer.status;
      lastBody = answer.body;
      break;
    }
    case "set": {
      const answer = await server.set(key, input.value);
      if (answer.status === 200) {
        run.ackTimesMs.push(run.nowMs());
        return { type: "set" };
      }
      status = answer.status;
      lastBody = answer.body;
      break;
    }
    case "cas": {
      const answer = await server.cas(key, input.expected, input.value);
      if (answer.status === 200) return { type: "cas", ok: true };
      if (answer.status === 409) return { type: "cas", ok: false, current: answer.current };
      status = answer.status;
      lastBody = answer.body;
      break;
    }
    default:
      throw new Error(`unused operation ${input.type}`);
  }
  if (status === 503) {
    run.refusals.push(
      `${run.nowMs().toFixed(1)} ${input.type} ${key} ${JSON.stringify(input)} via ${
        server.servers[0]
      }: ${JSON.stringify(lastBody)}`,
    );
    return "refused";
  }
  if (status !== 504 && status !== 500) run.unexpected.push(`${input.type} ${key}: ${status}`);
  return "unknown";
}

/** A /cluster/* call; retried while another change is still in progress (a promotion). */
async function clusterCall(
  url: string,
  method: string,
  body?: Record<string, string>,
): Promise<HttpAnswer> {
  for (let attempt = 1;; attempt++) {
    const answer = await httpRequest(url, {
      method,
      headers: { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      timeoutMs: 20_000,
    });
    const busy = answer.status === 409 && answer.text.includes("in progress");
    if (!busy && answer.status !== 503 || attempt >= 40) return answer;
    await sleep(250);
  }
}

async function membersOf(node: NodeProcess): Promise<Member[]> {
  return (await node.status()).members as Member[];
}

function waitMembers(
  node: NodeProcess,
  what: string,
  check: (members: Member[]) => boolean,
): Promise<Member[]> {
  return waitFor(what, async () => {
    const members = await membersOf(node);
    return check(members) ? members : undefined;
  }, { timeoutMs: 60_000, intervalMs: 100 });
}

async function leaderOf(nodes: NodeProcess[]): Promise<NodeProcess> {
  return await waitFor("a leader", async () => {
    for (const node of nodes.filter((n) => n.running)) {
      const status = await node.status().catch(() => undefined);
      if (status?.role === "leader") return node;
    }
    return undefined;
  }, { timeoutMs: 30_000 });
}

async function idOf(node: NodeProcess): Promise<string> {
  const id = (await node.status()).id;
  if (typeof id !== "string") throw new Error(`${node.url} reports no id yet`);
  return id;
}

/** Starts a fresh node that joins through `via`, and waits until it is a voter. */
async function joinNode(run: Run, cluster: Cluster, via: NodeProcess): Promise<NodeProcess> {
  // The leader compacts its log now, so the new member must start from InstallSnapshot.
  const leader = await leaderOf(run.serving);
  const snapshot = await httpRequest(`${leader.url}/cluster/snapshot`, { method: "POST" });
  assert.equal(snapshot.status, 200, snapshot.text);
  const port = freePort();
  const node = new NodeProcess({
    port,
    dir: `${cluster.root}/join-${port}`,
    args: ["--join", via.url, ...NODE_ARGS],
  });
  cluster.nodes.push(node);
  node.start();
  const id = await waitFor(`${node.url} to answer`, () => idOf(node), { timeoutMs: 20_000 });
  await waitMembers(
    via,
    `${id} to become a voter`,
    (members) => members.some((member) => member.id === id && member.voter),
  );
  run.serving.push(node);
  // The leader had compacted its log: the new member started from a snapshot.
  await waitFor(
    `${id} to log "snapshot installed"`,
    () => node.output.includes("snapshot installed") ? true : undefined,
  );
  run.note(`${id} joined, installed a snapshot and was promoted`);
  return node;
}

/** The longest stretch without an acknowledged write while `event` ran (and 500 ms after). */
function unavailabilityMs(run: Run, event: Event): number {
  const times = [...run.ackTimesMs].sort((a, b) => a - b);
  let gap = 0;
  for (let i = 0; i + 1 < times.length; i++) {
    if (times[i + 1] < event.atMs || times[i] > event.endMs + 500) continue;
    gap = Math.max(gap, times[i + 1] - Math.max(times[i], event.atMs));
  }
  return gap;
}

async function transfer(run: Run, nodes: NodeProcess[], to: NodeProcess): Promise<void> {
  const id = await idOf(to);
  const event = run.note(`transfer leadership to ${id}`, true);
  const answer = await clusterCall(`${nodes[0].url}/cluster/leader`, "POST", { id });
  assert.equal(answer.status, 200, answer.text);
  assert.equal(answer.json?.leader, id);
  assert.ok(Array.isArray(answer.json?.members), `members in ${answer.text}`);
  assert.equal((await leaderOf(nodes)).url, to.url);
  event.endMs = run.nowMs();
}

/** Removes `node` through `via`; once the change is committed, a new leader is known. */
async function remove(run: Run, via: NodeProcess, node: NodeProcess, leader: boolean) {
  const id = await idOf(node);
  run.serving = run.serving.filter((other) => other !== node);
  const event = run.note(`remove ${id}${leader ? " (the leader)" : ""}`, leader);
  const answer = await clusterCall(`${via.url}/cluster/members/${id}`, "DELETE");
  assert.equal(answer.status, 200, answer.text);
  const members = answer.json?.members as Member[];
  assert.ok(!members.some((member) => member.id === id), `${id} left: ${answer.text}`);
  await leaderOf(run.serving);
  event.endMs = run.nowMs();
}

async function scenario(run: Run, cluster: Cluster): Promise<void> {
  const [a, b] = cluster.nodes;
  await sleep(1_500);
  const d = await joinNode(run, cluster, a);
  const e = await joinNode(run, cluster, b);
  assert.equal((await membersOf(a)).filter((member) => member.voter).length, 5);
  await sleep(1_000);
  const leader = await leaderOf(run.serving);
  const first = run.serving.find((node) => node !== leader && node !== d && node !== e)!;
  await transfer(run, run.serving, first);
  await sleep(1_000);
  await transfer(run, run.serving, d);
  await sleep(1_000);
  // The leader removes itself: it steps down once the change is committed.
  await remove(run, d, d, true);
  const afterD = run.serving.filter((node) => node !== d);
  const newLeader = await leaderOf(afterD);
  run.note(`new leader ${await idOf(newLeader)}`);
  assert.notEqual((await d.status()).role, "leader", "the removed leader stepped down");
  await d.stop();
  const follower = afterD.find((node) => node !== newLeader)!;
  await remove(run, newLeader, follower, false);
  await follower.stop();
  await sleep(1_000);
  // Replace a member that died: kill, remove the dead one, join a fresh node on a new port.
  const victim = run.serving.find((node) => node !== newLeader)!;
  const victimId = await idOf(victim);
  run.serving = run.serving.filter((node) => node !== victim);
  const replace = run.note(`SIGKILL ${victimId}, then replace it`, true);
  await victim.kill();
  await sleep(1_000);
  const answer = await clusterCall(`${newLeader.url}/cluster/members/${victimId}`, "DELETE");
  assert.equal(answer.status, 200, answer.text);
  run.note(`removed dead ${victimId}`);
  await joinNode(run, cluster, run.serving[0]);
  replace.endMs = run.nowMs();
  await sleep(1_500);
}

/** Reads every acknowledged unique key and the final register values through the leader. */
async function finalChecks(run: Run): Promise<void> {
  const leader = await leaderOf(run.serving);
  const server = new RaftkvClient({ servers: [leader.url], timeoutMs: 10_000 });
  for (const key of KEYS) {
    const id = run.recorder.invoke(CLIENTS, key, { type: "get" });
    const answer = await server.get(key, { consistency: "linearizable" });
    assert.ok(
      answer.status === 200 || answer.status === 404,
      `final read ${key}: ${answer.status}`,
    );
    run.recorder.complete(id, { type: "get", value: answer.value });
  }
  const lost: string[] = [];
  await mapConcurrent([...run.acknowledged], 16, async ([key, value]) => {
    const answer = await server.get(key, { consistency: "linearizable" });
    if (answer.value !== value) lost.push(`${key}: ${answer.status} ${answer.value}`);
  });
  assert.deepEqual(lost, [], "acknowledged writes lost");
}

Deno.test({
  name: "grow, transfer, shrink and replace members under load: linearizable, nothing lost",
  async fn() {
    const seed = Number(Deno.env.get("RAFTKV_SEED") ?? Math.floor(Math.random() * 1_000_000));
    const cluster = await Cluster.start(3, { extraArgs: NODE_ARGS });
    const run = new Run();
    run.serving = [...cluster.nodes];
    try {
      const clients = Array.from({ length: CLIENTS }, (_, c) => clientLoop(run, c, seed));
      let failure: unknown;
      try {
        await scenario(run, cluster);
      } catch (error) {
        failure = error;
      } finally {
        run.stopped = true;
      }
      await Promise.all(clients);
      if (failure !== undefined) throw failure;
      await finalChecks(run);
      const history = run.recorder.operations();
      const result = checkHistory(history, { timeMaxMs: 30_000 });
      const { ok, failed, indeterminate } = run.recorder.counts;
      const gaps = run.events.filter((event) => event.measured).map((event) =>
        `${event.what}: ${unavailabilityMs(run, event).toFixed(0)} ms`
      );
      print(
        `seed ${seed}: ${history.length} register ops (${ok} ok, ${failed} failed, ` +
          `${indeterminate} indeterminate), ${run.acknowledged.size} unique writes acknowledged ` +
          `and read back; check ${result.result}; longest time without an acknowledged write: ` +
          `${gaps.join("; ")}; unexpected: ${run.unexpected.length}`,
      );
      if (result.result !== "ok") {
        const detail = result.result === "illegal" ? result.report : result.reason;
        const path = await Deno.makeTempFile({ prefix: "raftkv-history-", suffix: ".txt" });
        await Deno.writeTextFile(
          path,
          history.map(describeOperation).join("\n") + "\nrefused:\n" + run.refusals.join("\n") +
            "\n",
        );
        throw new Error(
          `History is ${result.result} (seed ${seed}; history saved to ${path}):\n${detail}\n` +
            history.slice(-40).map(describeOperation).join("\n"),
        );
      }
      assert.deepEqual(run.unexpected, [], "unexpected HTTP statuses");
      assert.ok(ok > 100, `too few operations completed: ${ok}`);
    } catch (error) {
      print(cluster.logs());
      throw error;
    } finally {
      run.stopped = true;
      await cluster.destroy();
    }
  },
});

/** A server that answers /status like a node named `id`, and nothing else: a learner that
 * never catches up, so its addition is the only change in flight. */
function fakeNode(id: string): { url: string; close: () => Promise<void> } {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (request) =>
      new URL(request.url).pathname === "/status"
        ? Response.json({ id })
        : Response.json({ error: "not found" }, { status: 404 }),
  );
  return { url: `http://127.0.0.1:${server.addr.port}`, close: () => server.shutdown() };
}

Deno.test({
  name: "unsafe membership requests are refused with a clear 4xx",
  async fn() {
    const single = new NodeProcess({
      port: freePort(),
      dir: await Deno.makeTempDir({ prefix: "raftkv-e2e-single-" }),
      args: NODE_ARGS,
    });
    const cluster = await Cluster.start(3, { extraArgs: NODE_ARGS });
    const fakes = Array.from({ length: 6 }, (_, i) => fakeNode(`fake${i}`));
    try {
      single.start();
      await waitReady(single);
      const selfId = await idOf(single);
      const last = await httpRequest(`${single.url}/cluster/members/${selfId}`, {
        method: "DELETE",
      });
      assert.equal(last.status, 409, last.text);
      assert.match(last.text, /last voter/);

      // A node told to join through a URL where nothing answers exits with one clear line.
      const stray = new NodeProcess({
        port: freePort(),
        dir: `${cluster.root}/stray`,
        args: ["--join", `http://127.0.0.1:${freePort()}`],
      });
      stray.start();
      assert.notEqual(await waitExit(stray, 20_000), 0);
      assert.match(stray.output, /Cannot join through "http:\/\/127\.0\.0\.1:\d+"/);

      const leader = await cluster.leader();
      const [follower] = cluster.followers(leader);
      const unknown = await httpRequest(`${follower.url}/cluster/members/nobody`, {
        method: "DELETE",
      });
      assert.equal(unknown.status, 404, unknown.text);
      const unknownLeader = await clusterCall(`${follower.url}/cluster/leader`, "POST", {
        id: "nobody",
      });
      assert.equal(unknownLeader.status, 404, unknownLeader.text);
      const unreachable = await clusterCall(`${follower.url}/cluster/members`, "POST", {
        url: `http://127.0.0.1:${freePort()}`,
      });
      assert.equal(unreachable.status, 400, unreachable.text);
      assert.match(unreachable.text, /Cannot reach the new member/);

      // Two additions at once: the second arrives while the first is not committed yet.
      let refused: HttpAnswer | undefined;
      for (let pair = 0; pair < 3 && refused === undefined; pair++) {
        const answers = await Promise.all(
          [fakes[2 * pair], fakes[2 * pair + 1]].map((fake) =>
            httpRequest(`${leader.url}/cluster/members`, {
              method: "POST",
              headers: { "Content-Type": "application/json" },
              body: JSON.stringify({ url: fake.url }),
            })
          ),
        );
        refused = answers.find((answer) => answer.status !== 200);
        if (refused !== undefined) {
          assert.equal(refused.status, 409, refused.text);
          assert.match(refused.text, /another change is still in progress/);
        }
      }
      assert.ok(refused !== undefined, "a second change in flight was never refused");
      // Whichever fake was added (of two at once, either may have been the one refused).
      const learner = (await membersOf(leader)).find((member) => member.id.startsWith("fake"));
      assert.ok(learner !== undefined, "no fake learner was added");
      const learnerTransfer = await clusterCall(`${leader.url}/cluster/leader`, "POST", {
        id: learner.id,
      });
      assert.equal(learnerTransfer.status, 409, learnerTransfer.text);
      // The fake learners leave again; the cluster still works.
      for (const member of await membersOf(leader)) {
        if (!member.id.startsWith("fake")) continue;
        const answer = await clusterCall(`${leader.url}/cluster/members/${member.id}`, "DELETE");
        assert.equal(answer.status, 200, answer.text);
      }
      assert.equal((await membersOf(leader)).length, 3);
      assert.equal((await cluster.client().set("after", "1")).status, 200);
    } catch (error) {
      print(cluster.logs());
      print(single.output.slice(-3000));
      throw error;
    } finally {
      await Promise.all(fakes.map((fake) => fake.close()));
      await single.kill();
      await Deno.remove(single.spec.dir, { recursive: true }).catch(() => {});
      await cluster.destroy();
    }
  },
});
