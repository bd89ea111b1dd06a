import assert from "node:assert/strict";
import type { RaftConfig } from "./config.ts";
import { MembershipError, NotLeaderError, ProposalDroppedError } from "./errors.ts";
import {
  APPEND_BYTES_MAX,
  APPEND_ENTRIES_MAX,
  READY_COMMITTED_MAX,
  READY_ENTRIES_BYTES_MAX,
  READY_ENTRIES_MAX,
  READS_PENDING_MAX,
} from "./limits.ts";
import { RaftLog } from "./log.ts";
import { Membership } from "./membership.ts";
import { Progress } from "./progress.ts";
import { committedIndex, tallyVotes } from "./quorum.ts";
import { ReadIndexQueue } from "./read_index.ts";
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

type Outgoing = { message: Message; needsIndex: Index };
type MessageOf<T extends Message["type"]> = Extract<Message, { type: T }>;

/** The log every initial member starts from: one addVoter entry per member, committed. */
export function bootstrapState(members: Member[]): { entries: Entry[]; hardState: HardState } {
  const sorted = [...members].sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  const entries: Entry[] = sorted.map((member, offset) => ({
    type: "config",
    index: offset + 1,
    term: 1,
    change: { type: "addVoter", id: member.id, url: member.url },
  }));
  return { entries, hardState: { term: 1, vote: null, commit: entries.length } };
}

/**
 * Pure Raft (the Raft paper and Ongaro's thesis): no I/O, no clock, no randomness of its own.
 * Inputs are step(), tick(), propose(), readIndex() and the admin calls; the output is a Ready
 * that the driver carries out before calling advance(). Between ready() and advance() the
 * core takes no input: everything that arrives meanwhile goes into the next Ready.
 */
export class RaftCore {
  readonly id: NodeId;
  #config: RaftConfig;
  #log: RaftLog;
  #membership: Membership;
  #role: Role = "follower";
  #term: Term;
  #vote: NodeId | null;
  #leaderId: NodeId | null = null;
  /** Highest index known committed. Invariant: appliedIndex <= commitIndex <= log.lastIndex(). */
  #commitIndex: Index;
  #appliedIndex: Index;
  #electionElapsed = 0;
  #heartbeatElapsed = 0;
  #randomizedElectionTimeout = 0;
  #ticks = 0;
  #votes = new Map<NodeId, boolean>();
  #progress = new Map<NodeId, Progress>();
  #reads = new ReadIndexQueue();
  /** A leader may propose a membership change only once this index is committed. */
  #pendingConfIndex: Index = 0;
  #transferee: NodeId | null = null;
  #transferElapsed = 0;
  #peersToSend = new Set<NodeId>();
  #commitChanged = false;
  #outbox: Outgoing[] = [];
  #readStates: ReadState[] = [];
  #readFailures: ReadFailure[] = [];
  #snapshotToInstall: Snapshot | undefined;
  #persistedHardState: HardState;
  #reportedSoftState: SoftState;
  #readyOutstanding = false;
  /** Membership as of the snapshot the log starts after. */
  #snapshotConf: ConfState;

  constructor(config: RaftConfig, persisted: PersistedState) {
    this.id = config.id;
    this.#config = config;
    const snapshot = persisted.snapshot;
    this.#log = new RaftLog(snapshot?.index ?? 0, snapshot?.term ?? 0, persisted.entries);
    this.#term = persisted.hardState.term;
    this.#vote = persisted.hardState.vote;
    this.#commitIndex = persisted.hardState.commit;
    this.#appliedIndex = snapshot?.index ?? 0;
    assert(this.#commitIndex >= this.#appliedIndex, "stored commit covers the snapshot");
    assert(this.#commitIndex <= this.#log.lastIndex(), "stored commit is within the stored log");
    this.#snapshotConf = snapshot?.confState ?? { members: [] };
    this.#membership = this.#confAt(this.#commitIndex, this.#snapshotConf);
    this.#persistedHardState = { ...persisted.hardState };
    this.#reportedSoftState = this.#softState();
    this.#resetElectionTimer();
  }

  // ---- accessors -------------------------------------------------------------------------

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
  progress(id: NodeId): { match: Index; next: Index; state: string; lastContactTicks: number } | undefined {
    const pr = this.#progress.get(id);
    if (pr === undefined) return undefined;
    return { match: pr.match, next: pr.next, state: pr.state, lastContactTicks: this.#ticks - pr.lastContactTick };
  }
  /** The log entry at `index`, if held in memory (for tests and the simulator). */
  entry(index: Index): Entry | undefined {
    return this.#log.entry(index);
  }
  termAt(index: Index): Term | undefined {
    return this.#log.term(index);
  }

  // ---- inputs ----------------------------------------------------------------------------

  tick(): void {
    this.#assertNoReadyOutstanding();
    this.#ticks++;
    if (this.#role === "leader") this.#tickLeader();
    else this.#tickFollower();
  }

  propose(data: Uint8Array): Index {
    this.#assertNoReadyOutstanding();
    this.#requireLeader();
    if (this.#transferee !== null) {
      throw new ProposalDroppedError(`Cannot propose: leadership is moving to "${this.#transferee}"`);
    }
    return this.#appendAsLeader({ type: "command", index: 0, term: 0, data });
  }

  /** Asks for a linearizable read; the answer comes in a later Ready's readStates. */
  readIndex(readId: number): void {
    this.#assertNoReadyOutstanding();
    this.#requireLeader();
    if (this.#reads.size() >= READS_PENDING_MAX) {
      throw new ProposalDroppedError("Cannot read: too many reads are waiting");
    }
    // A new leader does not know the commit index until it commits in its own term (§6.4).
    if (this.#log.term(this.#commitIndex) !== this.#term) this.#reads.waitForCommit(readId);
    else this.#reads.add(readId, this.#commitIndex);
  }

  proposeMembershipChange(change: ConfChange): Index {
    this.#assertNoReadyOutstanding();
    this.#requireLeader();
    if (change.type === "addVoter") throw new MembershipError("Cannot add a voter directly: add a learner");
    // One change at a time, and only once this leader committed in its term (thesis errata).
    if (this.#commitIndex < this.#pendingConfIndex) {
      throw new MembershipError("Cannot change membership: another change is still in progress");
    }
    const refusal = this.#membership.refusal(change);
    if (refusal !== undefined) throw new MembershipError(refusal);
    const index = this.#appendAsLeader({ type: "config", index: 0, term: 0, change });
    this.#pendingConfIndex = index;
    return index;
  }

  transferLeadership(to: NodeId): void {
    this.#assertNoReadyOutstanding();
    this.#requireLeader();
    if (to === this.id) return;
    if (!this.#membership.isVoter(to)) {
      throw new MembershipError(`Cannot transfer leadership to "${to}": it is not a voter`);
    }
    this.#transferee = to;
    this.#transferElapsed = 0;
    const pr = this.#progress.get(to)!;
    if (pr.match === this.#log.lastIndex()) this.#send({ type: "timeoutNow", to });
    else this.#peersToSend.add(to);
  }

  /** Metadata for a snapshot of the state machine taken at `index` (<= appliedIndex). */
  snapshotMetadataAt(index: Index): SnapshotMetadata {
    assert(index <= this.#appliedIndex && index >= this.#log.snapshotIndex(), "snapshot index applied");
    const term = this.#log.term(index);
    assert(term !== undefined, "snapshot index is in the log");
    return { index, term, confState: this.#confAt(index, this.#snapshotConf).toConfState() };
  }

  /** A snapshot up to `index` is durable: the log before it can go. */
  compact(index: Index): void {
    this.#assertNoReadyOutstanding();
    if (index <= this.#log.snapshotIndex()) return;
    this.#snapshotConf = this.snapshotMetadataAt(index).confState;
    this.#log.compact(index);
  }

  /** The transport could not deliver to `id`: stop pipelining to it and probe instead. */
  reportUnreachable(id: NodeId): void {
    this.#assertNoReadyOutstanding();
    const pr = this.#progress.get(id);
    if (this.#role === "leader" && pr?.state === "replicate") pr.becomeProbe();
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
    if (this.#role === "leader" && (this.#peersToSend.size > 0 || this.#commitChanged)) return true;
    if (this.#reads.hasUnassigned() || this.#readStates.length > 0 || this.#readFailures.length > 0) {
      return true;
    }
    if (this.#snapshotToInstall !== undefined || this.#log.stableIndex() < this.#log.lastIndex()) {
      return true;
    }
    if (this.#outbox.length > 0 && this.#outbox[0].needsIndex <= this.#log.stableIndex()) return true;
    if (this.#appliedIndex < Math.min(this.#commitIndex, this.#log.stableIndex())) return true;
    if (this.#hardStateChanged()) return true;
    const soft = this.#softState();
    return soft.role !== this.#reportedSoftState.role || soft.leader !== this.#reportedSoftState.leader;
  }

  ready(): Ready {
    this.#assertNoReadyOutstanding();
    if (this.#role === "leader") this.#flushLeader();
    const entries = this.#log.unstableEntries({
      bytesMax: READY_ENTRIES_BYTES_MAX,
      countMax: READY_ENTRIES_MAX,
    });
    const durableIndex = entries.length > 0 ? entries[entries.length - 1].index : this.#log.stableIndex();
    const hardState = { term: this.#term, vote: this.#vote, commit: Math.min(this.#commitIndex, durableIndex) };
    const earlyMessages: Message[] = [];
    const messages: Message[] = [];
    let taken = 0;
    for (const outgoing of this.#outbox) {
      if (outgoing.needsIndex > durableIndex) break;
      if (isLeaderMessage(outgoing.message)) earlyMessages.push(outgoing.message);
      else messages.push(outgoing.message);
      taken++;
    }
    this.#outbox = this.#outbox.slice(taken);
    const applyTo = Math.min(this.#commitIndex, durableIndex);
    const committedEntries = applyTo > this.#appliedIndex
      ? this.#log.slice(this.#appliedIndex + 1, applyTo, { bytesMax: Infinity, countMax: READY_COMMITTED_MAX })
      : [];
    const ready: Ready = {
      softState: this.#softState(),
      hardState: sameHardState(hardState, this.#persistedHardState) ? undefined : hardState,
      snapshot: this.#snapshotToInstall,
      entries,
      earlyMessages,
      messages,
      committedEntries,
      readStates: this.#readStates,
      readFailures: this.#readFailures,
    };
    this.#snapshotToInstall = undefined;
    this.#readStates = [];
    this.#readFailures = [];
    this.#readyOutstanding = true;
    return ready;
  }

  advance(ready: Ready): void {
    assert(this.#readyOutstanding, "advance follows ready");
    this.#readyOutstanding = false;
    if (ready.entries.length > 0) this.#log.stableTo(ready.entries[ready.entries.length - 1].index);
    if (ready.hardState !== undefined) this.#persistedHardState = { ...ready.hardState };
    this.#reportedSoftState = ready.softState;
    const applied = ready.committedEntries.at(-1)?.index;
    if (applied !== undefined) {
      assert(applied > this.#appliedIndex && applied <= this.#commitIndex, "apply in order");
      this.#appliedIndex = applied;
    }
    if (this.#role === "leader") {
      // The leader counts itself toward a quorum only for what it has persisted (§10.2.1).
      this.#progress.get(this.id)?.maybeUpdate(this.#log.stableIndex());
      this.#maybeCommit();
    }
  }

  // ---- terms and dispatch ----------------------------------------------------------------

  /** Returns false when the message must be dropped. */
  #acceptHigherTerm(message: Message): boolean {
    if (message.type === "vote") {
      // Leader lease (thesis §4.2.3): a node that heard from a leader within the minimum
      // election timeout ignores vote requests, unless a leadership transfer asked for them.
      const inLease = this.#config.checkQuorum && this.#leaderId !== null &&
        this.#electionElapsed < this.#config.electionTimeoutTicks;
      if (inLease && !message.transfer) return false;
      if (message.pre) return true; // a pre-vote does not change our term
    }
    if (message.type === "voteResponse" && message.pre && message.granted) return true;
    const leader = message.type === "appendEntries" || message.type === "heartbeat" ||
        message.type === "installSnapshot"
      ? message.from
      : null;
    this.#becomeFollower(message.term, leader);
    return true;
  }

  #onStaleTerm(message: Message): void {
    if (message.type === "appendEntries" || message.type === "heartbeat") {
      // Tell a stale leader about the newer term so it steps down (it may be cut off and
      // unable to learn it otherwise once Pre-Vote keeps terms from rising).
      this.#send({ type: "appendEntriesResponse", to: message.from, success: false, matchIndex: 0, hintIndex: 0, hintTerm: 0 });
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
        return this.#onAppendEntries(message);
      case "appendEntriesResponse":
        return this.#onAppendEntriesResponse(message);
      case "heartbeat":
        return this.#onHeartbeat(message);
      case "heartbeatResponse":
        return this.#onHeartbeatResponse(message);
      case "installSnapshot":
        return this.#onInstallSnapshot(message);
      case "timeoutNow":
        return this.#onTimeoutNow(message);
      default:
        return assertNever(message);
    }
  }

  // ---- elections (§5.2, Pre-Vote §9.6, CheckQuorum §6.2) ----------------------------------

  #tickFollower(): void {
    this.#electionElapsed++;
    if (this.#electionElapsed >= this.#randomizedElectionTimeout && this.#promotable()) {
      this.#campaign(this.#config.preVote ? "pre" : "real", false);
    }
  }

  #tickLeader(): void {
    this.#heartbeatElapsed++;
    this.#electionElapsed++;
    if (this.#transferee !== null && ++this.#transferElapsed >= this.#config.electionTimeoutTicks) {
      this.#transferee = null;
    }
    for (const pr of this.#progress.values()) {
      if (pr.state === "snapshot" && ++pr.snapshotTicks >= 2 * this.#config.electionTimeoutTicks) {
        pr.becomeProbe();
      }
    }
    if (this.#electionElapsed >= this.#config.electionTimeoutTicks) {
      this.#electionElapsed = 0;
      if (this.#config.checkQuorum && !this.#quorumActive()) {
        this.#config.logger.warn("stepping down: no quorum heard", { id: this.id, term: this.#term });
        this.#becomeFollower(this.#term, null);
        return;
      }
    }
    if (this.#heartbeatElapsed >= this.#config.heartbeatIntervalTicks) {
      this.#heartbeatElapsed = 0;
      this.#broadcastHeartbeat(this.#reads.currentRound());
    }
  }

  #quorumActive(): boolean {
    const voters = this.#membership.voters();
    const votes = new Map<NodeId, boolean>();
    for (const id of voters) {
      const pr = this.#progress.get(id);
      if (id === this.id || pr?.recentActive) votes.set(id, true);
      if (pr !== undefined) pr.recentActive = false;
    }
    return tallyVotes(voters, votes) === "won";
  }

  #promotable(): boolean {
    return this.#membership.isVoter(this.id);
  }

  #campaign(kind: "pre" | "real", transfer: boolean): void {
    const pre = kind === "pre";
    if (pre) {
      this.#role = "preCandidate";
      this.#leaderId = null;
    } else {
      this.#term++;
      this.#role = "candidate";
      this.#vote = this.id;
      this.#leaderId = null;
    }
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
    const canVote = this.#vote === message.from ||
      (this.#vote === null && this.#leaderId === null) ||
      (message.pre && message.term > this.#term);
    const upToDate = message.lastLogTerm > this.#log.lastTerm() ||
      (message.lastLogTerm === this.#log.lastTerm() && message.lastLogIndex >= this.#log.lastIndex());
    const granted = canVote && upToDate;
    if (granted && !message.pre) {
      this.#vote = message.from;
      this.#electionElapsed = 0;
    }
    // A granted pre-vote answers in the term it was asked for, so the candidate counts it.
    this.#send({
      type: "voteResponse",
      to: message.from,
      term: granted && message.pre ? message.term : this.#term,
      pre: message.pre,
      granted,
    });
  }

  #onVoteResponse(message: MessageOf<"voteResponse">): void {
    const expected = message.pre ? "preCandidate" : "candidate";
    if (this.#role !== expected) return;
    if (message.pre && message.granted && message.term !== this.#term + 1) return;
    this.#votes.set(message.from, message.granted);
    this.#countVotes(message.pre);
  }

  #onTimeoutNow(_message: MessageOf<"timeoutNow">): void {
    if (!this.#promotable()) return;
    this.#config.logger.info("campaigning on leadership transfer", { id: this.id, term: this.#term });
    this.#campaign("real", true);
  }

  #becomeFollower(term: Term, leader: NodeId | null): void {
    const wasLeader = this.#role === "leader";
    if (term !== this.#term) {
      assert(term > this.#term, "term never decreases");
      this.#term = term;
      this.#vote = null;
    }
    this.#role = "follower";
    this.#leaderId = leader;
    this.#transferee = null;
    this.#progress.clear();
    this.#peersToSend.clear();
    this.#commitChanged = false;
    this.#resetElectionTimer();
    if (wasLeader) this.#readFailures.push(...this.#reads.failAll());
  }

  #becomeLeader(): void {
    assert(this.#role === "candidate", "only a candidate becomes leader");
    this.#role = "leader";
    this.#leaderId = this.id;
    this.#heartbeatElapsed = 0;
    this.#electionElapsed = 0;
    this.#transferee = null;
    this.#progress.clear();
    for (const id of [this.id, ...this.#membership.peersOf(this.id)]) {
      const pr = new Progress(this.#log.lastIndex() + 1);
      pr.recentActive = true;
      this.#progress.set(id, pr);
    }
    this.#progress.get(this.id)!.match = this.#log.stableIndex();
    this.#config.logger.info("became leader", { id: this.id, term: this.#term, lastIndex: this.#log.lastIndex() });
    // A no-op of its own term lets the leader commit what earlier terms left (§5.4.2, §8).
    const noopIndex = this.#appendAsLeader({ type: "noop", index: 0, term: 0 });
    this.#pendingConfIndex = noopIndex;
  }

  #resetElectionTimer(): void {
    this.#electionElapsed = 0;
    this.#heartbeatElapsed = 0;
    const base = this.#config.electionTimeoutTicks;
    this.#randomizedElectionTimeout = base + Math.floor(this.#config.prng.next() * base);
  }

  // ---- replication (§5.3) ----------------------------------------------------------------

  #appendAsLeader(entry: Entry): Index {
    const index = this.#log.lastIndex() + 1;
    this.#log.append([{ ...entry, index, term: this.#term } as Entry]);
    for (const id of this.#progress.keys()) if (id !== this.id) this.#peersToSend.add(id);
    return index;
  }

  /** Sends each peer what it is missing, as far as flow control allows; batched per turn. */
  #flushLeader(): void {
    this.#maybePromoteLearner();
    const peers = this.#commitChanged ? [...this.#progress.keys()] : [...this.#peersToSend];
    for (const id of peers) if (id !== this.id) this.#sendAppends(id, this.#commitChanged);
    this.#peersToSend.clear();
    this.#commitChanged = false;
    if (this.#reads.hasUnassigned()) {
      const round = this.#reads.startRound();
      this.#broadcastHeartbeat(round);
      this.#readStates.push(...this.#reads.takeConfirmed(this.#membership.voters(), this.id));
    }
  }

  #sendAppends(to: NodeId, sendEmpty: boolean): void {
    const pr = this.#progress.get(to);
    if (pr === undefined) return;
    let sent = false;
    while (!pr.isPaused() && (pr.next <= this.#log.lastIndex() || (sendEmpty && !sent))) {
      if (!this.#sendAppend(to, pr)) return;
      sent = true;
    }
  }

  /** Returns false when nothing more can be sent to `to` now. */
  #sendAppend(to: NodeId, pr: Progress): boolean {
    const prevLogIndex = pr.next - 1;
    const prevLogTerm = this.#log.term(prevLogIndex);
    if (prevLogTerm === undefined) {
      // What the follower needs was compacted away: send the snapshot (§7).
      pr.becomeSnapshot(this.#log.snapshotIndex());
      const metadata = this.snapshotMetadataAt(this.#log.snapshotIndex());
      this.#send({ type: "installSnapshot", to, snapshot: { metadata, data: new Uint8Array() } });
      return false;
    }
    const entries = pr.next <= this.#log.lastIndex()
      ? this.#log.slice(pr.next, this.#log.lastIndex(), { bytesMax: APPEND_BYTES_MAX, countMax: APPEND_ENTRIES_MAX })
      : [];
    this.#send({ type: "appendEntries", to, prevLogIndex, prevLogTerm, entries, leaderCommit: this.#commitIndex });
    pr.sentEntries(entries.at(-1)?.index ?? prevLogIndex);
    return entries.length > 0;
  }

  #broadcastHeartbeat(readRound: number): void {
    for (const [id, pr] of this.#progress) {
      if (id === this.id) continue;
      this.#send({ type: "heartbeat", to: id, commit: Math.min(pr.match, this.#commitIndex), readRound });
    }
  }

  #onAppendEntries(message: MessageOf<"appendEntries">): void {
    if (this.#role !== "follower") this.#becomeFollower(this.#term, message.from);
    this.#leaderId = message.from;
    this.#electionElapsed = 0;
    if (message.prevLogIndex < this.#commitIndex) {
      this.#respondAppend(message.from, true, this.#commitIndex);
      return;
    }
    if (!this.#log.matchTerm(message.prevLogIndex, message.prevLogTerm)) {
      const hintIndex = Math.min(message.prevLogIndex, this.#log.lastIndex());
      const probe = this.#log.findConflictByTerm(hintIndex, message.prevLogTerm);
      this.#send({
        type: "appendEntriesResponse",
        to: message.from,
        success: false,
        matchIndex: message.prevLogIndex,
        hintIndex: probe,
        hintTerm: this.#log.term(probe) ?? 0,
      });
      return;
    }
    const truncatedFrom = this.#log.appendAfterMatch(message.entries, this.#commitIndex);
    if (truncatedFrom !== undefined) this.#dropAnswersFrom(truncatedFrom);
    const lastNew = message.prevLogIndex + message.entries.length;
    this.#commitTo(Math.min(message.leaderCommit, lastNew));
    this.#respondAppend(message.from, true, lastNew);
  }

  #respondAppend(to: NodeId, success: boolean, matchIndex: Index): void {
    // The answer promises the entries are durable: it leaves only once they are.
    this.#send({ type: "appendEntriesResponse", to, success, matchIndex, hintIndex: 0, hintTerm: 0 }, matchIndex);
  }

  #onAppendEntriesResponse(message: MessageOf<"appendEntriesResponse">): void {
    if (this.#role !== "leader") return;
    const pr = this.#progress.get(message.from);
    if (pr === undefined) return;
    pr.recentActive = true;
    pr.lastContactTick = this.#ticks;
    if (!message.success) {
      if (message.matchIndex === 0 && message.hintIndex === 0) return; // stale-term notice
      const probeFrom = message.hintTerm > 0
        ? this.#log.findConflictByTerm(message.hintIndex, message.hintTerm)
        : message.hintIndex;
      if (pr.maybeDecrease(message.matchIndex, probeFrom)) this.#peersToSend.add(message.from);
      return;
    }
    const wasPaused = pr.isPaused();
    if (pr.maybeUpdate(message.matchIndex)) {
      if (pr.state === "probe") pr.becomeReplicate();
      else if (pr.state === "snapshot" && pr.match >= pr.pendingSnapshot) pr.becomeProbe();
      this.#maybeCommit();
      if (message.from === this.#transferee && pr.match === this.#log.lastIndex()) {
        this.#send({ type: "timeoutNow", to: message.from });
      }
    }
    if (wasPaused || pr.next <= this.#log.lastIndex()) this.#peersToSend.add(message.from);
  }

  #onHeartbeat(message: MessageOf<"heartbeat">): void {
    if (this.#role !== "follower") this.#becomeFollower(this.#term, message.from);
    this.#leaderId = message.from;
    this.#electionElapsed = 0;
    this.#commitTo(Math.min(message.commit, this.#log.lastIndex()));
    this.#send({ type: "heartbeatResponse", to: message.from, readRound: message.readRound });
  }

  #onHeartbeatResponse(message: MessageOf<"heartbeatResponse">): void {
    if (this.#role !== "leader") return;
    const pr = this.#progress.get(message.from);
    if (pr === undefined) return;
    pr.recentActive = true;
    pr.lastContactTick = this.#ticks;
    // An answer shows the follower is back: resend what may have been lost on the way.
    if (pr.state === "probe") pr.probeSent = false;
    else if (pr.state === "replicate" && pr.isPaused()) pr.becomeProbe();
    if (pr.match < this.#log.lastIndex()) this.#peersToSend.add(message.from);
    this.#reads.ack(message.from, message.readRound);
    this.#readStates.push(...this.#reads.takeConfirmed(this.#membership.voters(), this.id));
  }

  #maybeCommit(): void {
    // A committed membership change can change the quorum, so count again until stable.
    while (this.#role === "leader") {
      const index = committedIndex(this.#membership.voters(), (id) => this.#progress.get(id)?.match ?? 0);
      // Only entries of the current term commit by counting replicas (§5.4.2, Figure 8).
      if (index <= this.#commitIndex || this.#log.term(index) !== this.#term) return;
      const hadOwnCommit = this.#log.term(this.#commitIndex) === this.#term;
      this.#commitTo(index);
      this.#commitChanged = true;
      if (!hadOwnCommit && this.#role === "leader") this.#reads.releaseWaiting(this.#commitIndex);
    }
  }

  #commitTo(index: Index): void {
    assert(index <= this.#log.lastIndex() || index <= this.#commitIndex, "commit index passes the last log index");
    while (this.#commitIndex < index) {
      this.#commitIndex++;
      const entry = this.#log.entry(this.#commitIndex);
      if (entry?.type === "config") this.#applyConfChange(entry.change);
    }
  }

  // ---- membership (§4.1) -----------------------------------------------------------------

  #applyConfChange(change: ConfChange): void {
    if (!this.#membership.apply(change)) return;
    this.#config.logger.info("membership changed", { id: this.id, change: change.type, member: change.id });
    if (this.#role !== "leader") return;
    if (change.type === "addLearner" || change.type === "addVoter") {
      this.#progress.set(change.id, new Progress(this.#log.lastIndex() + 1));
      this.#peersToSend.add(change.id);
    } else if (change.type === "remove") {
      this.#progress.delete(change.id);
      if (change.id === this.id) {
        this.#becomeFollower(this.#term, null);
        return;
      }
      if (change.id === this.#transferee) this.#transferee = null;
    }
  }

  /** Promotes a learner that has caught up, when no other change is in progress. */
  #maybePromoteLearner(): void {
    if (this.#commitIndex < this.#pendingConfIndex || this.#transferee !== null) return;
    for (const member of this.#membership.members()) {
      const pr = this.#progress.get(member.id);
      if (member.voter || pr === undefined || pr.match < this.#commitIndex) continue;
      this.#pendingConfIndex = this.#appendAsLeader({
        type: "config",
        index: 0,
        term: 0,
        change: { type: "promote", id: member.id },
      });
      return;
    }
  }

  /** Membership in force at `index`, from `base` and the committed config entries in the log. */
  #confAt(index: Index, base: ConfState): Membership {
    const membership = new Membership(base);
    for (let i = this.#log.firstIndex(); i <= index; i++) {
      const entry = this.#log.entry(i);
      if (entry?.type === "config") membership.apply(entry.change);
    }
    return membership;
  }

  // ---- snapshots (§7) --------------------------------------------------------------------

  #onInstallSnapshot(message: MessageOf<"installSnapshot">): void {
    if (this.#role !== "follower") this.#becomeFollower(this.#term, message.from);
    this.#leaderId = message.from;
    this.#electionElapsed = 0;
    const { metadata } = message.snapshot;
    if (metadata.index <= this.#commitIndex) {
      this.#respondAppend(message.from, true, this.#commitIndex);
      return;
    }
    if (this.#log.matchTerm(metadata.index, metadata.term)) {
      // The log already holds the snapshot's last entry, so it matches up to there.
      this.#commitTo(metadata.index);
      this.#respondAppend(message.from, true, metadata.index);
      return;
    }
    // Anything the log holds conflicts with or stops short of the snapshot: drop it all, and
    // the answers that promised uncommitted entries of it.
    this.#dropAnswersFrom(this.#commitIndex + 1);
    this.#log.restore(metadata.index, metadata.term);
    this.#membership = new Membership(metadata.confState);
    this.#snapshotConf = metadata.confState;
    this.#commitIndex = metadata.index;
    this.#appliedIndex = metadata.index;
    this.#snapshotToInstall = message.snapshot;
    this.#config.logger.info("installing snapshot", { id: this.id, index: metadata.index, term: metadata.term });
    this.#respondAppend(message.from, true, metadata.index);
  }

  // ---- helpers ---------------------------------------------------------------------------

  #send(partial: DistributiveOmit<Message, "from" | "term"> & { term?: Term }, needsIndex: Index = 0): void {
    const message = { ...partial, from: this.id, term: partial.term ?? this.#term } as Message;
    this.#outbox.push({ message, needsIndex });
  }

  /**
   * The log lost its entries from `index` on: an answer still waiting to promise them would
   * now promise entries this node no longer holds, to a leader that may count them.
   */
  #dropAnswersFrom(index: Index): void {
    this.#outbox = this.#outbox.filter((outgoing) => outgoing.needsIndex < index);
  }

  #requireLeader(): void {
    if (this.#role !== "leader") {
      throw new NotLeaderError(this.#leaderId, this.#leaderId === null ? undefined : this.#membership.get(this.#leaderId)?.url);
    }
  }

  #assertNoReadyOutstanding(): void {
    assert(!this.#readyOutstanding, "no input between ready() and advance()");
  }

  #hardStateChanged(): boolean {
    const durable = this.#log.stableIndex();
    const current = { term: this.#term, vote: this.#vote, commit: Math.min(this.#commitIndex, durable) };
    return !sameHardState(current, this.#persistedHardState);
  }

  #softState(): SoftState {
    return { role: this.#role, leader: this.#leaderId };
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

function sameHardState(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

/** Messages only a leader sends: they may leave before the leader's own entries are durable. */
function isLeaderMessage(message: Message): boolean {
  return message.type === "appendEntries" || message.type === "heartbeat" ||
    message.type === "installSnapshot" || message.type === "timeoutNow";
}
