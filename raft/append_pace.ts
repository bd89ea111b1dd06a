import type { Progress } from "./progress.ts";
import { quorumSize } from "./quorum.ts";
import type { Index, NodeId } from "./types.ts";

/** Ticks between two races (100 ms with the default 10 ms tick): see `AppendPace`. */
export const RACE_INTERVAL_TICKS = 10;

/** What the pace needs to know of one follower the leader replicates to. */
export interface PacedPeer {
  id: NodeId;
  voter: boolean;
  progress: Progress;
}

/**
 * Which followers a leader sends new entries to at once (README, Design, Pacing): the "quick"
 * voters a quorum needs besides the leader get them at once, the other voters at the next tick,
 * a tick's writes in one append, so that each write costs them no request and no disk sync.
 *
 * Who is quick: the winners of a race every RACE_INTERVAL_TICKS, in which the next new entry goes
 * to every voter at once and the first to acknowledge it win (so a follower with a slower disk
 * or link hands over to a faster one); at each tick, a quick follower that holds less of the log
 * than a paced one (it stopped answering) is replaced; and at once, one that left replicate state.
 */
export class AppendPace {
  #quick = new Set<NodeId>();
  #held = new Set<NodeId>();
  #due = false;
  /** The leader's last index at the latest tick. */
  #lastIndexAtTick: Index = 0;
  #ticksToRace = RACE_INTERVAL_TICKS;
  /** "armed": the next new entry starts a race; an index: the race's entry, awaiting answers. */
  #race: "off" | "armed" | Index = "off";
  #raceFrom: Index = 0;
  /** The voters in the race, and how many of the first to answer become the quick. */
  #racers = new Set<NodeId>();
  #raceNeeded = 0;
  #raceWinners: NodeId[] = [];

  /** A tick: quick followers that fell behind are replaced, and the held ones are due. */
  tick(peers: readonly PacedPeer[], leaderVotes: boolean, lastIndex: Index): void {
    this.#choose(peers, leaderVotes, lastIndex);
    this.#due = this.#held.size > 0;
    this.#lastIndexAtTick = lastIndex;
    if (--this.#ticksToRace <= 0) {
      this.#ticksToRace = RACE_INTERVAL_TICKS;
      // A race whose answers were lost is dropped for a new one.
      this.#race = "armed";
      this.#raceFrom = lastIndex;
    }
  }

  /**
   * Before sending: replaces a quick follower that left replicate state or the voters, and
   * starts an armed race when there is a new entry. Returns the held followers that became quick.
   */
  prepare(peers: readonly PacedPeer[], leaderVotes: boolean, lastIndex: Index): NodeId[] {
    const healthy = peers.filter((peer) =>
      this.#quick.has(peer.id) && peer.voter && peer.progress.state === "replicate"
    );
    if (healthy.length < this.#quick.size || healthy.length < this.#needed(peers, leaderVotes)) {
      this.#choose(peers, leaderVotes, lastIndex);
    }
    if (this.#race === "armed" && lastIndex > this.#raceFrom) {
      this.#race = lastIndex;
      this.#racers = new Set(peers.filter((peer) => peer.voter).map((peer) => peer.id));
      this.#raceNeeded = this.#needed(peers, leaderVotes);
      this.#raceWinners = [];
    }
    const nowQuick = [...this.#held].filter((id) => this.#quick.has(id));
    for (const id of nowQuick) this.#held.delete(id);
    return nowQuick;
  }

  /** Whether held followers wait to be sent to now (the loop has work). */
  hasDue(): boolean {
    return this.#due && this.#held.size > 0;
  }

  /**
   * Holds `peer` for the next tick if it is paced (returns true): a voter outside the quick set,
   * not the transfer's target, in replicate state and sent everything from before the last tick,
   * while no race is on.
   */
  holdIfPaced(peer: PacedPeer, transferee: NodeId | null): boolean {
    const { progress } = peer;
    const paced = peer.voter && !this.#quick.has(peer.id) && peer.id !== transferee &&
      typeof this.#race !== "number" && progress.state === "replicate" &&
      progress.next > this.#lastIndexAtTick;
    if (paced) this.#held.add(peer.id);
    return paced;
  }

  /** The held followers, when a tick has made them due; they are no longer held. */
  takeDue(): NodeId[] {
    if (!this.#due) return [];
    const due = [...this.#held];
    this.#held.clear();
    this.#due = false;
    return due;
  }

  /** A follower acknowledged up to `match`: the first voters to hold a race's entry win it. */
  acknowledged(id: NodeId, match: Index): void {
    if (typeof this.#race !== "number" || match < this.#race || !this.#racers.has(id)) return;
    if (this.#raceWinners.includes(id)) return;
    this.#raceWinners.push(id);
    if (this.#raceWinners.length < this.#raceNeeded) return;
    this.#quick = new Set(this.#raceWinners);
    this.#race = "off";
  }

  forget(id: NodeId): void {
    this.#quick.delete(id);
    this.#held.delete(id);
    this.#racers.delete(id);
    this.#raceWinners = this.#raceWinners.filter((winner) => winner !== id);
  }

  #needed(peers: readonly PacedPeer[], leaderVotes: boolean): number {
    const voterCount = peers.filter((peer) => peer.voter).length + (leaderVotes ? 1 : 0);
    return quorumSize(voterCount) - (leaderVotes ? 1 : 0);
  }

  #choose(peers: readonly PacedPeer[], leaderVotes: boolean, lastIndex: Index): void {
    // Only a follower in replicate state can be pipelined to; a paced one trails a quick one by
    // up to a tick of writes, so a quick one is replaced only once it holds less than that.
    const rank = (peer: PacedPeer) => [
      peer.progress.state === "replicate" ? 0 : 1,
      lastIndex - peer.progress.match,
      this.#quick.has(peer.id) ? 0 : 1,
    ];
    const voters = peers.filter((peer) => peer.voter);
    voters.sort((a, b) => compareRanks(rank(a), rank(b)) || (a.id < b.id ? -1 : 1));
    this.#quick = new Set(voters.slice(0, this.#needed(peers, leaderVotes)).map((peer) => peer.id));
  }
}

function compareRanks(a: number[], b: number[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}
