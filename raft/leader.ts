import { AppendPace, type PacedPeer } from "./append_pace.ts";
import type { RaftConfig } from "./config.ts";
import { APPEND_BYTES_MAX, APPEND_ENTRIES_MAX } from "./limits.ts";
import type { RaftLog } from "./log.ts";
import type { Membership } from "./membership.ts";
import { Progress } from "./progress.ts";
import { committedIndex, tallyVotes } from "./quorum.ts";
import { ReadIndexQueue } from "./read_index.ts";
import type { Entry, Index, Message, NodeId, ReadState, SnapshotMetadata, Term } from "./types.ts";

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
/** A message as a leader writes it: the core stamps `from` and `term`. */
export type LeaderMessage = DistributiveOmit<Message, "from" | "term">;
type MessageOf<T extends Message["type"]> = Extract<Message, { type: T }>;

/** A follower's replication as the leader sees it, for status. */
export interface PeerProgress {
  match: Index;
  next: Index;
  state: Progress["state"];
  /** Ticks since the follower last answered. */
  lastContactTicks: number;
}

/** What a leader needs from the core it runs in. */
export interface LeaderHost {
  readonly id: NodeId;
  readonly log: RaftLog;
  readonly config: RaftConfig;
  term(): Term;
  commitIndex(): Index;
  membership(): Membership;
  send(message: LeaderMessage): void;
  /** Commits up to `index`; committed membership changes may end this leadership. */
  commitTo(index: Index): void;
  isLeader(): boolean;
  snapshotMetadataAt(index: Index): SnapshotMetadata;
  /** Reads a quorum confirmed: they stay valid if this leadership ends before they are handed out. */
  readsConfirmed(states: ReadState[]): void;
}

/**
 * The state a node keeps only while it leads (§5.3): each follower's progress, the reads
 * waiting for a heartbeat round, a leadership transfer under way, and the pending change.
 * It lives from becoming leader to stepping down; the core owns it.
 */
export class Leader {
  readonly reads = new ReadIndexQueue();
  /** A membership change may be proposed only once this index is committed. */
  pendingConfIndex: Index = 0;
  transferee: NodeId | null = null;
  ticks = 0;
  #host: LeaderHost;
  #progress = new Map<NodeId, Progress>();
  #peersToSend = new Set<NodeId>();
  #pace = new AppendPace();
  #commitChanged = false;
  #heartbeatElapsed = 0;
  #checkQuorumElapsed = 0;
  #transferElapsed = 0;

  constructor(host: LeaderHost) {
    this.#host = host;
    for (const id of [host.id, ...host.membership().peersOf(host.id)]) this.addPeer(id);
    this.#progress.get(host.id)!.match = host.log.stableIndex();
  }

  progress(id: NodeId): Progress | undefined {
    return this.#progress.get(id);
  }

  peerProgress(id: NodeId): PeerProgress | undefined {
    const pr = this.#progress.get(id);
    if (pr === undefined) return undefined;
    const lastContactTicks = this.ticks - pr.lastContactTick;
    return { match: pr.match, next: pr.next, state: pr.state, lastContactTicks };
  }

  addPeer(id: NodeId): void {
    if (this.#progress.has(id)) return;
    const pr = new Progress(this.#host.log.lastIndex() + 1);
    pr.recentActive = true;
    pr.lastContactTick = this.ticks;
    this.#progress.set(id, pr);
    if (id !== this.#host.id) this.#peersToSend.add(id);
  }

  removePeer(id: NodeId): void {
    this.#progress.delete(id);
    this.#pace.forget(id);
    this.#peersToSend.delete(id);
    if (this.transferee === id) this.transferee = null;
  }

  /** Appends an entry of the current term and schedules it for every peer. */
  append(entry: Entry): Index {
    const log = this.#host.log;
    const index = log.lastIndex() + 1;
    log.append([{ ...entry, index, term: this.#host.term() } as Entry]);
    for (const id of this.#progress.keys()) if (id !== this.#host.id) this.#peersToSend.add(id);
    return index;
  }

  hasWork(): boolean {
    const readsToStart = this.reads.hasUnassigned() && !this.reads.roundInFlight();
    return this.#peersToSend.size > 0 || this.#commitChanged || this.#pace.hasDue() ||
      readsToStart;
  }

  /** Returns "stepDown" when CheckQuorum finds no quorum heard within an election timeout. */
  tick(): "stepDown" | undefined {
    const config = this.#host.config;
    this.ticks++;
    this.#pace.tick(this.#pacedPeers(), this.#leaderVotes(), this.#host.log.lastIndex());
    this.#heartbeatElapsed++;
    this.#checkQuorumElapsed++;
    if (this.transferee !== null && ++this.#transferElapsed >= config.electionTimeoutTicks) {
      this.transferee = null;
    }
    for (const pr of this.#progress.values()) {
      if (pr.state === "snapshot" && ++pr.snapshotTicks >= 2 * config.electionTimeoutTicks) {
        pr.becomeProbe();
      }
    }
    if (this.#checkQuorumElapsed >= config.electionTimeoutTicks) {
      this.#checkQuorumElapsed = 0;
      if (config.checkQuorum && !this.#quorumActive()) return "stepDown";
    }
    if (this.#heartbeatElapsed >= config.heartbeatIntervalTicks) {
      this.#heartbeatElapsed = 0;
      this.#broadcastHeartbeat(this.reads.currentRound());
    }
    return undefined;
  }

  #quorumActive(): boolean {
    const voters = this.#host.membership().voters();
    const votes = new Map<NodeId, boolean>();
    for (const id of voters) {
      const pr = this.#progress.get(id);
      if (id === this.#host.id || pr?.recentActive) votes.set(id, true);
      if (pr !== undefined) pr.recentActive = false;
    }
    return tallyVotes(voters, votes) === "won";
  }

  startTransfer(to: NodeId): void {
    this.transferee = to;
    this.#transferElapsed = 0;
    const pr = this.#progress.get(to);
    if (pr !== undefined && pr.match === this.#host.log.lastIndex()) {
      this.#host.send({ type: "timeoutNow", to });
    } else {
      this.#peersToSend.add(to);
    }
  }

  /** Before a Ready: sends each peer what it lacks, as flow control allows, and read rounds. */
  flush(): void {
    this.#maybePromoteLearner();
    const peers = this.#commitChanged ? [...this.#progress.keys()] : [...this.#peersToSend];
    const paced = this.#pacedPeers();
    // Held followers that became quick get what they were held for now.
    const nowQuick = this.#pace.prepare(paced, this.#leaderVotes(), this.#host.log.lastIndex());
    const toSend = new Set([...peers, ...nowQuick]);
    const sent = new Set<NodeId>();
    for (const peer of paced) {
      if (!toSend.has(peer.id) || this.#pace.holdIfPaced(peer, this.transferee)) continue;
      this.#sendAppends(peer.id, this.#commitChanged || nowQuick.includes(peer.id));
      sent.add(peer.id);
    }
    for (const id of this.#pace.takeDue()) if (!sent.has(id)) this.#sendAppends(id, true);
    this.#peersToSend.clear();
    this.#commitChanged = false;
    // One read round in flight at a time: reads that arrive meanwhile share the next one, so
    // the batch grows with the load instead of every turn costing a round of heartbeats.
    if (this.reads.hasUnassigned() && !this.reads.roundInFlight()) {
      this.#broadcastHeartbeat(this.reads.startRound());
      this.#takeConfirmedReads();
    }
  }

  #leaderVotes(): boolean {
    return this.#host.membership().isVoter(this.#host.id);
  }

  /** Every follower this leader replicates to, for the pace. */
  #pacedPeers(): PacedPeer[] {
    const membership = this.#host.membership();
    const peers: PacedPeer[] = [];
    for (const [id, progress] of this.#progress) {
      if (id !== this.#host.id) peers.push({ id, voter: membership.isVoter(id), progress });
    }
    return peers;
  }

  #sendAppends(to: NodeId, sendEmpty: boolean): void {
    const pr = this.#progress.get(to);
    if (pr === undefined) return;
    // A probe whose match is unknown goes out even with no new entries: its answer finds
    // where the follower's log matches (the follower may have lost everything).
    const probe = pr.state === "probe" && pr.match < pr.next - 1;
    let sent = false;
    while (
      !pr.isPaused() && (pr.next <= this.#host.log.lastIndex() || ((sendEmpty || probe) && !sent))
    ) {
      if (!this.#sendAppend(to, pr)) return;
      sent = true;
    }
  }

  /** Returns false when nothing more can be sent to `to` now. */
  #sendAppend(to: NodeId, pr: Progress): boolean {
    const log = this.#host.log;
    const prevLogIndex = pr.next - 1;
    const prevLogTerm = log.term(prevLogIndex);
    if (prevLogTerm === undefined) {
      // What the follower needs was compacted away: send the snapshot (§7).
      pr.becomeSnapshot(log.snapshotIndex());
      const metadata = this.#host.snapshotMetadataAt(log.snapshotIndex());
      this.#host.send({
        type: "installSnapshot",
        to,
        snapshot: { metadata, data: new Uint8Array() },
      });
      return false;
    }
    const entries = pr.next <= log.lastIndex()
      ? log.slice(pr.next, log.lastIndex(), {
        bytesMax: APPEND_BYTES_MAX,
        countMax: APPEND_ENTRIES_MAX,
      })
      : [];
    this.#host.send({
      type: "appendEntries",
      to,
      prevLogIndex,
      prevLogTerm,
      entries,
      leaderCommit: this.#host.commitIndex(),
    });
    pr.sentEntries(entries.at(-1)?.index ?? prevLogIndex);
    return entries.length > 0;
  }

  #broadcastHeartbeat(readRound: number): void {
    const commitIndex = this.#host.commitIndex();
    for (const [id, pr] of this.#progress) {
      if (id === this.#host.id) continue;
      // A follower may commit only what it is known to hold.
      this.#host.send({
        type: "heartbeat",
        to: id,
        commit: Math.min(pr.match, commitIndex),
        readRound,
      });
    }
  }

  onAppendEntriesResponse(message: MessageOf<"appendEntriesResponse">): void {
    const pr = this.#progress.get(message.from);
    if (pr === undefined) return;
    pr.recentActive = true;
    pr.lastContactTick = this.ticks;
    if (!message.success) {
      if (message.matchIndex === 0 && message.hintIndex === 0) return; // a stale-term notice
      const probeFrom = message.hintTerm > 0
        ? this.#host.log.findConflictByTerm(message.hintIndex, message.hintTerm)
        : message.hintIndex;
      if (pr.maybeDecrease(message.matchIndex, probeFrom)) this.#peersToSend.add(message.from);
      return;
    }
    const wasPaused = pr.isPaused();
    if (pr.maybeUpdate(message.matchIndex)) {
      this.#pace.acknowledged(message.from, pr.match);
      if (pr.state === "probe") pr.becomeReplicate();
      else if (pr.state === "snapshot" && pr.match >= pr.pendingSnapshot) pr.becomeProbe();
      this.maybeCommit();
      if (!this.#host.isLeader()) return;
      if (message.from === this.transferee && pr.match === this.#host.log.lastIndex()) {
        this.#host.send({ type: "timeoutNow", to: message.from });
      }
    }
    if (wasPaused || pr.next <= this.#host.log.lastIndex()) this.#peersToSend.add(message.from);
  }

  onHeartbeatResponse(message: MessageOf<"heartbeatResponse">): void {
    const pr = this.#progress.get(message.from);
    if (pr === undefined) return;
    pr.recentActive = true;
    pr.lastContactTick = this.ticks;
    // An answer shows the follower is there: resend what may have been lost on the way.
    if (pr.state === "probe") pr.probeSent = false;
    else if (pr.state === "replicate" && pr.isPaused()) pr.becomeProbe();
    if (pr.match < this.#host.log.lastIndex()) this.#peersToSend.add(message.from);
    this.reads.ack(message.from, message.readRound);
    this.#takeConfirmedReads();
  }

  #takeConfirmedReads(): void {
    const confirmed = this.reads.takeConfirmed(this.#host.membership().voters(), this.#host.id);
    if (confirmed.length > 0) this.#host.readsConfirmed(confirmed);
  }

  /**
   * Sends TimeoutNow to the voter that holds the most of this leader's log, if it holds all
   * that is committed: it can win at once instead of after an election timeout.
   */
  handOff(): void {
    let best: NodeId | undefined;
    let bestMatch = this.#host.commitIndex();
    for (const id of this.#host.membership().voters()) {
      const match = this.#progress.get(id)?.match ?? 0;
      if (id !== this.#host.id && match >= bestMatch) [best, bestMatch] = [id, match];
    }
    if (best !== undefined) this.#host.send({ type: "timeoutNow", to: best });
  }

  /** The transport could not deliver to `id`: stop pipelining to it and probe instead. */
  reportUnreachable(id: NodeId): void {
    const pr = this.#progress.get(id);
    if (pr?.state === "replicate") pr.becomeProbe();
    // The next Ready's flush then replaces it if it was quick.
    this.#peersToSend.add(id);
  }

  /** The leader's own entries became durable up to `index`. */
  selfStable(index: Index): void {
    this.#progress.get(this.#host.id)?.maybeUpdate(index);
    this.maybeCommit();
  }

  maybeCommit(): void {
    const host = this.#host;
    // A committed membership change can change the quorum, so count again until stable.
    while (host.isLeader()) {
      const voters = host.membership().voters();
      const index = committedIndex(voters, (id) => this.#progress.get(id)?.match ?? 0);
      const commitIndex = host.commitIndex();
      // Only entries of the current term commit by counting replicas (§5.4.2, Figure 8).
      if (index <= commitIndex || host.log.term(index) !== host.term()) return;
      const hadOwnCommit = host.log.term(commitIndex) === host.term();
      host.commitTo(index);
      this.#commitChanged = true;
      if (!hadOwnCommit && host.isLeader()) this.reads.releaseWaiting(host.commitIndex());
    }
  }

  /** Promotes a learner that has caught up, when no other change is in progress. */
  #maybePromoteLearner(): void {
    const commitIndex = this.#host.commitIndex();
    if (this.#host.membership().learnerCount() === 0) return;
    if (commitIndex < this.pendingConfIndex || this.transferee !== null) return;
    for (const member of this.#host.membership().members()) {
      const pr = this.#progress.get(member.id);
      if (member.voter || pr === undefined || pr.match < commitIndex) continue;
      this.pendingConfIndex = this.append({
        type: "config",
        index: 0,
        term: 0,
        change: { type: "promote", id: member.id },
      });
      return;
    }
  }
}
