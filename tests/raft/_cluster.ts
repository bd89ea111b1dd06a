/** A tiny synchronous cluster of cores with perfect delivery, for the core's unit tests. */
import {
  bootstrapState,
  type Member,
  MemoryStorage,
  type Message,
  RaftCore,
  validateRaftConfig,
  XorShiftPrng,
} from "../../raft/mod.ts";

export interface TestNode {
  core: RaftCore;
  storage: MemoryStorage;
  applied: Uint8Array[];
  reads: { readId: number; index: number }[];
}

export class TestCluster {
  nodes = new Map<string, TestNode>();
  /** Messages dropped when `cut` returns true for (from, to). */
  cut: (from: string, to: string) => boolean = () => false;
  /** Every message delivered, in order. */
  delivered: Message[] = [];

  /** `ticks` sets the core's timing (default: 10-tick election timeout, 1-tick heartbeat). */
  constructor(
    ids: string[],
    seed = 1,
    readonly ticks: { electionTimeoutTicks?: number; heartbeatIntervalTicks?: number } = {},
  ) {
    const members: Member[] = ids.map((id) => ({ id, url: `http://${id}`, voter: true }));
    const { entries, hardState } = bootstrapState(members);
    for (const [offset, id] of ids.entries()) {
      const storage = new MemoryStorage();
      storage.appendSync(entries, hardState);
      this.nodes.set(id, {
        core: this.#newCore(id, storage, seed + offset),
        storage,
        applied: [],
        reads: [],
      });
    }
  }

  #newCore(id: string, storage: MemoryStorage, seed: number): RaftCore {
    const config = validateRaftConfig({
      id,
      prng: new XorShiftPrng(seed * 7919),
      electionTimeoutTicks: 10,
      ...this.ticks,
    });
    return new RaftCore(config, storage.loadSync());
  }

  node(id: string): TestNode {
    return this.nodes.get(id)!;
  }

  leader(): TestNode | undefined {
    return [...this.nodes.values()].find((node) => node.core.role === "leader");
  }

  /** Persists, applies and advances one Ready of `node`; returns its messages, undelivered. */
  runReady(node: TestNode): Message[] {
    const ready = node.core.ready();
    if (ready.snapshot) node.storage.saveSnapshotSync(ready.snapshot, { discardLog: true });
    node.storage.appendSync(ready.entries, ready.hardState);
    for (const entry of ready.committedEntries) {
      if (entry.type === "command") node.applied.push(entry.data);
    }
    node.reads.push(...ready.readStates);
    node.core.advance(ready);
    return [...ready.earlyMessages, ...ready.messages];
  }

  /** Runs every node's Ready until the network is quiet. */
  settle(roundsMax = 100): void {
    for (let round = 0; round < roundsMax; round++) {
      const inFlight: Message[] = [];
      for (const node of this.nodes.values()) {
        if (node.core.hasReady()) inFlight.push(...this.runReady(node));
      }
      const busy = [...this.nodes.values()].some((node) => node.core.hasReady());
      if (inFlight.length === 0 && !busy) return;
      for (const message of inFlight) {
        if (this.cut(message.from, message.to)) continue;
        this.delivered.push(message);
        this.nodes.get(message.to)?.core.step(message);
      }
    }
  }

  tick(count = 1): void {
    for (let i = 0; i < count; i++) {
      for (const node of this.nodes.values()) node.core.tick();
      this.settle();
    }
  }

  electLeader(ticksMax = 200): TestNode {
    for (let i = 0; i < ticksMax; i++) {
      const leader = this.leader();
      if (leader !== undefined) return leader;
      this.tick();
    }
    throw new Error("no leader elected");
  }
}
