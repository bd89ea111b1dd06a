import type { Progress } from "./progress.ts";
import { quorumSize } from "./quorum.ts";
import type { Index, NodeId } from "./types.ts";

/** What the pace needs to know of one follower the leader replicates to. */
export interface PacedPeer {
  id: NodeId;
  voter: boolean;
  progress: Progress;
}

/**
 * Which followers a leader sends new entries to at once. A write commits once a quorum holds
 * it, so new entries go at once only to the voters that quorum needs besides the leader (the
 * "quick" ones, chosen at each tick: those holding the most of the log, the same ones while
 * they keep up), and to the other voters at the next tick, the writes of a tick in one append. Each write then
 * costs those followers no request and no disk sync of its own, and the syncs that count meet
 * one fewer on a shared disk.
 *
 * Nothing waits that should not: learners, a leadership transferee, and a follower that lacks
 * entries from before the last tick (probing, catching up, back from a stall) are sent to at
 * once as before; a quick follower that stalls falls behind a held one after the next tick's
 * append and is replaced at the tick after, or at once if it leaves replicate state. Choosing
 * only at ticks keeps the choice stable: between ticks a held follower that has just caught
 * up often answers before the quick one, and swapping then would share the work out again.
 * Safety does not depend on any of this: Raft allows any delay.
 */
export class AppendPace {
  #quick = new Set<NodeId>();
  #held = new Set<NodeId>();
  #due = false;
  /** The leader's last index at the latest tick. */
  #lastIndexAtTick: Index = 0;

  /** A tick: the quick followers are chosen again and the held ones are due. */
  tick(peers: readonly PacedPeer[], leaderVotes: boolean, lastIndex: Index): void {
    this.#choose(peers, leaderVotes, lastIndex);
    this.#due = this.#held.size > 0;
    this.#lastIndexAtTick = lastIndex;
  }

  /** Before sending: a quick follower that left replicate state or the voters is replaced. */
  keepQuick(peers: readonly PacedPeer[], leaderVotes: boolean, lastIndex: Index): void {
    const quick = peers.filter((peer) =>
      this.#quick.has(peer.id) && peer.voter && peer.progress.state === "replicate"
    );
    if (quick.length < this.#quick.size || quick.length < this.#needed(peers, leaderVotes)) {
      this.#choose(peers, leaderVotes, lastIndex);
    }
  }

  /** Whether held followers wait to be sent to now (the loop has work). */
  hasDue(): boolean {
    return this.#due;
  }

  #needed(peers: readonly PacedPeer[], leaderVotes: boolean): number {
    const voterCount = peers.filter((peer) => peer.voter).length + (leaderVotes ? 1 : 0);
    return quorumSize(voterCount) - (leaderVotes ? 1 : 0);
  }

  /** Chooses the quick followers among `peers` (all but the leader). */
  #choose(peers: readonly PacedPeer[], leaderVotes: boolean, lastIndex: Index): void {
    const voters = peers.filter((peer) => peer.voter);
    const needed = this.#needed(peers, leaderVotes);
    const rank = (peer: PacedPeer) => [
      peer.progress.state === "replicate" ? 0 : 1,
      lastIndex - peer.progress.match,
      this.#quick.has(peer.id) ? 0 : 1,
    ];
    voters.sort((a, b) => compareRanks(rank(a), rank(b)) || (a.id < b.id ? -1 : 1));
    this.#quick = new Set(voters.slice(0, needed).map((peer) => peer.id));
  }

  /**
   * Whether new entries for `peer` wait for the next tick; a follower that waits is remembered
   * and comes back from `takeDue`.
   */
  holds(peer: PacedPeer, transferee: NodeId | null): boolean {
    const { progress } = peer;
    const waits = peer.voter && !this.#quick.has(peer.id) && peer.id !== transferee &&
      progress.state === "replicate" && progress.next > this.#lastIndexAtTick;
    if (waits) this.#held.add(peer.id);
    return waits;
  }

  /** The held followers, when a tick has made them due; they are no longer held. */
  takeDue(): NodeId[] {
    if (!this.#due) return [];
    const due = [...this.#held];
    this.#held.clear();
    this.#due = false;
    return due;
  }

  forget(id: NodeId): void {
    this.#quick.delete(id);
    this.#held.delete(id);
  }
}

function compareRanks(a: number[], b: number[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}
