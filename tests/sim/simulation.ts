import {
  bootstrapState,
  type Entry,
  type Index,
  MembershipError,
  type Message,
  type NodeId,
  NotLeaderError,
  ProposalDroppedError,
  XorShiftPrng,
} from "../../raft/mod.ts";
import { commandKey, SafetyChecker, SafetyViolation } from "./invariants.ts";
import { describeMessage, SimNetwork } from "./network.ts";
import { type CoreSettings, deriveSeed, type NodeEnv, PHASES, SimNode } from "./sim_node.ts";
import type { SimOptions } from "./sim_options.ts";
import { checkLiveness } from "./liveness.ts";

/** Largest node number the membership changes create (fresh ids only: n1..n12). */
export const NODE_NUMBER_MAX = 12;
/** Members a cluster may grow to. */
export const MEMBERS_MAX = 7;

export interface SimStats {
  leaderTerms: number;
  committed: Index;
  acknowledged: Index;
  proposals: number;
  readsAsked: number;
  readsServed: number;
  proposalsOverwritten: number;
  crashes: number;
  pauses: number;
  partitions: number;
  snapshotsTaken: number;
  snapshotsInstalled: number;
  membershipChanges: number;
  promotions: number;
  transfers: number;
  messagesSent: number;
  messagesDropped: number;
  /** Steps from the end of the faults to a leader, and to a commit on every live member. */
  /** Proposals pending in the leader's log when the faults stopped (all must commit). */
  pendingAtHeal: number;
  leaderAfterSteps: number;
  commitAfterSteps: number;
}

/** Operator and client calls that may be refused; anything else thrown is a bug. */
function isRefusal(error: unknown): boolean {
  return error instanceof NotLeaderError || error instanceof ProposalDroppedError ||
    error instanceof MembershipError;
}

const encoder = new TextEncoder();

/**
 * A seeded cluster of RaftCores on a simulated network, driven step by step: ticks, message
 * deliveries, driver turns, client proposals and reads, and faults (crashes, pauses,
 * partitions, membership changes, leadership transfers, snapshots). Safety is checked after
 * every call into a core; liveness once the faults stop.
 */
export class Simulation {
  readonly options: SimOptions;
  readonly checker: SafetyChecker;
  readonly network: SimNetwork;
  readonly stats: SimStats = {
    leaderTerms: 0,
    committed: 0,
    acknowledged: 0,
    proposals: 0,
    readsAsked: 0,
    readsServed: 0,
    proposalsOverwritten: 0,
    crashes: 0,
    pauses: 0,
    partitions: 0,
    snapshotsTaken: 0,
    snapshotsInstalled: 0,
    membershipChanges: 0,
    promotions: 0,
    transfers: 0,
    messagesSent: 0,
    messagesDropped: 0,
    pendingAtHeal: 0,
    leaderAfterSteps: 0,
    commitAfterSteps: 0,
  };
  #prng: XorShiftPrng;
  #settings: CoreSettings;
  #nodes = new Map<NodeId, SimNode>();
  #env: NodeEnv;
  #step = 0;
  #nextNumber: number;
  #readId = 0;
  #healAtStep = 0;
  #faulty = true;
  /** The read the liveness phase waits for; its readId becomes 0 once served. */
  #livenessRead: { node: SimNode; readId: number } | undefined = undefined;
  #promotions = new Set<Index>();
  /** Removed members and the step at which their process is shut down. */
  #retireAtStep = new Map<NodeId, number>();
  /** The node being called into, for the report when a core throws. */
  #current: NodeId = "";

  constructor(options: SimOptions) {
    this.options = options;
    this.checker = new SafetyChecker(options.seed);
    this.#prng = new XorShiftPrng(deriveSeed(options.seed, 1));
    this.network = new SimNetwork(new XorShiftPrng(deriveSeed(options.seed, 2)), options.network);
    this.#settings = {
      seed: options.seed,
      electionTimeoutTicks: options.electionTimeoutTicks,
      heartbeatIntervalTicks: options.heartbeatIntervalTicks,
    };
    this.#env = {
      checker: this.checker,
      trace: options.trace === undefined
        ? undefined
        : (line) => options.trace!(`[${this.#step}] ${line}`),
      send: (node, message) => this.#send(node, message),
      crash: (node, why) => this.#crash(node, why),
      onApplied: (node, entry) => this.#onApplied(node, entry),
      onReadServed: (_node, readId) => {
        if (readId === this.#livenessRead?.readId) this.#livenessRead.readId = 0;
      },
    };
    const nodes: SimNode[] = [];
    for (let number = 1; number <= options.nodeCount; number++) nodes.push(new SimNode(number));
    this.#nextNumber = options.nodeCount + 1;
    const initial = bootstrapState(
      nodes.map((node) => ({ id: node.id, url: node.url, voter: true })),
    );
    for (const node of nodes) {
      node.storage.appendSync(initial.entries, initial.hardState);
      this.#addNode(node);
    }
  }

  get step(): number {
    return this.#step;
  }

  nodes(): SimNode[] {
    return [...this.#nodes.values()];
  }

  /** Runs the faulty steps, then the liveness phase. Throws SafetyViolation on a violation. */
  run(): SimStats {
    try {
      while (this.#step < this.options.steps) this.#runStep(true);
      checkLiveness(this);
    } catch (error) {
      if (error instanceof SafetyViolation) throw error;
      const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      throw new SafetyViolation(
        `Core or simulator failed (seed ${this.options.seed}, step ${this.#step}, ` +
          `node "${this.#current}"): ${text}`,
        { cause: error },
      );
    }
    this.stats.leaderTerms = this.checker.leaderTerms;
    this.stats.readsServed = this.checker.readsServed;
    this.stats.proposalsOverwritten = this.checker.proposalsOverwritten;
    this.stats.promotions = this.#promotions.size;
    this.stats.committed = this.checker.committedMax;
    this.stats.acknowledged = this.checker.ackedMax;
    this.stats.messagesSent = this.network.sentCount;
    this.stats.messagesDropped = this.network.droppedCount;
    return this.stats;
  }

  #trace(line: string): void {
    this.#env.trace?.(line);
  }

  #addNode(node: SimNode): void {
    node.tickRatio = 0.5 + this.#prng.next() / 2;
    this.#nodes.set(node.id, node);
    this.#start(node);
  }

  #start(node: SimNode): void {
    this.#current = node.id;
    node.start(this.#settings, this.#env);
    this.#trace(`${node.id} starts (incarnation ${node.incarnation}, term ${node.core!.term})`);
  }

  #running(): SimNode[] {
    return [...this.#nodes.values()].filter((node) => node.running);
  }

  /** Running and not paused: the nodes a client or an operator can reach. */
  #awake(): SimNode[] {
    return this.#running().filter((node) => node.pausedUntilStep <= this.#step);
  }

  #leaders(): SimNode[] {
    return this.#awake().filter((node) => node.isLeader());
  }

  #pickOne<T>(values: T[]): T | undefined {
    return values.length === 0 ? undefined : values[this.#prng.nextInt(0, values.length)];
  }

  #runStep(faulty: boolean): void {
    this.#faulty = faulty;
    this.#step += 1;
    this.checker.step = this.#step;
    this.#lifecycle();
    for (const node of this.#running()) {
      if (node.pausedUntilStep > this.#step || this.#prng.next() >= node.tickRatio) continue;
      this.#current = node.id;
      node.core!.tick();
      node.observe(this.#env);
    }
    this.#deliver();
    for (const node of this.#running()) {
      if (node.pausedUntilStep > this.#step || this.#prng.next() < 0.15) continue;
      this.#current = node.id;
      node.drive(this.#env, 2);
    }
    this.#clients();
    if (faulty) this.#faults();
  }

  /** Restarts crashed nodes, shuts down removed ones, heals partitions when due. */
  #lifecycle(): void {
    for (const node of this.#nodes.values()) {
      if (!node.running && !node.retired && node.restartAtStep <= this.#step) this.#start(node);
    }
    for (const [id, atStep] of this.#retireAtStep) {
      const node = this.#nodes.get(id);
      if (node === undefined || node.retired || atStep > this.#step) continue;
      node.stop();
      node.retired = true;
      this.#trace(`${id} is shut down after its removal`);
    }
    if (this.#healAtStep !== 0 && this.#healAtStep <= this.#step) {
      this.network.heal();
      this.#healAtStep = 0;
      this.#trace("network heals");
    }
  }

  #deliver(): void {
    for (const message of this.network.takeDue(this.#step)) {
      const node = this.#nodes.get(message.to);
      if (node === undefined || node.core === undefined) continue;
      if (node.pausedUntilStep > this.#step) {
        this.network.holdUntil(message, node.pausedUntilStep);
        continue;
      }
      this.#current = node.id;
      if (this.options.traceMessages) this.#trace(describeMessage(message));
      node.core.step(message);
      node.observe(this.#env);
    }
  }

  #send(node: SimNode, message: Message): void {
    let outgoing = message;
    if (message.type === "installSnapshot") {
      // The core sends metadata only; the bytes come from the sender's disk, as in node.ts.
      const stored = node.storage.snapshot;
      const wanted = message.snapshot.metadata;
      if (
        stored === undefined || stored.metadata.index !== wanted.index ||
        stored.metadata.term !== wanted.term
      ) {
        this.checker.fail(
          node.id,
          `sends snapshot ${wanted.index}/${wanted.term} it has not stored`,
        );
      }
      outgoing = { ...message, snapshot: { metadata: wanted, data: stored.data } };
      this.stats.snapshotsInstalled += 1;
    }
    this.checker.onSend(node, outgoing);
    this.network.send(outgoing, this.#step);
  }

  #crash(node: SimNode, why: string): void {
    if (!node.running) return;
    node.stop();
    node.restartAtStep = this.#step + this.#prng.nextInt(
      1,
      this.options.downTimeoutsMax * this.options.electionTimeoutTicks,
    );
    this.stats.crashes += 1;
    this.#trace(`${node.id} crashes ${why}; restarts at step ${node.restartAtStep}`);
  }

  #onApplied(node: SimNode, entry: Entry): void {
    if (entry.type !== "config") return;
    if (entry.change.type === "promote") this.#promotions.add(entry.index);
    if (entry.change.type !== "remove") return;
    const id = entry.change.id;
    if (this.#retireAtStep.has(id)) return;
    this.#retireAtStep.set(id, this.#step + this.#prng.nextInt(0, 100));
    this.#trace(`${node.id} applied the removal of ${id}`);
  }

  // ---- clients ---------------------------------------------------------------------------

  #clients(): void {
    const ratio = this.options.proposeRatio;
    let count = Math.floor(ratio) + (this.#prng.next() < ratio % 1 ? 1 : 0);
    while (count-- > 0) {
      const node = this.#prng.next() < 0.95
        ? this.#pickOne(this.#leaders())
        : this.#pickOne(this.#awake());
      if (node !== undefined) this.#propose(node);
    }
    if (this.#prng.next() < this.options.readRatio) {
      const node = this.#pickOne(this.#leaders());
      if (node !== undefined) this.#read(node);
    }
  }

  /** Proposes a unique command on `node`; returns its index, or undefined when refused. */
  #propose(node: SimNode): Index | undefined {
    const core = node.core!;
    this.stats.proposals += 1;
    const text = `s${this.options.seed}p${this.stats.proposals}`;
    let data = encoder.encode(text);
    if (this.#prng.next() < this.options.largeRatio) {
      // Large entries make appends and Readies split into partial batches.
      const padded = new Uint8Array(this.#prng.nextInt(4 * 1024, 100 * 1024)).fill(46);
      padded.set(data);
      data = padded;
    }
    let index: Index;
    this.#current = node.id;
    try {
      index = core.propose(data);
    } catch (error) {
      if (isRefusal(error)) return undefined;
      throw error;
    }
    node.proposals.set(index, commandKey(core.term, data));
    node.observe(this.#env);
    this.#trace(`${node.id} proposes ${text} at ${index} in term ${core.term}`);
    if (this.#faulty && this.#prng.next() < this.options.crashAfterProposeRatio) {
      node.crashAtPhase = this.#prng.nextInt(0, PHASES.length);
      this.#trace(`${node.id} will crash before ${PHASES[node.crashAtPhase]} of its next turn`);
    }
    return index;
  }

  #read(node: SimNode): number | undefined {
    const readId = ++this.#readId;
    this.stats.readsAsked += 1;
    node.reads.set(readId, { ackedAtAsk: this.checker.ackedMax, index: undefined });
    this.#current = node.id;
    try {
      node.core!.readIndex(readId);
    } catch (error) {
      node.reads.delete(readId);
      if (isRefusal(error)) return undefined;
      throw error;
    }
    node.observe(this.#env);
    return readId;
  }

  // ---- faults ----------------------------------------------------------------------------

  #faults(): void {
    const options = this.options;
    if (this.#prng.next() < options.crashRatio) this.#crashSome();
    if (this.#prng.next() < options.pauseRatio) this.#pauseSome();
    if (this.#prng.next() < options.partitionRatio && this.#healAtStep === 0) this.#partition();
    if (this.#prng.next() < options.membershipRatio) this.#changeMembership();
    if (this.#prng.next() < options.transferRatio) this.#transfer();
    if (this.#prng.next() < options.snapshotRatio) {
      const node = this.#pickOne(this.#awake());
      if (node !== undefined) this.#snapshot(node);
    }
  }

  /** Prefers the leader; keeps at most about half of the nodes down. */
  #crashSome(): void {
    const all = [...this.#nodes.values()].filter((node) => !node.retired);
    const down = all.filter((node) => !node.running).length;
    if (down + 1 > Math.ceil(all.length / 2)) return;
    const leader = this.#pickOne(this.#leaders());
    const node = leader !== undefined && this.#prng.next() < 0.4
      ? leader
      : this.#pickOne(this.#running());
    if (node === undefined) return;
    if (this.#prng.next() < 0.5) {
      this.#crash(node, "at random");
    } else {
      // Somewhere inside its next driver turn: between persisting, sending and applying.
      node.crashAtPhase = this.#prng.nextInt(0, PHASES.length);
      this.#trace(`${node.id} will crash before ${PHASES[node.crashAtPhase]} of its next turn`);
    }
  }

  /** A process stall (GC pause, VM migration): a leader may wake up deposed without knowing. */
  #pauseSome(): void {
    const leader = this.#pickOne(this.#leaders());
    const node = leader !== undefined && this.#prng.next() < 0.5
      ? leader
      : this.#pickOne(this.#running());
    if (node === undefined) return;
    node.pausedUntilStep = this.#step +
      this.#prng.nextInt(2, 4 * this.options.electionTimeoutTicks);
    this.stats.pauses += 1;
    this.#trace(`${node.id} pauses until step ${node.pausedUntilStep}`);
  }

  #partition(): void {
    const ids = [...this.#nodes.values()].filter((node) => !node.retired).map((node) => node.id);
    for (let i = ids.length - 1; i > 0; i--) {
      const j = this.#prng.nextInt(0, i + 1);
      [ids[i], ids[j]] = [ids[j], ids[i]];
    }
    const kind = this.#prng.nextInt(0, 4);
    const leader = this.#pickOne(this.#leaders());
    if (kind === 0 || (kind === 1 && leader === undefined)) {
      const cut = this.#prng.nextInt(1, ids.length);
      this.network.partition([ids.slice(0, cut), ids.slice(cut)]);
    } else if (kind === 1) {
      // A stale leader: the leader keeps a minority, the majority elects another.
      const others = ids.filter((id) => id !== leader!.id);
      const minority = others.slice(0, this.#prng.nextInt(0, Math.floor((ids.length - 1) / 2)));
      this.network.partition([[leader!.id, ...minority], others.slice(minority.length)]);
    } else if (kind === 2) {
      const cuts = this.#prng.nextInt(1, 4);
      for (let i = 0; i < cuts; i++) {
        const from = leader !== undefined && this.#prng.next() < 0.5
          ? leader.id
          : this.#pickOne(ids)!;
        const to = this.#pickOne(ids.filter((id) => id !== from));
        if (to !== undefined) this.network.cutOneWay(from, to);
      }
    } else {
      const alone = leader !== undefined && this.#prng.next() < 0.5 ? leader.id : ids[0];
      this.network.partition([[alone], ids.filter((id) => id !== alone)]);
    }
    this.#healAtStep = this.#step + this.#prng.nextInt(10, 40 * this.options.electionTimeoutTicks);
    this.stats.partitions += 1;
    this.#trace(`network cuts ${this.network.describeCuts()} until step ${this.#healAtStep}`);
  }

  #changeMembership(): void {
    const leader = this.#pickOne(this.#leaders());
    if (leader === undefined) return;
    const core = leader.core!;
    const members = core.confState().members;
    const voters = members.filter((member) => member.voter);
    const grow = this.#prng.next() < 0.5;
    this.#current = leader.id;
    try {
      if (grow && members.length < MEMBERS_MAX && this.#nextNumber <= NODE_NUMBER_MAX) {
        const node = new SimNode(this.#nextNumber);
        const index = core.proposeMembershipChange({
          type: "addLearner",
          id: node.id,
          url: node.url,
        });
        this.#nextNumber += 1;
        this.#trace(`${leader.id} proposes adding learner ${node.id} at ${index}`);
        this.#addNode(node);
      } else if (!grow) {
        const removable = members.filter((member) => !member.voter || voters.length >= 4);
        const target = this.#pickOne(removable);
        if (target === undefined) return;
        const index = core.proposeMembershipChange({ type: "remove", id: target.id });
        this.#trace(`${leader.id} proposes removing ${target.id} at ${index}`);
      } else {
        return;
      }
      this.stats.membershipChanges += 1;
    } catch (error) {
      if (!isRefusal(error)) throw error;
    }
    leader.observe(this.#env);
  }

  #transfer(): void {
    const leader = this.#pickOne(this.#leaders());
    if (leader === undefined) return;
    const core = leader.core!;
    const voters = core.confState().members.filter((member) =>
      member.voter && member.id !== leader.id
    );
    const target = this.#pickOne(voters);
    if (target === undefined) return;
    this.#current = leader.id;
    try {
      core.transferLeadership(target.id);
      this.stats.transfers += 1;
      this.#trace(`${leader.id} transfers leadership to ${target.id}`);
    } catch (error) {
      if (!isRefusal(error)) throw error;
    }
    leader.observe(this.#env);
  }

  /** Snapshots the state machine at the applied index and compacts, as node.ts does. */
  #snapshot(node: SimNode): void {
    const core = node.core!;
    const index = core.appliedIndex;
    if (index <= core.snapshotIndex()) return;
    const state = node.sm.state();
    if (state.index !== index) {
      this.checker.fail(
        node.id,
        `core says applied ${index}, the state machine is at ${state.index}`,
      );
    }
    this.#current = node.id;
    const metadata = core.snapshotMetadataAt(index);
    this.checker.onLocalSnapshot(node.id, metadata, node.storage);
    node.storage.saveSnapshotSync({ metadata, data: node.sm.snapshot() }, { discardLog: false });
    core.compact(index);
    node.observe(this.#env);
    this.stats.snapshotsTaken += 1;
    this.#trace(`${node.id} snapshots at ${index}/${metadata.term}`);
  }

  // ---- used by the liveness phase (liveness.ts) ------------------------------------------

  /** Stops every fault: heals the network, wakes paused nodes, restarts crashed ones. */
  stopFaults(): void {
    const faults = this.network.faults;
    this.network.heal();
    this.#healAtStep = 0;
    this.network.setFaults({
      dropRatio: 0,
      duplicateRatio: 0,
      delayStepsMax: Math.min(2, faults.delayStepsMax),
    });
    for (const node of this.#nodes.values()) {
      node.pausedUntilStep = 0;
      node.crashAtPhase = undefined;
      if (!node.running && !node.retired) node.restartAtStep = this.#step;
    }
    this.#trace("faults stop");
  }

  /** One step without faults. */
  calmStep(): void {
    this.#runStep(false);
  }

  /** A running leader chosen at random. */
  someLeader(): SimNode | undefined {
    return this.#pickOne(this.#leaders());
  }

  /** Proposes a fresh command on `node`: its index and expected entry key, or undefined. */
  proposeOn(node: SimNode): { index: Index; key: string } | undefined {
    const index = this.#propose(node);
    return index === undefined ? undefined : { index, key: node.proposals.get(index)! };
  }

  /** Asks a linearizable read on `node` and watches it; false when refused. */
  readOn(node: SimNode): boolean {
    const readId = this.#read(node);
    if (readId !== undefined) this.#livenessRead = { node, readId };
    return readId !== undefined;
  }

  /** The watched read: "served", "waiting", or "lost" (refused, failed or its node crashed). */
  readOutcome(): "served" | "waiting" | "lost" {
    const read = this.#livenessRead;
    if (read === undefined) return "lost";
    if (read.readId === 0) return "served";
    return read.node.reads.has(read.readId) ? "waiting" : "lost";
  }

  trace(line: string): void {
    this.#trace(line);
  }

  /** Live members (of the newest leader's configuration) that have not applied `index`. */
  lagging(index: Index): string[] {
    const leaders = this.#leaders().sort((a, b) => b.core!.term - a.core!.term);
    const members = leaders[0]?.core?.confState().members ?? [];
    const lagging: string[] = [];
    if (leaders.length === 0) lagging.push("no leader");
    for (const member of members) {
      const node = this.#nodes.get(member.id);
      if (node === undefined || node.retired) continue;
      const applied = node.running ? node.sm.state().index : -1;
      if (applied < index) lagging.push(`${member.id} at ${applied}`);
    }
    return lagging;
  }
}
