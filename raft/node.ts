import { EMPTY_APPEND_HOLD_MS, EmptyAppendHold } from "./append_hold.ts";
import { RaftCore } from "./core.ts";
import {
  MembershipError,
  NoLeaderError,
  NotLeaderError,
  ProposalDroppedError,
  ProposalTimeoutError,
  ReadTimeoutError,
  StoppedError,
  StorageError,
} from "./errors.ts";
import { INPUTS_QUEUED_MAX, PROPOSALS_QUEUED_MAX } from "./limits.ts";
import type { Logger } from "./logger.ts";
import { saveLocalSnapshot } from "./storage.ts";
import { AppliedWaiters, deferred, expireMap, type Waiter } from "./node_driver.ts";
import type {
  NodeCounters,
  NodeStatus,
  ProposeResult,
  RaftNodeApi,
  RaftNodeOptions,
} from "./node_api.ts";
import type { ConfChange, Entry, Index, Member, Message, NodeId, Ready, Term } from "./types.ts";

/** New command bytes, times this, must reach the last snapshot's size before the next one. */
const SNAPSHOT_SIZE_PER_LOG_BYTE = 8;
/** Most ticks one timer firing counts: a late timer catches up, a pause is forgiven. */
const TICKS_PER_TIMER_MAX = 3;

type ProposalWaiter = { term: Term; waiter: Waiter<ProposeResult> };

/**
 * The driver: one loop that feeds inputs to the core and carries out each Ready in order
 * (persist, send, apply, advance). Everything that arrives during one turn goes into the next
 * Ready together: that is group commit. Waiters give callers their answers with deadlines.
 */
export class RaftNode implements RaftNodeApi {
  readonly id: NodeId;
  readonly #counters: NodeCounters = {
    proposalsCommitted: 0,
    proposalsFailed: 0,
    leaderChanges: 0,
    electionsStarted: 0,
    readyTurns: 0,
    persistCount: 0,
    persistMsTotal: 0,
    snapshotsTaken: 0,
    snapshotsInstalled: 0,
    lastSnapshotBytes: 0,
    lastSnapshotMs: 0,
    emptyAppendsReplaced: 0,
  };
  #options: RaftNodeOptions;
  #core: RaftCore;
  #logger: Logger;
  /** Inputs for the next turn; `waiter` is told if the node stops before running it. */
  #inputs: { run: () => void; waiter?: Waiter<never> }[] = [];
  #proposalsQueued = 0;
  #ticksPending = 0;
  /** The time up to which ticks were counted. */
  #tickedUntilMs = 0;
  #wakeLoop: (() => void) | undefined;
  #stopping = false;
  #loopDone: Promise<void> = Promise.resolve();
  #stopTicks: () => void = () => {};
  #proposals = new Map<Index, ProposalWaiter>();
  #reads = new Map<number, { waiter: Waiter<Index> }>();
  #nextReadId = 1;
  #appliedWaiters = new AppliedWaiters();
  #leaderWaiters: Waiter<Member>[] = [];
  #bytesSinceSnapshot = 0;
  #snapshotting = false;
  #leader: NodeId | null = null;
  #fatal: Error | undefined;
  /** What the state machine has applied: ahead of the core's count within a turn. */
  #applied: Index = 0;
  #peersKey: string | undefined;
  #appendHold: EmptyAppendHold;

  private constructor(options: RaftNodeOptions, core: RaftCore) {
    this.#options = options;
    this.#core = core;
    this.id = core.id;
    this.#logger = options.config.logger;
    this.#appendHold = new EmptyAppendHold(
      options.clock,
      options.emptyAppendHoldMs ?? EMPTY_APPEND_HOLD_MS,
      (messages) => options.transport.send(messages),
    );
  }

  /** Loads the persisted state, restores the state machine from the snapshot, and starts. */
  static async start(options: RaftNodeOptions): Promise<RaftNode> {
    const persisted = await options.storage.load();
    let restoredBytes = 0;
    if (persisted.snapshot !== undefined) {
      const snapshot = await options.storage.loadSnapshot();
      if (snapshot === undefined || snapshot.metadata.index !== persisted.snapshot.index) {
        throw new StorageError("Cannot start: the stored snapshot is missing or does not match");
      }
      options.stateMachine.restore(snapshot.data);
      restoredBytes = snapshot.data.byteLength;
    }
    const node = new RaftNode(options, new RaftCore(options.config, persisted));
    node.#applied = node.#core.appliedIndex;
    node.#counters.lastSnapshotBytes = restoredBytes;
    node.#updatePeers();
    node.#loopDone = node.#loop();
    node.#tickedUntilMs = options.clock.now();
    node.#stopTicks = options.clock.every(options.tickMs, () => node.#onTick());
    return node;
  }

  // ---- RaftNodeApi -----------------------------------------------------------------------

  propose(data: Uint8Array, options: { timeoutMs: number }): Promise<ProposeResult> {
    const { promise, waiter } = deferred<ProposeResult>(this.#deadline(options.timeoutMs));
    if (this.#refuse(waiter)) return promise;
    if (this.#proposalsQueued >= PROPOSALS_QUEUED_MAX) {
      waiter.reject(new ProposalDroppedError("Cannot propose: too many proposals are waiting"));
      return promise;
    }
    this.#proposalsQueued++;
    this.#input(() => {
      this.#proposalsQueued--;
      if (waiter.deadlineMs <= this.#options.clock.now()) {
        return waiter.reject(new NoLeaderError("Timed out before the proposal could be made"));
      }
      try {
        const index = this.#core.propose(data);
        this.#proposals.set(index, { term: this.#core.term, waiter });
      } catch (error) {
        this.#counters.proposalsFailed++;
        waiter.reject(error as Error);
      }
    }, waiter);
    return promise;
  }

  readBarrier(options: { timeoutMs: number }): Promise<Index> {
    const { promise, waiter } = deferred<Index>(this.#deadline(options.timeoutMs));
    if (this.#refuse(waiter)) return promise;
    this.#input(() => {
      const readId = this.#nextReadId++;
      try {
        this.#core.readIndex(readId);
        this.#reads.set(readId, { waiter });
      } catch (error) {
        waiter.reject(error as Error);
      }
    }, waiter);
    return promise;
  }

  waitApplied(index: Index, options: { timeoutMs: number }): Promise<Index> {
    const { promise, waiter } = deferred<Index>(this.#deadline(options.timeoutMs));
    if (this.#refuse(waiter)) return promise;
    if (this.#applied >= index) waiter.resolve(this.#applied);
    else this.#appliedWaiters.add(index, waiter);
    return promise;
  }

  waitLeader(options: { timeoutMs: number }): Promise<Member> {
    const { promise, waiter } = deferred<Member>(this.#deadline(options.timeoutMs));
    if (this.#refuse(waiter)) return promise;
    const leader = this.leader();
    if (leader !== undefined) waiter.resolve(leader);
    else this.#leaderWaiters.push(waiter);
    return promise;
  }

  counters(): Readonly<NodeCounters> {
    return {
      ...this.#counters,
      electionsStarted: this.#core.electionsStarted,
      emptyAppendsReplaced: this.#appendHold.replaced,
    };
  }

  appliedIndex(): Index {
    return this.#applied;
  }

  leader(): Member | undefined {
    const id = this.#core.leaderId;
    return id === null ? undefined : this.#core.member(id);
  }

  step(message: Message): void {
    if (this.#stopping || this.#inputs.length >= INPUTS_QUEUED_MAX) return; // Raft tolerates loss
    this.#input(() => this.#core.step(message));
  }

  /** The transport gave up on a peer for now. */
  reportUnreachable(id: NodeId): void {
    if (!this.#stopping) this.#input(() => this.#core.reportUnreachable(id));
  }

  status(): NodeStatus {
    const core = this.#core;
    const leader = this.leader();
    return {
      id: this.id,
      role: core.role,
      term: core.term,
      leader: core.leaderId,
      leaderUrl: leader?.url ?? null,
      commitIndex: core.commitIndex,
      appliedIndex: this.#applied,
      lastLogIndex: core.lastIndex(),
      snapshotIndex: core.snapshotIndex(),
      logEntries: core.lastIndex() - core.snapshotIndex(),
      snapshotBytes: this.#counters.lastSnapshotBytes,
      members: core.confState().members.map((member) => {
        const progress = core.role === "leader" && member.id !== this.id
          ? core.progress(member.id)
          : undefined;
        if (progress === undefined) return { ...member };
        return {
          ...member,
          matchIndex: progress.match,
          nextIndex: progress.next,
          lastContactMs: progress.lastContactTicks * this.#options.tickMs,
        };
      }),
    };
  }

  changeMembership(change: ConfChange, options: { timeoutMs: number }): Promise<Index> {
    const { promise, waiter } = deferred<ProposeResult>(this.#deadline(options.timeoutMs));
    if (this.#refuse(waiter)) return promise.then((result) => result.index);
    this.#input(() => {
      try {
        const index = this.#core.proposeMembershipChange(change);
        this.#proposals.set(index, { term: this.#core.term, waiter });
      } catch (error) {
        waiter.reject(error as Error);
      }
    }, waiter);
    return promise.then((result) => result.index);
  }

  async transferLeadership(id: NodeId, options: { timeoutMs: number }): Promise<void> {
    const deadlineMs = this.#deadline(options.timeoutMs);
    const { promise, waiter } = deferred<void>(deadlineMs);
    this.#input(() => {
      try {
        this.#core.transferLeadership(id);
        waiter.resolve();
      } catch (error) {
        waiter.reject(error as Error);
      }
    }, waiter);
    await promise;
    for (;;) {
      const leader = await this.waitLeader({
        timeoutMs: Math.max(1, deadlineMs - this.#options.clock.now()),
      });
      if (leader.id === id) return;
      if (this.#options.clock.now() >= deadlineMs) {
        throw new MembershipError(`Leadership did not move to "${id}" in time`);
      }
      await new Promise<void>((resolve) =>
        this.#options.clock.after(this.#options.tickMs, resolve)
      );
    }
  }

  takeSnapshot(): Promise<Index> {
    const { promise, waiter } = deferred<Index>(Infinity);
    this.#input(() => this.#snapshot(waiter), waiter);
    return promise;
  }

  async stop(): Promise<void> {
    if (this.#stopping) return this.#loopDone;
    this.#stopping = true;
    this.#stopTicks();
    this.#wakeLoop?.();
    await this.#loopDone;
    this.#appendHold.close();
    this.#failWaiters(new StoppedError());
  }

  /** The error that stopped the node, if storage failed. */
  fatalError(): Error | undefined {
    return this.#fatal;
  }

  // ---- the loop --------------------------------------------------------------------------

  async #loop(): Promise<void> {
    while (!this.#stopping) {
      this.#drainInputs();
      if (!this.#core.hasReady()) {
        await new Promise<void>((resolve) => {
          this.#wakeLoop = resolve;
          if (this.#inputs.length > 0 || this.#ticksPending > 0 || this.#stopping) resolve();
        });
        this.#wakeLoop = undefined;
        continue;
      }
      try {
        await this.#turn(this.#core.ready());
      } catch (error) {
        this.#onFatal(error as Error);
        return;
      }
    }
  }

  #drainInputs(): void {
    for (; this.#ticksPending > 0; this.#ticksPending--) this.#core.tick();
    const inputs = this.#inputs;
    this.#inputs = [];
    for (const input of inputs) input.run();
  }

  async #turn(ready: Ready): Promise<void> {
    this.#counters.readyTurns++;
    // The core's membership changes when a config entry commits; that entry (or the snapshot)
    // is in this Ready, so tell the transport before the first message to a new member leaves.
    if (ready.snapshot !== undefined || ready.committedEntries.some((e) => e.type === "config")) {
      this.#updatePeers();
    }
    const { storage } = this.#options;
    if (ready.snapshot !== undefined) {
      await storage.saveSnapshot(ready.snapshot, { discardLog: true });
      this.#options.stateMachine.restore(ready.snapshot.data);
      this.#applied = ready.snapshot.metadata.index;
      this.#bytesSinceSnapshot = 0;
      this.#counters.snapshotsInstalled++;
      this.#counters.lastSnapshotBytes = ready.snapshot.data.byteLength;
      this.#logger.info("snapshot installed", {
        id: this.id,
        index: ready.snapshot.metadata.index,
      });
    }
    this.#send(ready.earlyMessages);
    let persisting: Promise<void> | undefined;
    const startMs = this.#options.clock.now();
    if (ready.entries.length > 0 || ready.hardState !== undefined) {
      persisting = storage.append(ready.entries, ready.hardState);
    }
    // Committed entries that were durable here before this Ready need not wait for its write
    // (committed means durable on a majority): apply them, and answer clients, meanwhile.
    const firstNewIndex = ready.entries[0]?.index ?? Infinity;
    const applyNow = ready.committedEntries.filter((entry) => entry.index < firstNewIndex);
    const applyLater = ready.committedEntries.slice(applyNow.length);
    this.#apply(applyNow);
    if (persisting !== undefined) {
      await persisting;
      const durationMs = this.#options.clock.now() - startMs;
      this.#counters.persistCount++;
      this.#counters.persistMsTotal += durationMs;
      this.#options.onPersisted?.(durationMs, ready.entries.length);
    }
    this.#send(ready.messages);
    this.#apply(applyLater);
    this.#core.advance(ready);
    this.#onSoftState(ready);
    this.#applied = this.#core.appliedIndex;
    this.#appliedWaiters.release(this.#applied);
    for (const read of ready.readStates) this.#answerRead(read.readId, read.index);
    for (const failure of ready.readFailures) {
      this.#reads.get(failure.readId)?.waiter.reject(this.#notLeader());
      this.#reads.delete(failure.readId);
    }
    this.#maybeSnapshot();
  }

  /** Applies committed entries and answers their proposers. */
  #apply(entries: Entry[]): void {
    for (const entry of entries) {
      this.#applied = entry.index;
      let result: unknown = undefined;
      if (entry.type === "command") {
        result = this.#options.stateMachine.apply(entry.index, entry.data);
        this.#bytesSinceSnapshot += entry.data.byteLength;
      }
      const proposal = this.#proposals.get(entry.index);
      if (proposal === undefined) continue;
      this.#proposals.delete(entry.index);
      if (proposal.term === entry.term) {
        this.#counters.proposalsCommitted++;
        proposal.waiter.resolve({ index: entry.index, result });
      } else {
        // Another leader's entry took this index: the proposal was lost, never applied.
        this.#counters.proposalsFailed++;
        proposal.waiter.reject(
          new ProposalDroppedError("The proposal was lost in a leader change"),
        );
      }
    }
  }

  #answerRead(readId: number, index: Index): void {
    const read = this.#reads.get(readId);
    if (read === undefined) return;
    this.#reads.delete(readId);
    if (this.#applied >= index) read.waiter.resolve(index);
    else this.#appliedWaiters.add(index, read.waiter);
  }

  #onSoftState(ready: Ready): void {
    const leader = ready.softState.leader;
    if (leader === this.#leader) return;
    this.#leader = leader;
    if (leader === null) return;
    this.#counters.leaderChanges++;
    this.#logger.info("leader changed", { id: this.id, leader, term: this.#core.term });
    const member = this.leader();
    if (member === undefined) return;
    for (const waiter of this.#leaderWaiters) waiter.resolve(member);
    this.#leaderWaiters = [];
  }

  #send(messages: Message[]): void {
    const plain: Message[] = [];
    for (const message of messages) {
      if (message.type === "installSnapshot") this.#sendSnapshot(message);
      else plain.push(message);
    }
    if (plain.length > 0) this.#appendHold.send(plain);
  }

  /** The core leaves snapshot data out of its messages; attach the stored snapshot's bytes. */
  async #sendSnapshot(message: Extract<Message, { type: "installSnapshot" }>): Promise<void> {
    try {
      const snapshot = await this.#options.storage.loadSnapshot();
      if (snapshot === undefined || snapshot.metadata.index < message.snapshot.metadata.index) {
        return;
      }
      this.#logger.info("sending snapshot", {
        id: this.id,
        to: message.to,
        index: snapshot.metadata.index,
      });
      this.#options.transport.send([{ ...message, snapshot }]);
    } catch (error) {
      this.#logger.warn("cannot load snapshot to send", { error: String(error) });
    }
  }

  // ---- snapshots -------------------------------------------------------------------------

  #maybeSnapshot(): void {
    const sinceEntries = this.#core.appliedIndex - this.#core.snapshotIndex();
    const bytes = this.#bytesSinceSnapshot;
    // A snapshot rewrites the whole state: with a large state, wait until the commands since
    // the last one amount to a share of its size, or the log would be rewritten every few
    // thousand writes. The byte threshold bounds the log whatever the state's size.
    const worthIt = bytes * SNAPSHOT_SIZE_PER_LOG_BYTE >= this.#counters.lastSnapshotBytes;
    const due = (sinceEntries >= this.#options.snapshotEntries && worthIt) ||
      bytes >= this.#options.snapshotBytes;
    if (due) this.#snapshot(undefined);
  }

  /** Snapshots the state machine at the applied index, stores it, then compacts the log. */
  #snapshot(waiter: Waiter<Index> | undefined): void {
    const index = this.#core.appliedIndex;
    if (this.#snapshotting || index <= this.#core.snapshotIndex()) {
      waiter?.resolve(this.#core.snapshotIndex());
      return;
    }
    this.#snapshotting = true;
    const startMs = this.#options.clock.now();
    const metadata = this.#core.snapshotMetadataAt(index);
    this.#bytesSinceSnapshot = 0;
    saveLocalSnapshot(this.#options.stateMachine, this.#options.storage, metadata).then(
      (byteLength) => {
        this.#input(() => this.#core.compact(index));
        this.#snapshotting = false;
        this.#counters.snapshotsTaken++;
        this.#counters.lastSnapshotBytes = byteLength;
        this.#counters.lastSnapshotMs = this.#options.clock.now() - startMs;
        this.#logger.info("snapshot taken", { id: this.id, index, bytes: byteLength });
        waiter?.resolve(index);
      },
      (error: Error) => {
        this.#snapshotting = false;
        waiter?.reject(error);
        this.#onFatal(error);
      },
    );
  }

  // ---- helpers ---------------------------------------------------------------------------

  #input(run: () => void, waiter?: Waiter<never>): void {
    this.#inputs.push({ run, waiter });
    this.#wakeLoop?.();
  }

  #onTick(): void {
    // A busy event loop fires timers late, and every late tick stretched the election timeout
    // and the heartbeat interval a little (10-30 % with 10 ms ticks under load): count the ticks
    // the clock says are due, a few at most. A longer gap is a pause, and time stops in a pause,
    // as before: a burst of ticks after one would end a healthy leadership on CheckQuorum.
    const nowMs = this.#options.clock.now();
    const due = Math.max(0, Math.floor((nowMs - this.#tickedUntilMs) / this.#options.tickMs));
    const ticks = Math.min(due, TICKS_PER_TIMER_MAX);
    this.#tickedUntilMs = due > TICKS_PER_TIMER_MAX
      ? nowMs
      : this.#tickedUntilMs + ticks * this.#options.tickMs;
    this.#ticksPending += ticks;
    this.#expireWaiters();
    this.#wakeLoop?.();
  }

  #expireWaiters(): void {
    const nowMs = this.#options.clock.now();
    expireMap(this.#proposals, nowMs, () => {
      this.#counters.proposalsFailed++;
      return new ProposalTimeoutError();
    });
    expireMap(
      this.#reads,
      nowMs,
      () => new ReadTimeoutError("Timed out confirming leadership for the read"),
    );
    this.#appliedWaiters.expire(
      nowMs,
      () => new ReadTimeoutError("Timed out waiting for the index to be applied"),
    );
    this.#leaderWaiters = this.#leaderWaiters.filter((waiter) => {
      if (waiter.deadlineMs > nowMs) return true;
      waiter.reject(new NoLeaderError());
      return false;
    });
  }

  #deadline(timeoutMs: number): number {
    return this.#options.clock.now() + timeoutMs;
  }

  /** Rejects at once when the node cannot take requests; returns true if it did. */
  #refuse(waiter: Waiter<never>): boolean {
    if (this.#fatal !== undefined) waiter.reject(this.#fatal);
    else if (this.#stopping) waiter.reject(new StoppedError());
    else return false;
    return true;
  }

  #notLeader(): NotLeaderError {
    const leader = this.leader();
    return new NotLeaderError(leader?.id ?? null, leader?.url);
  }

  /** Tells the transport the members' URLs when they changed. */
  #updatePeers(): void {
    const peers = new Map<NodeId, string>();
    for (const member of this.#core.confState().members) {
      if (member.id !== this.id) peers.set(member.id, member.url);
    }
    const key = [...peers].join(" ");
    if (key === this.#peersKey) return;
    this.#peersKey = key;
    this.#options.transport.setPeers(peers);
  }

  #onFatal(error: Error): void {
    if (this.#fatal !== undefined) return;
    this.#fatal = error instanceof StorageError
      ? error
      : new StorageError(`Storage failed: ${error.message}`);
    this.#logger.error("storage failed; stopping", { id: this.id, error: String(error) });
    this.#stopping = true;
    this.#stopTicks();
    this.#wakeLoop?.(); // a failed snapshot save comes while the loop waits: let it end
    this.#failWaiters(this.#fatal);
    this.#options.onFatal?.(this.#fatal);
  }

  #failWaiters(error: Error): void {
    for (const { waiter } of this.#inputs) waiter?.reject(error);
    this.#inputs = [];
    // A proposal in the log may still commit through another leader: its outcome is unknown,
    // whatever stopped this node. Only what was never proposed fails plainly.
    const unknown = new ProposalTimeoutError(
      `${error.message}: the outcome of the proposal is unknown`,
    );
    for (const { waiter } of this.#proposals.values()) waiter.reject(unknown);
    this.#proposals.clear();
    for (const { waiter } of this.#reads.values()) waiter.reject(error);
    this.#reads.clear();
    this.#appliedWaiters.rejectAll(error);
    for (const waiter of this.#leaderWaiters) waiter.reject(error);
    this.#leaderWaiters = [];
  }
}
