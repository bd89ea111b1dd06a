import type { Message, NodeId, XorShiftPrng } from "../../raft/mod.ts";

/** How unreliable the simulated network is. Ratios are per message. */
export interface NetworkFaults {
  dropRatio: number;
  duplicateRatio: number;
  /** A message arrives 0..delayStepsMax steps after it was sent; different delays reorder. */
  delayStepsMax: number;
}

interface InFlight {
  deliverAtStep: number;
  message: Message;
}

/** Messages in flight at once; beyond it the network drops, as a full socket buffer would. */
export const IN_FLIGHT_MAX = 4096;

/** A copy as the wire would make it: the receiver never shares arrays with the sender. */
export function copyMessage(message: Message): Message {
  switch (message.type) {
    case "appendEntries":
      return { ...message, entries: [...message.entries] };
    case "installSnapshot":
      return { ...message, snapshot: { ...message.snapshot } };
    default:
      return { ...message };
  }
}

function linkKey(from: NodeId, to: NodeId): string {
  return `${from}>${to}`;
}

/**
 * A seeded network between simulated nodes: it drops, duplicates, delays and reorders
 * messages, and cuts links one way or both ways (partitions). Deterministic for a given PRNG.
 */
export class SimNetwork {
  #prng: XorShiftPrng;
  #faults: NetworkFaults;
  #inFlight: InFlight[] = [];
  #cut = new Set<string>();
  sentCount = 0;
  droppedCount = 0;
  duplicatedCount = 0;

  constructor(prng: XorShiftPrng, faults: NetworkFaults) {
    this.#prng = prng;
    this.#faults = { ...faults };
  }

  get faults(): NetworkFaults {
    return { ...this.#faults };
  }

  setFaults(faults: NetworkFaults): void {
    this.#faults = { ...faults };
  }

  get inFlightCount(): number {
    return this.#inFlight.length;
  }

  send(message: Message, nowStep: number): void {
    this.sentCount += 1;
    if (this.#prng.next() < this.#faults.dropRatio || this.#inFlight.length >= IN_FLIGHT_MAX) {
      this.droppedCount += 1;
      return;
    }
    // The core builds a fresh message for every send; only a duplicate needs its own copy.
    this.#enqueue(message, nowStep);
    if (this.#prng.next() < this.#faults.duplicateRatio) {
      this.duplicatedCount += 1;
      this.#enqueue(copyMessage(message), nowStep);
    }
  }

  #enqueue(message: Message, nowStep: number): void {
    const delaySteps = this.#prng.nextInt(0, this.#faults.delayStepsMax + 1);
    this.#inFlight.push({ deliverAtStep: nowStep + delaySteps, message });
  }

  /** Puts a message back, for a receiver that is paused until `atStep`. */
  holdUntil(message: Message, atStep: number): void {
    this.#inFlight.push({ deliverAtStep: atStep, message });
  }

  /**
   * The messages due at `nowStep`, in random order. A message that would cross a cut link is
   * lost here, so cutting a link also loses what was already on its way.
   */
  takeDue(nowStep: number): Message[] {
    const due: Message[] = [];
    const rest: InFlight[] = [];
    for (const item of this.#inFlight) {
      if (item.deliverAtStep > nowStep) rest.push(item);
      else if (this.isCut(item.message.from, item.message.to)) this.droppedCount += 1;
      else due.push(item.message);
    }
    this.#inFlight = rest;
    for (let i = due.length - 1; i > 0; i--) {
      const j = Math.floor(this.#prng.next() * (i + 1));
      const swap = due[i];
      due[i] = due[j];
      due[j] = swap;
    }
    return due;
  }

  isCut(from: NodeId, to: NodeId): boolean {
    return this.#cut.size > 0 && this.#cut.has(linkKey(from, to));
  }

  /** Cuts the link from `from` to `to` only: `to` still reaches `from`. */
  cutOneWay(from: NodeId, to: NodeId): void {
    this.#cut.add(linkKey(from, to));
  }

  /** Symmetric partition: no message crosses between different groups. */
  partition(groups: NodeId[][]): void {
    for (const [i, group] of groups.entries()) {
      for (const [j, other] of groups.entries()) {
        if (i === j) continue;
        for (const from of group) for (const to of other) this.#cut.add(linkKey(from, to));
      }
    }
  }

  heal(): void {
    this.#cut.clear();
  }

  describeCuts(): string {
    return [...this.#cut].sort().join(" ");
  }
}

/** One short line per message, for traces. */
export function describeMessage(message: Message): string {
  const head = `${message.from}->${message.to} ${message.type} t${message.term}`;
  switch (message.type) {
    case "vote":
      return `${head}${
        message.pre ? " pre" : ""
      } last ${message.lastLogIndex}/${message.lastLogTerm}`;
    case "voteResponse":
      return `${head}${message.pre ? " pre" : ""} ${message.granted ? "granted" : "refused"}`;
    case "appendEntries": {
      const range = message.entries.length === 0
        ? "none"
        : `${message.entries[0].index}..${message.entries[message.entries.length - 1].index}`;
      const prev = `${message.prevLogIndex}/${message.prevLogTerm}`;
      return `${head} prev ${prev} entries ${range} commit ${message.leaderCommit}`;
    }
    case "appendEntriesResponse":
      return `${head} ${
        message.success ? "ok" : "reject"
      } match ${message.matchIndex} hint ${message.hintIndex}/${message.hintTerm}`;
    case "heartbeat":
      return `${head} commit ${message.commit} round ${message.readRound}`;
    case "heartbeatResponse":
      return `${head} round ${message.readRound}`;
    case "installSnapshot":
      return `${head} ${message.snapshot.metadata.index}/${message.snapshot.metadata.term}`;
    case "timeoutNow":
      return head;
  }
}
