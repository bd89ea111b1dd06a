/**
 * The five servers of Figure 8 of the Raft paper, on the synchronous TestCluster, with the
 * control the figure needs: servers crash and restart from their disks, time passes only on
 * the servers a scenario names, and chosen messages are lost or delayed in flight.
 */
import {
  type Index,
  type Message,
  type NodeId,
  RaftCore,
  type Term,
  validateRaftConfig,
  XorShiftPrng,
} from "../../raft/mod.ts";
import { TestCluster, type TestNode } from "./_cluster.ts";

export const SERVERS = ["s1", "s2", "s3", "s4", "s5"];
/** Rounds of message delivery before a settle gives up: the figure's steps take a handful. */
const SETTLE_ROUNDS_MAX = 100;

/** An entry a server handed to its state machine. */
export interface AppliedEntry {
  server: NodeId;
  index: Index;
  term: Term;
}

export class Figure8Cluster {
  readonly cluster = new TestCluster(SERVERS);
  /** Every entry any server applied, in order, across restarts. */
  readonly applied: AppliedEntry[] = [];
  /** Each server's commit index after every message it handled and every tick. */
  readonly commitHistory = new Map<NodeId, Index[]>();
  /** Messages lost in flight. */
  drop: (message: Message) => boolean = () => false;
  /** Messages held in flight until `deliverDelayed()`. */
  delay: (message: Message) => boolean = () => false;
  /** Crashed servers: only their disks remain. */
  #down = new Map<NodeId, TestNode>();
  #delayed: Message[] = [];
  #restarts = 0;

  constructor() {
    for (const id of SERVERS) this.commitHistory.set(id, [this.core(id).commitIndex]);
  }

  /** The running core of `id`. */
  core(id: NodeId): RaftCore {
    const node = this.cluster.nodes.get(id);
    if (node === undefined) throw new Error(`Cannot reach server "${id}": it is down`);
    return node.core;
  }

  /** The term of the entry at `index` on the disk of `id` (running or not), 0 if absent. */
  termAt(id: NodeId, index: Index): Term {
    const node = this.cluster.nodes.get(id) ?? this.#down.get(id)!;
    return node.storage.entries.find((entry) => entry.index === index)?.term ?? 0;
  }

  /** The last index on the disk of `id`. */
  lastIndex(id: NodeId): Index {
    const node = this.cluster.nodes.get(id) ?? this.#down.get(id)!;
    return node.storage.entries.at(-1)?.index ?? 0;
  }

  /** `id` stops: what it did not persist is lost, and messages to it are dropped. */
  crash(id: NodeId): void {
    const node = this.cluster.nodes.get(id);
    if (node === undefined) throw new Error(`Cannot crash server "${id}": it is down`);
    this.cluster.nodes.delete(id);
    this.#down.set(id, node);
  }

  /** `id` starts again on what its disk holds, as a follower. */
  restart(id: NodeId): void {
    const node = this.#down.get(id);
    if (node === undefined) throw new Error(`Cannot restart server "${id}": it is running`);
    this.#down.delete(id);
    this.#restarts += 1;
    const config = validateRaftConfig({
      id,
      prng: new XorShiftPrng(7919 * (SERVERS.length + this.#restarts)),
      electionTimeoutTicks: 10,
    });
    const core = new RaftCore(config, node.storage.loadSync());
    this.cluster.nodes.set(id, { ...node, core });
    this.#recordCommit(id);
  }

  /** Ticks only `ids` (the others' clocks stand still), settling after each tick, until `done`. */
  tickUntil(ids: NodeId[], done: () => boolean, ticksMax = 200): void {
    for (let tick = 0; tick < ticksMax && !done(); tick++) {
      for (const id of ids) {
        this.core(id).tick();
        this.#recordCommit(id);
      }
      this.settle();
    }
    if (!done()) throw new Error(`Cannot reach the state after ${ticksMax} ticks of ${ids}`);
  }

  /** Hands the delayed messages to their receivers, then settles. */
  deliverDelayed(): void {
    const delayed = this.#delayed;
    this.#delayed = [];
    for (const message of delayed) this.#deliver(message);
    this.settle();
  }

  /**
   * Runs every running server's Ready (persist, send, apply, advance) and delivers the
   * messages, as TestCluster.settle does, until the network is quiet.
   */
  settle(): void {
    for (let round = 0; round < SETTLE_ROUNDS_MAX; round++) {
      const inFlight: Message[] = [];
      for (const [id, node] of this.cluster.nodes) {
        if (!node.core.hasReady()) continue;
        const ready = node.core.ready();
        if (ready.snapshot) node.storage.saveSnapshotSync(ready.snapshot, { discardLog: true });
        node.storage.appendSync(ready.entries, ready.hardState);
        inFlight.push(...ready.earlyMessages, ...ready.messages);
        for (const entry of ready.committedEntries) {
          this.applied.push({ server: id, index: entry.index, term: entry.term });
        }
        node.core.advance(ready);
      }
      const busy = [...this.cluster.nodes.values()].some((node) => node.core.hasReady());
      if (inFlight.length === 0 && !busy) return;
      for (const message of inFlight) {
        if (this.drop(message)) continue;
        if (this.delay(message)) this.#delayed.push(message);
        else this.#deliver(message);
      }
    }
    throw new Error(`Cannot settle the cluster in ${SETTLE_ROUNDS_MAX} rounds`);
  }

  #deliver(message: Message): void {
    const node = this.cluster.nodes.get(message.to);
    if (node === undefined) return; // a crashed server hears nothing
    node.core.step(message);
    this.#recordCommit(message.to);
  }

  #recordCommit(id: NodeId): void {
    const history = this.commitHistory.get(id)!;
    const commit = this.core(id).commitIndex;
    if (history.at(-1) !== commit) history.push(commit);
  }
}
