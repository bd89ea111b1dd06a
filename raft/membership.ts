import type { RaftLog } from "./log.ts";
import type { ConfChange, ConfState, Entry, HardState, Index, Member, NodeId } from "./types.ts";

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
 * Cluster membership in force: the latest committed configuration. Changes go one server at a
 * time (thesis §4.1), so any two consecutive configurations share a majority.
 */
export class Membership {
  #members = new Map<NodeId, Member>();
  /** Derived lists, rebuilt only when the membership changes: they are read per ack. */
  #voters: readonly NodeId[] = [];
  #sorted: readonly Member[] = [];

  constructor(confState: ConfState) {
    for (const member of confState.members) this.#members.set(member.id, { ...member });
    this.#derive();
  }

  #derive(): void {
    this.#sorted = [...this.#members.values()].sort((a, b) =>
      a.id < b.id ? -1 : a.id > b.id ? 1 : 0
    );
    this.#voters = this.#sorted.filter((member) => member.voter).map((member) => member.id);
  }

  clone(): Membership {
    return new Membership(this.toConfState());
  }

  has(id: NodeId): boolean {
    return this.#members.has(id);
  }

  isVoter(id: NodeId): boolean {
    return this.#members.get(id)?.voter === true;
  }

  get(id: NodeId): Member | undefined {
    return this.#members.get(id);
  }

  voters(): readonly NodeId[] {
    return this.#voters;
  }

  /** Every member but `self`: the peers a leader replicates to. */
  peersOf(self: NodeId): NodeId[] {
    return [...this.#members.keys()].filter((id) => id !== self);
  }

  /** Sorted by id. */
  members(): readonly Member[] {
    return this.#sorted;
  }

  learnerCount(): number {
    return this.#sorted.length - this.#voters.length;
  }

  toConfState(): ConfState {
    return { members: this.members().map((member) => ({ ...member })) };
  }

  /** Why `change` cannot be made now, or undefined when it can. */
  refusal(change: ConfChange): string | undefined {
    const member = this.#members.get(change.id);
    switch (change.type) {
      case "addVoter":
      case "addLearner":
        if (member !== undefined) return `Cannot add member "${change.id}": it is already a member`;
        for (const other of this.#members.values()) {
          if (other.url === change.url) {
            return `Cannot add member "${change.id}": url "${change.url}" belongs to "${other.id}"`;
          }
        }
        return undefined;
      case "promote":
        if (member === undefined) return `Cannot promote "${change.id}": it is not a member`;
        if (member.voter) return `Cannot promote "${change.id}": it is already a voter`;
        return undefined;
      case "remove":
        if (member === undefined) return `Cannot remove "${change.id}": it is not a member`;
        if (member.voter && this.voters().length === 1) {
          return `Cannot remove "${change.id}": it is the last voter`;
        }
        return undefined;
    }
  }

  /** Applies a committed change. A change refused by `refusal` is ignored, on every node alike. */
  apply(change: ConfChange): boolean {
    if (this.refusal(change) !== undefined) return false;
    this.#change(change);
    this.#derive();
    return true;
  }

  #change(change: ConfChange): void {
    switch (change.type) {
      case "addVoter":
        this.#members.set(change.id, { id: change.id, url: change.url, voter: true });
        return;
      case "addLearner":
        this.#members.set(change.id, { id: change.id, url: change.url, voter: false });
        return;
      case "promote":
        this.#members.set(change.id, { ...this.#members.get(change.id)!, voter: true });
        return;
      case "remove":
        this.#members.delete(change.id);
        return;
    }
  }
}

/** Membership in force at `index`: the snapshot's, then the config entries up to it. */
export function membershipAt(base: ConfState, log: RaftLog, index: Index): Membership {
  const membership = new Membership(base);
  for (let i = log.firstIndex(); i <= index; i++) {
    const entry = log.entry(i);
    if (entry?.type === "config") membership.apply(entry.change);
  }
  return membership;
}
