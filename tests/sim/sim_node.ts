import {
  type Entry,
  type Index,
  MemoryStorage,
  type Message,
  type NodeId,
  RaftCore,
  type Ready,
  type Role,
  type Term,
  validateRaftConfig,
  XorShiftPrng,
} from "../../raft/mod.ts";
import { commandKey, type SafetyChecker } from "./invariants.ts";
import { SimStateMachine } from "./sim_state_machine.ts";

/** What a node needs from the simulation around it. */
export interface NodeEnv {
  readonly checker: SafetyChecker;
  readonly trace: ((line: string) => void) | undefined;
  /** Sends one message from `node` (the simulation attaches snapshot data). */
  send(node: SimNode, message: Message): void;
  /** `node` crashes now: what it did not persist is lost. */
  crash(node: SimNode, why: string): void;
  /** An entry was applied on `node`. */
  onApplied(node: SimNode, entry: Entry): void;
  /** A linearizable read was answered on `node`. */
  onReadServed(node: SimNode, readId: number): void;
}

/** Settings shared by every core of one simulation. */
export interface CoreSettings {
  seed: number;
  electionTimeoutTicks: number;
  heartbeatIntervalTicks: number;
}

interface ReadRequest {
  /** Highest acknowledged write when the read was asked. */
  ackedAtAsk: Index;
  /** Set once the core answered with a read index. */
  index: Index | undefined;
}

/** Where a crash may cut a turn of the driver (`crashAtPhase`). */
export const PHASES = ["snapshot", "early", "append", "send", "apply", "advance"] as const;

/** A seed for one core's PRNG, derived from the simulation seed (murmur3's finalizer). */
export function deriveSeed(seed: number, salt: number): number {
  let h = (seed ^ Math.imul(salt + 1, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * One simulated server: its disk (a MemoryStorage that survives crashes), and while running a
 * core and a state machine, driven the way raft/node.ts drives them, one Ready per turn.
 */
export class SimNode {
  readonly id: NodeId;
  readonly number: number;
  readonly url: string;
  readonly storage = new MemoryStorage();
  core: RaftCore | undefined = undefined;
  sm = new SimStateMachine();
  incarnation = 0;
  retired = false;
  restartAtStep = 0;
  pausedUntilStep = 0;
  /** Share of steps in which this node's clock ticks: clocks run unevenly. */
  tickRatio = 1;
  crashAtPhase: number | undefined = undefined;
  /** Proposals this incarnation made and has not seen applied: index → expected entry key. */
  readonly proposals = new Map<Index, string>();
  readonly reads = new Map<number, ReadRequest>();
  #role: Role | undefined = undefined;
  #term: Term = 0;

  constructor(number: number) {
    this.number = number;
    this.id = `n${number}`;
    this.url = `sim://n${number}`;
  }

  get running(): boolean {
    return this.core !== undefined;
  }

  isLeader(): boolean {
    return this.core?.role === "leader";
  }

  /** Starts a core on what the disk holds. */
  start(settings: CoreSettings, env: NodeEnv): void {
    this.incarnation += 1;
    const prng = new XorShiftPrng(deriveSeed(settings.seed, this.number * 1000 + this.incarnation));
    const config = validateRaftConfig({
      id: this.id,
      prng,
      electionTimeoutTicks: settings.electionTimeoutTicks,
      heartbeatIntervalTicks: settings.heartbeatIntervalTicks,
      preVote: true,
      checkQuorum: true,
    });
    this.sm = new SimStateMachine();
    const snapshot = this.storage.snapshot;
    if (snapshot !== undefined) {
      this.sm.restore(snapshot.data);
      env.checker.onRestore(this.id, this.sm.state(), snapshot.metadata);
    }
    this.core = new RaftCore(config, this.storage.loadSync());
    this.#role = undefined;
    env.checker.onRestart(this.id, this.core, this.storage.hardState);
    this.observe(env);
  }

  /** Loses everything but the disk. */
  stop(): void {
    this.core = undefined;
    this.crashAtPhase = undefined;
    this.proposals.clear();
    this.reads.clear();
  }

  /** After every call into the core: safety checks and the trace of role changes. */
  observe(env: NodeEnv): void {
    const core = this.core;
    if (core === undefined) return;
    env.checker.observe(this.id, core);
    if (core.role !== this.#role || core.term !== this.#term) {
      this.#role = core.role;
      this.#term = core.term;
      env.trace?.(`${this.id} is ${core.role} in term ${core.term} (last ${core.lastIndex()})`);
    }
  }

  /**
   * Runs up to `turnsMax` turns of the driver: persist, send, apply, advance. A planned crash
   * (`crashAtPhase`) cuts the turn there. Returns the number of turns run.
   */
  drive(env: NodeEnv, turnsMax: number): number {
    let turns = 0;
    while (turns < turnsMax && this.core !== undefined && this.core.hasReady()) {
      const core = this.core;
      const term = core.term;
      const ready = core.ready();
      for (let phase = 0; phase < PHASES.length; phase++) {
        if (this.crashAtPhase === phase) {
          env.crash(this, `before ${PHASES[phase]}`);
          return turns;
        }
        this.#runPhase(env, core, ready, phase, term);
      }
      turns += 1;
      this.observe(env);
    }
    return turns;
  }

  #runPhase(env: NodeEnv, core: RaftCore, ready: Ready, phase: number, term: Term): void {
    const checker = env.checker;
    switch (PHASES[phase]) {
      case "snapshot": {
        const snapshot = ready.snapshot;
        if (snapshot === undefined) return;
        checker.onInstallSnapshot(this.id, snapshot, term);
        this.storage.saveSnapshotSync(snapshot, { discardLog: true });
        this.sm.restore(snapshot.data);
        checker.onRestore(this.id, this.sm.state(), snapshot.metadata);
        env.trace?.(
          `${this.id} installs snapshot ${snapshot.metadata.index}/${snapshot.metadata.term}`,
        );
        return;
      }
      case "early":
        for (const message of ready.earlyMessages) env.send(this, message);
        return;
      case "append":
        if (ready.entries.length === 0 && ready.hardState === undefined) return;
        checker.onAppend(this.id, this.storage, ready, term);
        // Stored entries are shared with the core's log and with messages: none may change.
        for (const entry of ready.entries) Object.freeze(entry);
        this.storage.appendSync(ready.entries, ready.hardState);
        checker.afterAppend(this.id, this.storage);
        return;
      case "send":
        for (const message of ready.messages) env.send(this, message);
        return;
      case "apply":
        for (const entry of ready.committedEntries) this.#apply(env, entry);
        this.#answerReads(env, ready);
        return;
      case "advance":
        core.advance(ready);
        return;
    }
  }

  #apply(env: NodeEnv, entry: Entry): void {
    env.checker.onApply(this.id, entry, this.sm.state().index);
    if (entry.type === "command") this.sm.apply(entry.index, entry.data);
    else this.sm.skip(entry.index);
    env.checker.afterApply(this.id, this.sm.state());
    const expected = this.proposals.get(entry.index);
    if (expected !== undefined) {
      this.proposals.delete(entry.index);
      // The client hears "ok" only when its own entry is applied where it proposed.
      if (entry.type === "command" && expected === commandKey(entry.term, entry.data)) {
        env.checker.onAck(entry.index);
      } else {
        env.checker.proposalsOverwritten += 1;
      }
    }
    env.onApplied(this, entry);
  }

  #answerReads(env: NodeEnv, ready: Ready): void {
    for (const state of ready.readStates) {
      const request = this.reads.get(state.readId);
      if (request === undefined || request.index !== undefined) {
        env.checker.fail(this.id, `answers read ${state.readId}, which is not waiting`);
      }
      env.checker.onReadState(this.id, state.readId, state.index, request.ackedAtAsk);
      request.index = state.index;
    }
    for (const failure of ready.readFailures) this.reads.delete(failure.readId);
    const applied = this.sm.state();
    for (const [readId, request] of this.reads) {
      if (request.index === undefined || request.index > applied.index) continue;
      env.checker.onReadServed(this.id, readId, applied, request.ackedAtAsk);
      this.reads.delete(readId);
      env.onReadServed(this, readId);
    }
  }
}
