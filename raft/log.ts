import assert from "node:assert/strict";
import { ENTRY_OVERHEAD_BYTES } from "./limits.ts";
import type { Entry, Index, Term } from "./types.ts";

/** Bytes an entry counts for against the byte limits. */
export function entryBytes(entry: Entry): number {
  switch (entry.type) {
    case "command":
      return entry.data.byteLength + ENTRY_OVERHEAD_BYTES;
    case "noop":
      return ENTRY_OVERHEAD_BYTES;
    case "config":
      return ENTRY_OVERHEAD_BYTES +
        2 * (entry.change.id.length + ("url" in entry.change ? entry.change.url.length : 0));
  }
}

/**
 * The log after the latest snapshot, held in memory. Entries up to `stableIndex` are durable;
 * the rest (the unstable tail) waits for the driver to persist it.
 * Invariants: snapshotIndex <= stableIndex <= lastIndex(); entries are contiguous after snapshotIndex.
 */
export class RaftLog {
  #snapshotIndex: Index;
  #snapshotTerm: Term;
  #entries: Entry[];
  #stableIndex: Index;

  constructor(snapshotIndex: Index, snapshotTerm: Term, entries: Entry[]) {
    for (const [offset, entry] of entries.entries()) {
      assert.equal(entry.index, snapshotIndex + 1 + offset, "stored entries are contiguous");
    }
    this.#snapshotIndex = snapshotIndex;
    this.#snapshotTerm = snapshotTerm;
    this.#entries = [...entries];
    this.#stableIndex = this.lastIndex();
  }

  snapshotIndex(): Index {
    return this.#snapshotIndex;
  }

  snapshotTerm(): Term {
    return this.#snapshotTerm;
  }

  firstIndex(): Index {
    return this.#snapshotIndex + 1;
  }

  lastIndex(): Index {
    return this.#snapshotIndex + this.#entries.length;
  }

  lastTerm(): Term {
    return this.term(this.lastIndex()) ?? 0;
  }

  stableIndex(): Index {
    return this.#stableIndex;
  }

  /** The term at `index`, or undefined when it is compacted away or past the end. */
  term(index: Index): Term | undefined {
    if (index === this.#snapshotIndex) return this.#snapshotTerm;
    if (index < this.#snapshotIndex || index > this.lastIndex()) return undefined;
    return this.#entries[index - this.#snapshotIndex - 1].term;
  }

  matchTerm(index: Index, term: Term): boolean {
    return this.term(index) === term;
  }

  entry(index: Index): Entry | undefined {
    if (index <= this.#snapshotIndex || index > this.lastIndex()) return undefined;
    return this.#entries[index - this.#snapshotIndex - 1];
  }

  /** Entries from `low` to at most `high`, within a byte and count budget, but at least one. */
  slice(low: Index, high: Index, limits: { bytesMax: number; countMax: number }): Entry[] {
    assert(low > this.#snapshotIndex, "slice starts after the snapshot");
    const result: Entry[] = [];
    let bytes = 0;
    for (let index = low; index <= Math.min(high, this.lastIndex()); index++) {
      const entry = this.#entries[index - this.#snapshotIndex - 1];
      bytes += entryBytes(entry);
      if (result.length > 0 && (bytes > limits.bytesMax || result.length >= limits.countMax)) break;
      result.push(entry);
    }
    return result;
  }

  /** Leader path: entries that follow the last index directly. */
  append(entries: Entry[]): void {
    for (const entry of entries) {
      assert.equal(entry.index, this.lastIndex() + 1, "appended entries follow the log");
      this.#entries.push(entry);
    }
  }

  /**
   * Follower path: entries after a matching (prevIndex, prevTerm). Keeps entries that already
   * match, truncates from the first conflict (never at or below `commitIndex`), appends the rest.
   * Returns the index it truncated from, if it did.
   */
  appendAfterMatch(entries: Entry[], commitIndex: Index): Index | undefined {
    for (const [offset, entry] of entries.entries()) {
      if (entry.index <= this.#snapshotIndex) continue;
      const existing = this.term(entry.index);
      if (existing === entry.term) continue;
      let truncatedFrom: Index | undefined;
      if (existing !== undefined) {
        assert(entry.index > commitIndex, `conflict at committed index ${entry.index}`);
        this.#truncateFrom(entry.index);
        truncatedFrom = entry.index;
      }
      this.append(entries.slice(offset));
      return truncatedFrom;
    }
    return undefined;
  }

  /**
   * The largest index <= `index` whose term is <= `term`: where a leader and a follower may
   * agree (fast back-off, as in etcd's findConflictByTerm).
   */
  findConflictByTerm(index: Index, term: Term): Index {
    let probe = Math.min(index, this.lastIndex());
    while (probe > this.#snapshotIndex) {
      const probeTerm = this.term(probe);
      if (probeTerm !== undefined && probeTerm <= term) return probe;
      probe--;
    }
    return this.#snapshotIndex;
  }

  /** The unstable tail, within the budget of one durable write. */
  unstableEntries(limits: { bytesMax: number; countMax: number }): Entry[] {
    if (this.#stableIndex >= this.lastIndex()) return [];
    return this.slice(this.#stableIndex + 1, this.lastIndex(), limits);
  }

  stableTo(index: Index): void {
    assert(index <= this.lastIndex(), "stable index within the log");
    if (index > this.#stableIndex) this.#stableIndex = index;
  }

  /** A snapshot from the leader replaces the whole log. */
  restore(snapshotIndex: Index, snapshotTerm: Term): void {
    this.#snapshotIndex = snapshotIndex;
    this.#snapshotTerm = snapshotTerm;
    this.#entries = [];
    this.#stableIndex = snapshotIndex;
  }

  /** Drops entries up to `index`, which a durable snapshot now covers. */
  compact(index: Index): void {
    assert(index <= this.#stableIndex, "compact only durable entries");
    if (index <= this.#snapshotIndex) return;
    const term = this.term(index);
    assert(term !== undefined, "compact index is in the log");
    this.#entries = this.#entries.slice(index - this.#snapshotIndex);
    this.#snapshotIndex = index;
    this.#snapshotTerm = term;
  }

  #truncateFrom(index: Index): void {
    this.#entries = this.#entries.slice(0, index - this.#snapshotIndex - 1);
    if (this.#stableIndex >= index) this.#stableIndex = index - 1;
  }
}
