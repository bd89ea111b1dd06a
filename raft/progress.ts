import { INFLIGHT_APPENDS_MAX } from "./limits.ts";
import type { Index } from "./types.ts";

/**
 * The leader's view of one follower. `probe`: one append at a time until the follower's log
 * matches; `replicate`: appends pipelined, up to INFLIGHT_APPENDS_MAX in flight;
 * `snapshot`: waiting for an InstallSnapshot to land.
 */
export class Progress {
  match: Index = 0;
  next: Index;
  state: "probe" | "replicate" | "snapshot" = "probe";
  /** Probe state: an append is out and unanswered. */
  probeSent = false;
  /** Snapshot state: the index of the snapshot sent, and ticks since. */
  pendingSnapshot: Index = 0;
  snapshotTicks = 0;
  /** Heard from since the last CheckQuorum round. */
  recentActive = false;
  /** Tick count (leader's) of the last answer, for status. */
  lastContactTick = 0;
  /** Last index of each append in flight, oldest first. */
  #inflight: Index[] = [];

  constructor(next: Index) {
    this.next = next;
  }

  becomeProbe(): void {
    if (this.state === "snapshot") this.next = Math.max(this.match + 1, this.pendingSnapshot + 1);
    else this.next = this.match + 1;
    this.state = "probe";
    this.probeSent = false;
    this.#inflight = [];
  }

  becomeReplicate(): void {
    this.state = "replicate";
    this.next = this.match + 1;
    this.#inflight = [];
  }

  becomeSnapshot(index: Index): void {
    this.state = "snapshot";
    this.pendingSnapshot = index;
    this.snapshotTicks = 0;
    this.#inflight = [];
  }

  /** True when no append may be sent now. */
  isPaused(): boolean {
    switch (this.state) {
      case "probe":
        return this.probeSent;
      case "replicate":
        return this.#inflight.length >= INFLIGHT_APPENDS_MAX;
      case "snapshot":
        return true;
    }
  }

  /** An append ending at `lastIndex` went out. */
  sentEntries(lastIndex: Index): void {
    if (this.state === "replicate") {
      this.next = lastIndex + 1;
      this.#inflight.push(lastIndex);
    } else if (this.state === "probe") {
      this.probeSent = true;
    }
  }

  /** The follower acknowledged up to `index`. Returns false for a stale answer. */
  maybeUpdate(index: Index): boolean {
    let updated = false;
    if (index > this.match) {
      this.match = index;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, index + 1);
    while (this.#inflight.length > 0 && this.#inflight[0] <= index) this.#inflight.shift();
    return updated;
  }

  /** A rejection of the append after `rejected`; `probeFrom` is where to try next. */
  maybeDecrease(rejected: Index, probeFrom: Index): boolean {
    if (this.state === "replicate") {
      if (rejected <= this.match) return false;
      this.becomeProbe();
      this.next = Math.max(this.match + 1, Math.min(rejected, probeFrom + 1));
      return true;
    }
    if (rejected !== this.next - 1) return false;
    this.next = Math.max(this.match + 1, Math.min(rejected, probeFrom + 1));
    this.probeSent = false;
    return true;
  }
}
