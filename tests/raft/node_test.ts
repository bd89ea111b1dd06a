/** The driver loop with in-memory storage and transport: answers, deadlines and stopping. */
import assert from "node:assert/strict";
import {
  bootstrapState,
  ManualClock,
  type Member,
  MemoryStorage,
  type Message,
  type NodeId,
  ProposalTimeoutError,
  RaftNode,
  type SnapshotReader,
  type StateMachine,
  type Transport,
  validateRaftConfig,
  XorShiftPrng,
} from "../../raft/mod.ts";

class CountingMachine implements StateMachine {
  applied: number[] = [];
  apply(index: number): unknown {
    this.applied.push(index);
    return { index };
  }
  snapshot(): Uint8Array {
    return new Uint8Array();
  }
  restore(): void {}
}

/** Delivers messages between nodes in this process, unless the link is cut. */
class LoopbackTransport implements Transport {
  static nodes = new Map<NodeId, RaftNode>();
  static cut = new Set<NodeId>();
  send(messages: Message[]): void {
    for (const message of messages) {
      if (LoopbackTransport.cut.has(message.to) || LoopbackTransport.cut.has(message.from)) {
        continue;
      }
      queueMicrotask(() => LoopbackTransport.nodes.get(message.to)?.step(message));
    }
  }
  setPeers(): void {}
  close(): Promise<void> {
    return Promise.resolve();
  }
}

async function startCluster(ids: string[], clock: ManualClock): Promise<RaftNode[]> {
  const members: Member[] = ids.map((id) => ({ id, url: `http://${id}`, voter: true }));
  const { entries, hardState } = bootstrapState(members);
  const nodes: RaftNode[] = [];
  for (const [offset, id] of ids.entries()) {
    const storage = new MemoryStorage();
    storage.appendSync(entries, hardState);
    const node = await RaftNode.start({
      config: validateRaftConfig({ id, prng: new XorShiftPrng(offset + 1) }),
      storage,
      transport: new LoopbackTransport(),
      stateMachine: new CountingMachine(),
      clock,
      tickMs: 10,
      snapshotEntries: 1_000_000,
      snapshotBytes: 1e12,
    });
    LoopbackTransport.nodes.set(id, node);
    nodes.push(node);
  }
  return nodes;
}

async function advance(clock: ManualClock, ms: number): Promise<void> {
  for (let t = 0; t < ms; t += 10) {
    clock.advance(10);
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}

Deno.test("RaftNode answers a proposal once it is committed and applied", async () => {
  const clock = new ManualClock();
  const nodes = await startCluster(["a", "b", "c"], clock);
  try {
    await advance(clock, 500);
    const leader = nodes.find((node) => node.status().role === "leader");
    assert(leader !== undefined, "a leader is elected");
    const proposing = leader.propose(new Uint8Array([1]), { timeoutMs: 1_000 });
    await advance(clock, 50);
    const { index } = await proposing;
    assert(leader.appliedIndex() >= index);
  } finally {
    for (const node of nodes) await node.stop();
    LoopbackTransport.nodes.clear();
  }
});

Deno.test("a proposal pending when its node stops has an unknown outcome, not a refusal", async () => {
  const clock = new ManualClock();
  const nodes = await startCluster(["a", "b", "c"], clock);
  try {
    await advance(clock, 500);
    const leader = nodes.find((node) => node.status().role === "leader")!;
    // Cut the leader off after it proposes: the entry may still commit through another leader.
    const proposing = leader.propose(new Uint8Array([2]), { timeoutMs: 10_000 });
    LoopbackTransport.cut.add(leader.id);
    await advance(clock, 20);
    await leader.stop();
    await assert.rejects(proposing, ProposalTimeoutError);
  } finally {
    LoopbackTransport.cut.clear();
    for (const node of nodes) await node.stop();
    LoopbackTransport.nodes.clear();
  }
});

Deno.test("the quick follower learns a commit from a held notice within its hold, or from the next append; the other at the next tick", async () => {
  const clock = new ManualClock();
  const nodes = await startCluster(["a", "b", "c"], clock);
  try {
    await advance(clock, 500);
    const leader = nodes.find((node) => node.status().role === "leader")!;
    const followers = nodes.filter((node) => node !== leader);
    const settle = async () => {
      for (let i = 0; i < 5; i++) await new Promise((resolve) => setTimeout(resolve, 0));
    };
    const applied = (index: number) => followers.filter((node) => node.appliedIndex() >= index);
    // Ticks come every 10 ms and carry the commit index too: stay between two of them.
    const { index } = await leader.propose(new Uint8Array([3]), { timeoutMs: 1_000 });
    await settle();
    assert.equal(applied(index).length, 0, "the notice is held");
    clock.advance(2);
    await settle();
    assert.equal(applied(index).length, 1, "the notice left after 2 ms, to the quick follower");
    clock.advance(8);
    await settle();
    assert.equal(applied(index).length, 2, "the other follower had it at the tick");

    const replacedBefore = leader.counters().emptyAppendsReplaced;
    const first = await leader.propose(new Uint8Array([4]), { timeoutMs: 1_000 });
    const second = await leader.propose(new Uint8Array([5]), { timeoutMs: 1_000 });
    assert.equal(leader.counters().emptyAppendsReplaced, replacedBefore + 1, "the quick one's");
    await settle();
    assert.equal(applied(first.index).length, 1, "carried by the append");
    clock.advance(2);
    await settle();
    assert.equal(applied(second.index).length, 1);
    clock.advance(8);
    await settle();
    assert.equal(applied(second.index).length, 2);
  } finally {
    for (const node of nodes) await node.stop();
    LoopbackTransport.nodes.clear();
  }
});

Deno.test("late timers do not stretch the election timeout: ticks follow the clock", async () => {
  const manual = new ManualClock();
  // Every timer fires half a period late, as on a busy event loop.
  const late = {
    now: () => manual.now(),
    every: (ms: number, onTick: () => void) => manual.every(ms * 1.5, onTick),
    after: (ms: number, callback: () => void) => manual.after(ms, callback),
  };
  const members: Member[] = ["a", "b", "c"].map((id) => ({ id, url: `http://${id}`, voter: true }));
  const { entries, hardState } = bootstrapState(members);
  const storage = new MemoryStorage();
  storage.appendSync(entries, hardState);
  const node = await RaftNode.start({
    // b and c never answer: the node campaigns after exactly 10 ticks of 10 ms.
    config: validateRaftConfig({
      id: "a",
      prng: new XorShiftPrng(1),
      electionTimeoutTicks: 10,
      electionJitterTicks: 1,
    }),
    storage,
    transport: new LoopbackTransport(),
    stateMachine: new CountingMachine(),
    clock: late,
    tickMs: 10,
    snapshotEntries: 1_000_000,
    snapshotBytes: 1e12,
  });
  try {
    let campaignedAtMs: number | undefined;
    for (let ms = 0; ms < 300 && campaignedAtMs === undefined; ms++) {
      manual.advance(1);
      await new Promise((resolve) => setTimeout(resolve, 0));
      if (node.status().role !== "follower") campaignedAtMs = manual.now();
    }
    assert(campaignedAtMs !== undefined, "the node campaigned");
    // Counting one tick per (late) firing would have taken 10 firings of 15 ms: 150 ms.
    assert(campaignedAtMs >= 100 && campaignedAtMs <= 120, `campaigned at ${campaignedAtMs} ms`);
  } finally {
    await node.stop();
  }
});

/** Counts how its image was asked for: whole, or piece by piece (two pieces per call). */
class PieceMachine extends CountingMachine {
  wholeImages = 0;
  readers = 0;
  override snapshot(): Uint8Array {
    this.wholeImages++;
    return new Uint8Array([1, 2, 3]);
  }
  snapshotReader(): SnapshotReader {
    this.readers++;
    const pieces = [new Uint8Array([1]), new Uint8Array([2, 3])];
    return { next: () => pieces.shift(), close: () => pieces.splice(0) };
  }
}

/** A one-node cluster on `storage`, led by its node once `advance` has run the election. */
async function startSoleNode(
  stateMachine: StateMachine,
  storage: MemoryStorage,
): Promise<{ node: RaftNode; clock: ManualClock }> {
  const { entries, hardState } = bootstrapState([{ id: "a", url: "http://a", voter: true }]);
  storage.appendSync(entries, hardState);
  const clock = new ManualClock();
  const node = await RaftNode.start({
    config: validateRaftConfig({ id: "a", prng: new XorShiftPrng(1) }),
    storage,
    transport: new LoopbackTransport(),
    stateMachine,
    clock,
    tickMs: 10,
    snapshotEntries: 1_000_000,
    snapshotBytes: 1e12,
  });
  await advance(clock, 500);
  return { node, clock };
}

async function snapshotOnce(storage: MemoryStorage): Promise<PieceMachine> {
  const stateMachine = new PieceMachine();
  const { node, clock } = await startSoleNode(stateMachine, storage);
  try {
    const proposing = node.propose(new Uint8Array([9]), { timeoutMs: 1_000 });
    await advance(clock, 20);
    const { index } = await proposing;
    assert.equal(await node.takeSnapshot(), index);
    assert.equal(node.status().snapshotBytes, 3);
  } finally {
    await node.stop();
  }
  return stateMachine;
}

Deno.test("RaftNode saves a snapshot piece by piece when the state machine and storage can", async () => {
  const storage = new MemoryStorage();
  const stateMachine = await snapshotOnce(storage);
  assert.deepEqual([stateMachine.readers, stateMachine.wholeImages], [1, 0]);
  assert.deepEqual(storage.snapshot?.data, new Uint8Array([1, 2, 3]));
});

Deno.test("RaftNode saves a whole snapshot image when the storage takes no pieces", async () => {
  const storage = new MemoryStorage();
  Object.defineProperty(storage, "saveSnapshotFrom", { value: undefined });
  const stateMachine = await snapshotOnce(storage);
  assert.deepEqual([stateMachine.readers, stateMachine.wholeImages], [0, 1]);
  assert.deepEqual(storage.snapshot?.data, new Uint8Array([1, 2, 3]));
});

Deno.test("RaftNode stops with the error when a snapshot cannot be read out", async () => {
  class FailingMachine extends CountingMachine {
    closed = false;
    snapshotReader(): SnapshotReader {
      return {
        next: () => {
          throw new Error("the image cannot be encoded");
        },
        close: () => this.closed = true,
      };
    }
  }
  const stateMachine = new FailingMachine();
  const { node } = await startSoleNode(stateMachine, new MemoryStorage());
  try {
    await assert.rejects(node.takeSnapshot(), /the image cannot be encoded/);
    assert.equal(stateMachine.closed, true);
    assert.match(String(node.fatalError()), /the image cannot be encoded/);
  } finally {
    await node.stop();
  }
});
