import assert from "node:assert/strict";
import type { RaftConfig } from "./config.ts";
import { MembershipError, NotLeaderError, ProposalDroppedError } from "./errors.ts";
import { type FollowerHost, onAppendEntries, onHeartbeat, onInstallSnapshot } from "./follower.ts";
import { asksAgainAfterRefusing, grantsVote, ignoresInLease, leaderOf } from "./election.ts";
import { Leader, type LeaderMessage, type PeerProgress } from "./leader.ts";
import {
  READS_PENDING_MAX,
  READY_COMMITTED_MAX,
  READY_ENTRIES_BYTES_MAX,
  READY_ENTRIES_MAX,
} from "./limits.ts";
import { RaftLog } from "./log.ts";
import { Membership, membershipAt } from "./membership.ts";
import { tallyVotes } from "./quorum.ts";
import { mustPersistHardState, type Outgoing, takeSendable } from "./ready.ts";
import type { PersistedState } from "./storage.ts";
import {
  assertNever,
  type ConfChange,
  type ConfState,
  type Entry,
  type HardState,
  type Index,
  type Member,
  type Message,
  type NodeId,
  type ReadFailure,
  type ReadState,
  type Ready,
  type Role,
  type Snapshot,
  type SnapshotMetadata,
  type SoftState,
  type Term,
} from "./types.ts";

type MessageOf<T extends Message["type"]> = Extract<Message, { type: T }>;

/**
 * Pure Raft (the Raft paper and Ongaro's thesis): no I/O, no clock, no randomness of its own.
 * Inputs are step(), tick(), propose(), readIndex() and the admin calls; the output is a Ready
 * that the driver carries out before calling advance(). Between ready() and advance() the
 * core takes no input: everything that arrives meanwhile goes into the next Ready.
 */
export class RaftCore {
  readonly id: NodeId;
  /** Elections this node started as a candidate (for metrics). */
  electionsStarted = 0;
  #config: RaftConfig;
  #log: RaftLog;
  #membership: Membership;
  /** Membership as of the snapshot the log starts after. */
  #snapshotConf: ConfState;
  #role: Role = "follower";
  #term: Term;
  #vote: NodeId | null;
  #leaderId: NodeId | null = null;
  /** Set while this node leads; its replication and read state. */
  #leader: Leader | undefined;
  /** Highest index known committed. Invariant: appliedIndex <= commitIndex <= log.lastIndex(). */
  #commitIndex: Index;
  #appliedIndex: Index;
  #electionElapsed = 0;
  #randomizedElectionTimeout = 0;
  #votes = new Map<NodeId, boolean>();
  #outbox: Outgoing[] = [];
  #readStates: ReadState[] = []; // confirmed reads outlive their leadership (LeaderHost)
  #readFailures: ReadFailure[] = [];
  #snapshotToInstall: Snapshot | undefined;
  #persistedHardState: HardState;
  #reportedSoftState: SoftState;
  #readyOutstanding = false;
  #followerHost: FollowerHost;

  constructor(config: RaftConfig, persisted: PersistedState) {
    this.id = config.id;
    this.#config = config;
    const snapshot = persisted.snapshot;
    this.#log = new RaftLog(snapshot?.index ?? 0, snapshot?.term ?? 0, persisted.entries);
    this.#followerHost = {
      log: this.#log,
      commitIndex: () => this.#commitIndex,
      commitTo: (index) => this.#commitTo(index),
      send: (message, needsIndex) => this.#send(message, needsIndex),
      dropAnswersFrom: (index) => this.#dropAnswersFrom(index),
      installSnapshot: (snapshot) => this.#installSnapshot(snapshot),
    };
    this.#term = persisted.hardState.term;
    this.#vote = persisted.hardState.vote;
    this.#appliedIndex = snapshot?.index ?? 0;
    // A snapshot holds only committed entries; the stored commit index may lag behind it.
    this.#commitIndex = Math.max(persisted.hardState.commit, this.#appliedIndex);
    assert(this.#commitIndex <= this.#log.lastIndex(), "stored commit is within the stored log");
    this.#snapshotConf = snapshot?.confState ?? { members: [] };
    this.#membership = membershipAt(this.#snapshotConf, this.#log, this.#commitIndex);
    this.#persistedHardState = { ...persisted.hardState };
    this.#reportedSoftState = this.#softState();
    this.#resetElectionTimer();
  }

  get role(): Role {
    return this.#role;
  }
  get term(): Term {
    return this.#term;
  }
  get leaderId(): NodeId | null {
    return this.#leaderId;
  }
  get commitIndex(): Index {
    return this.#commitIndex;
  }
  get appliedIndex(): Index {
    return this.#appliedIndex;
  }
  lastIndex(): Index {
    return this.#log.lastIndex();
  }
  snapshotIndex(): Index {
    return this.#log.snapshotIndex();
  }
  confState(): ConfState {
    return this.#membership.toConfState();
  }
  member(id: NodeId): Member | undefined {
    return this.#membership.get(id);
  }
  /** Leader only: replication state of a peer. */
  progress(id: NodeId): PeerProgress | undefined {
    return this.#leader?.peerProgress(id);
  }
  /** The log entry at `index`, if held in memory (for tests and the simulator). */
  entry(index: Index): Entry | undefined {
    return this.#log.entry(index);
  }
  termAt(index: Index): Term | undefined {
    return this.#log.term(index);
  }

  tick(): void {
    this.#assertNoReadyOutstanding();
    if (this.#leader === undefined) {
      this.#electionElapsed++;
      // A sole voter has no one to wait for: after a restart it leads at the first tick.
      const due = this.#electionElapsed >= this.#randomizedElectionTimeout ||
        this.#membership.voters().length === 1;
      if (due && this.#promotable()) this.#campaign(this.#config.preVote ? "pre" : "real", false);
      return;
    }
    // A leader stays in its lease (it ignores vote requests) until CheckQuorum says otherwise.
    if (this.#leader.tick() === "stepDown") {
      this.#config.logger.warn("stepping down: no quorum heard", { id: this.id, term: this.#term });
      this.#becomeFollower(this.#term, null);
    }
  }

  propose(data: Uint8Array): Index {
    const leader = this.#requireLeader();
    if (leader.transferee !== null) {
      throw new ProposalDroppedError(
        `Cannot propose: leadership is moving to "${leader.transferee}"`,
      );
    }
    return leader.append({ type: "command", index: 0, term: 0, data });
  }

  /** Asks for a linearizable read; the answer comes in a later Ready's readStates. */
  readIndex(readId: number): void {
    const leader = this.#requireLeader();
    if (leader.reads.size() >= READS_PENDING_MAX) {
      throw new ProposalDroppedError("Cannot read: too many reads are waiting");
    }
    // A new leader does not know the commit index until it commits in its own term (§6.4).
    if (this.#log.term(this.#commitIndex) !== this.#term) leader.reads.waitForCommit(readId);
    else leader.reads.add(readId, this.#commitIndex);
  }

  proposeMembershipChange(change: ConfChange): Index {
    const leader = this.#requireLeader();
    if (change.type === "addVoter") {
      throw new MembershipError("Cannot add a voter directly: add a learner");
    }
    // One change at a time, and only once this leader committed in its term (thesis errata).
    if (this.#commitIndex < leader.pendingConfIndex) {
      throw new MembershipError("Cannot change membership: another change is still in progress");
    }
    const refusal = this.#membership.refusal(change);
    if (refusal !== undefined) throw new MembershipError(refusal);
    leader.pendingConfIndex = leader.append({ type: "config", index: 0, term: 0, change });
    return leader.pendingConfIndex;
  }

  transferLeadership(to: NodeId): void {
    const leader = this.#requireLeader();
    if (to === this.id) return;
    if (!this.#membership.isVoter(to)) {
      throw new MembershipError(`Cannot transfer leadership to "${to}": it is not a voter`);
    }
    leader.startTransfer(to);
  }

  /** The transport could not deliver to `id`: stop pipelining to it and probe instead. */
  reportUnreachable(id: NodeId): void {
    this.#assertNoReadyOutstanding();
    this.#leader?.reportUnreachable(id);
  }

  /** Metadata for a snapshot of the state machine taken at `index` (<= appliedIndex). */
  snapshotMetadataAt(index: Index): SnapshotMetadata {
    assert(
      index <= this.#appliedIndex && index >= this.#log.snapshotIndex(),
      "snapshot index applied",
    );
    const term = this.#log.term(index);
    assert(term !== undefined, "snapshot index is in the log");
    return {
      index,
      term,
      confState: membershipAt(this.#snapshotConf, this.#log, index).toConfState(),
    };
  }

  /** A snapshot up to `index` is durable: the log before it can go. */
  compact(index: Index): void {
    this.#assertNoReadyOutstanding();
    if (index <= this.#log.snapshotIndex()) return;
    this.#snapshotConf = this.snapshotMetadataAt(index).confState;
    this.#log.compact(index);
  }

  step(message: Message): void {
    this.#assertNoReadyOutstanding();
    if (message.to !== this.id) return;
    if (message.term > this.#term) {
      if (!this.#acceptHigherTerm(message)) return;
    } else if (message.term < this.#term) {
      this.#onStaleTerm(message);
      return;
    }
    this.#dispatch(message);
  }

  // ---- Ready -----------------------------------------------------------------------------

  hasReady(): boolean {
    const stableIndex = this.#log.stableIndex();
    if (this.#leader?.hasWork()) return true;
    if (this.#readStates.length > 0 || this.#readFailures.length > 0) return true;
    if (this.#snapshotToInstall !== undefined) return true;
    if (stableIndex < this.#log.lastIndex()) return true;
    if (this.#outbox.length > 0 && this.#outbox[0].needsIndex <= stableIndex) return true;
    if (this.#appliedIndex < Math.min(this.#commitIndex, stableIndex)) return true;
    const hardState = this.#hardState(stableIndex);
    if (mustPersistHardState(hardState, this.#persistedHardState, false)) return true;
    const soft = this.#softState();
    return soft.role !== this.#reportedSoftState.role ||
      soft.leader !== this.#reportedSoftState.leader;
  }

  ready(): Ready {
    this.#assertNoReadyOutstanding();
    this.#leader?.flush();
    const entries = this.#log.unstableEntries({
      bytesMax: READY_ENTRIES_BYTES_MAX,
      countMax: READY_ENTRIES_MAX,
    });
    const durableIndex = entries.at(-1)?.index ?? this.#log.stableIndex();
    const hardState = this.#hardState(durableIndex);
    const writes = entries.length > 0 || this.#snapshotToInstall !== undefined;
    const persistHardState = mustPersistHardState(hardState, this.#persistedHardState, writes);
    const early = this.#term === this.#persistedHardState.term; // a sole voter may just have won
    const { earlyMessages, messages, waiting } = takeSendable(this.#outbox, durableIndex, early);
    this.#outbox = waiting;
    const applyTo = Math.min(this.#commitIndex, durableIndex);
    const committedEntries = applyTo > this.#appliedIndex
      ? this.#log.slice(this.#appliedIndex + 1, applyTo, {
        bytesMax: Infinity,
        countMax: READY_COMMITTED_MAX,
      })
      : [];
    const ready: Ready = {
      softState: this.#softState(),
      hardState: persistHardState ? hardState : undefined,
      snapshot: this.#snapshotToInstall,
      entries,
      earlyMessages,
      messages,
      committedEntries,
      readStates: this.#readStates,
      readFailures: this.#readFailures,
    };
    this.#readStates = [];
    this.#snapshotToInstall = undefined;
    this.#readFailures = [];
    this.#readyOutstanding = true;
    return ready;
  }

  advance(ready: Ready): void {
    assert(this.#readyOutstanding, "advance follows ready");
    this.#readyOutstanding = false;
    const lastEntry = ready.entries.at(-1);
    if (lastEntry !== undefined) this.#log.stableTo(lastEntry.index);
    if (ready.hardState !== undefined) this.#persistedHardState = { ...ready.hardState };
    this.#reportedSoftState = ready.softState;
    const applied = ready.committedEntries.at(-1)?.index;
    if (applied !== undefined) {
      assert(applied > this.#appliedIndex && applied <= this.#commitIndex, "apply in order");
      this.#appliedIndex = applied;
    }
    // The leader counts itself toward a quorum only for what it has persisted (§10.2.1).
    this.#leader?.selfStable(this.#log.stableIndex());
  }

  // ---- terms and dispatch ----------------------------------------------------------------

  /** Returns false when the message must be dropped. */
  #acceptHigherTerm(message: Message): boolean {
    if (message.type === "vote") {
      const lease = {
        ...this.#config,
        leaderId: this.#leaderId,
        electionElapsed: this.#electionElapsed,
      };
      if (ignoresInLease(lease, message)) return false;
      if (message.pre) return true; // a pre-vote does not change our term
    }
    if (message.type === "voteResponse" && message.pre && message.granted) return true;
    this.#becomeFollower(message.term, leaderOf(message));
    return true;
  }

  #onStaleTerm(message: Message): void {
    if (message.type === "appendEntries" || message.type === "heartbeat") {
      // Tell a stale leader of the newer term: with Pre-Vote it may not learn it otherwise.
      this.#send({
        type: "appendEntriesResponse",
        to: message.from,
        success: false,
        matchIndex: 0,
        hintIndex: 0,
        hintTerm: 0,
      });
    } else if (message.type === "vote" && message.pre) {
      this.#send({ type: "voteResponse", to: message.from, pre: true, granted: false });
    }
  }

  #dispatch(message: Message): void {
    switch (message.type) {
      case "vote":
        return this.#onVote(message);
      case "voteResponse":
        return this.#onVoteResponse(message);
      case "appendEntries":
        this.#heardFromLeader(message.from);
        return onAppendEntries(this.#followerHost, message);
      case "appendEntriesResponse":
        return this.#leader?.onAppendEntriesResponse(message);
      case "heartbeat":
        this.#heardFromLeader(message.from);
        return onHeartbeat(this.#followerHost, message);
      case "heartbeatResponse":
        return this.#leader?.onHeartbeatResponse(message);
      case "installSnapshot":
        this.#heardFromLeader(message.from);
        return onInstallSnapshot(this.#followerHost, message);
      case "timeoutNow":
        return this.#onTimeoutNow();
      default:
        return assertNever(message);
    }
  }

  // ---- elections (§5.2, Pre-Vote §9.6, CheckQuorum §6.2) ----------------------------------

  #promotable(): boolean {
    return this.#membership.isVoter(this.id);
  }

  #campaign(kind: "pre" | "real", transfer: boolean): void {
    const pre = kind === "pre";
    if (!pre) {
      this.#term++;
      this.#vote = this.id;
      this.electionsStarted++;
    }
    this.#role = pre ? "preCandidate" : "candidate";
    this.#leaderId = null;
    this.#resetElectionTimer();
    this.#votes = new Map([[this.id, true]]);
    if (this.#countVotes(pre)) return;
    for (const id of this.#membership.voters()) {
      if (id === this.id) continue;
      this.#send({
        type: "vote",
        to: id,
        term: pre ? this.#term + 1 : this.#term,
        pre,
        lastLogIndex: this.#log.lastIndex(),
        lastLogTerm: this.#log.lastTerm(),
        transfer,
      });
    }
  }

  /** Returns true when the election is decided. */
  #countVotes(pre: boolean): boolean {
    const result = tallyVotes(this.#membership.voters(), this.#votes);
    if (result === "won") {
      if (pre) this.#campaign("real", false);
      else this.#becomeLeader();
      return true;
    }
    if (result === "lost") {
      this.#becomeFollower(this.#term, null);
      return true;
    }
    return false;
  }

  #onVote(message: MessageOf<"vote">): void {
    const voter = {
      ...this.#config,
      role: this.#role,
      term: this.#term,
      vote: this.#vote,
      leaderId: this.#leaderId,
      lastLogIndex: this.#log.lastIndex(),
      lastLogTerm: this.#log.lastTerm(),
      electionElapsed: this.#electionElapsed,
    };
    const granted = grantsVote(voter, message);
    if (granted && !message.pre) {
      this.#vote = message.from;
      this.#electionElapsed = 0;
    }
    // A granted pre-vote answers in the term it was asked for, so the candidate counts it.
    const term = granted && message.pre ? message.term : this.#term;
    this.#send({ type: "voteResponse", to: message.from, term, pre: message.pre, granted });
    if (!granted && asksAgainAfterRefusing(voter, message) && this.#promotable()) {
      this.#campaign("pre", false);
    }
  }

  #onVoteResponse(message: MessageOf<"voteResponse">): void {
    const expected = message.pre ? "preCandidate" : "candidate";
    if (this.#role !== expected) return;
    if (message.pre && message.granted && message.term !== this.#term + 1) return;
    this.#votes.set(message.from, message.granted);
    this.#countVotes(message.pre);
  }

  #onTimeoutNow(): void {
    if (!this.#promotable()) return;
    this.#config.logger.info("campaigning on leadership transfer", { id: this.id });
    this.#campaign("real", true);
  }

  #becomeFollower(term: Term, leader: NodeId | null): void {
    if (term !== this.#term) {
      assert(term > this.#term, "term never decreases");
      this.#term = term;
      this.#vote = null;
    }
    this.#role = "follower";
    this.#leaderId = leader;
    if (this.#leader !== undefined) {
      this.#readFailures.push(...this.#leader.reads.failAll());
      this.#leader = undefined;
    }
    this.#resetElectionTimer();
  }

  #becomeLeader(): void {
    assert(this.#role === "candidate", "only a candidate becomes leader");
    this.#role = "leader";
    this.#leaderId = this.id;
    this.#electionElapsed = 0;
    this.#leader = new Leader({
      id: this.id,
      log: this.#log,
      config: this.#config,
      term: () => this.#term,
      commitIndex: () => this.#commitIndex,
      membership: () => this.#membership,
      send: (message) => this.#send(message),
      commitTo: (index) => this.#commitTo(index),
      isLeader: () => this.#role === "leader",
      snapshotMetadataAt: (index) => this.snapshotMetadataAt(index),
      readsConfirmed: (states) => this.#readStates.push(...states),
    });
    this.#config.logger.info("became leader", {
      id: this.id,
      term: this.#term,
      lastIndex: this.#log.lastIndex(),
    });
    // A no-op of its own term commits what earlier terms left (§5.4.2, §8); changes wait for it.
    this.#leader.pendingConfIndex = this.#leader.append({ type: "noop", index: 0, term: 0 });
  }

  #resetElectionTimer(): void {
    this.#electionElapsed = 0;
    const { electionTimeoutTicks, electionJitterTicks, prng } = this.#config;
    this.#randomizedElectionTimeout = electionTimeoutTicks +
      Math.floor(prng.next() * electionJitterTicks);
  }

  // ---- the follower's side of replication (§5.3) and snapshots (§7) ------------------------

  /** Any message from the current leader: it leads, and this node waits to hear again. */
  #heardFromLeader(from: NodeId): void {
    if (this.#role !== "follower") this.#becomeFollower(this.#term, from);
    this.#leaderId = from;
    this.#electionElapsed = 0;
  }

  #installSnapshot(snapshot: Snapshot): void {
    const { metadata } = snapshot;
    this.#log.restore(metadata.index, metadata.term);
    this.#membership = new Membership(metadata.confState);
    this.#snapshotConf = metadata.confState;
    this.#commitIndex = metadata.index;
    this.#appliedIndex = metadata.index;
    this.#snapshotToInstall = snapshot;
    this.#config.logger.info("installing snapshot", { id: this.id, index: metadata.index });
  }

  #commitTo(index: Index): void {
    assert(index <= this.#log.lastIndex() || index <= this.#commitIndex, "commit within the log");
    while (this.#commitIndex < index) {
      this.#commitIndex++;
      const entry = this.#log.entry(this.#commitIndex);
      if (entry?.type === "config") this.#applyConfChange(entry.change);
    }
  }

  // ---- membership (§4.1) -----------------------------------------------------------------

  /** A committed change takes effect: on every node, in log order. */
  #applyConfChange(change: ConfChange): void {
    if (!this.#membership.apply(change)) return;
    this.#config.logger.info("membership changed", {
      id: this.id,
      change: change.type,
      member: change.id,
    });
    if (this.#leader === undefined) return;
    if (change.type === "addLearner" || change.type === "addVoter") {
      this.#leader.addPeer(change.id);
    } else if (change.type === "remove") {
      this.#leader.removePeer(change.id);
      // A leader that removed itself steps down, and has an up-to-date voter campaign at once.
      if (change.id === this.id) {
        this.#leader.handOff();
        this.#becomeFollower(this.#term, null);
      }
    }
  }

  // ---- helpers ---------------------------------------------------------------------------

  #send(partial: LeaderMessage & { term?: Term }, needsIndex: Index = 0): void {
    const message = { ...partial, from: this.id, term: partial.term ?? this.#term } as Message;
    this.#outbox.push({ message, needsIndex });
  }

  /** The log lost entries from `index` on: answers still waiting must not promise them. */
  #dropAnswersFrom(index: Index): void {
    this.#outbox = this.#outbox.filter((outgoing) => outgoing.needsIndex < index);
  }

  #requireLeader(): Leader {
    this.#assertNoReadyOutstanding();
    if (this.#leader === undefined) {
      const url = this.#leaderId === null ? undefined : this.#membership.get(this.#leaderId)?.url;
      throw new NotLeaderError(this.#leaderId, url);
    }
    return this.#leader;
  }

  #assertNoReadyOutstanding(): void {
    assert(!this.#readyOutstanding, "no input between ready() and advance()");
  }

  /** The hard state to persist once the log is durable up to `durableIndex`. */
  #hardState(durableIndex: Index): HardState {
    // Never persist a commit index past the durable log: a restart must find it in the log.
    return {
      term: this.#term,
      vote: this.#vote,
      commit: Math.min(this.#commitIndex, durableIndex),
    };
  }

  #softState(): SoftState {
    return { role: this.#role, leader: this.#leaderId };
  }
}
