import type {
  Entry,
  HardState,
  Index,
  MemoryStorage,
  Message,
  NodeId,
  Role,
  Snapshot,
  SnapshotMetadata,
  Term,
} from "../../raft/mod.ts";
import type { SimState } from "./sim_state_machine.ts";

/** A safety or liveness property of Raft did not hold. The message names seed, step and node. */
export class SafetyViolation extends Error {
  override name = "SafetyViolation";
}

/** The node a message leaves: its disk and, while it runs, its core. */
export interface SenderView {
  readonly id: NodeId;
  readonly storage: MemoryStorage;
  readonly core: CoreView | undefined;
}

/** What the checker reads from a running core after every call into it. */
export interface CoreView {
  role: Role;
  term: Term;
  commitIndex: Index;
  appliedIndex: Index;
  lastIndex(): Index;
  snapshotIndex(): Index;
  entry(index: Index): Entry | undefined;
}

const decoder = new TextDecoder();
const entryKeys = new WeakMap<Entry, string>();

/** Identity of a command: its unique prefix (the simulator's proposals start with one) and size. */
export function commandKey(term: Term, data: Uint8Array): string {
  return `${term}:c:${decoder.decode(data.subarray(0, 32))}#${data.length}`;
}

/** Identity of an entry (term, kind, payload) for comparing logs of different nodes. */
export function entryKey(entry: Entry): string {
  let key = entryKeys.get(entry);
  if (key !== undefined) return key;
  switch (entry.type) {
    case "command":
      key = commandKey(entry.term, entry.data);
      break;
    case "noop":
      key = `${entry.term}:n`;
      break;
    case "config":
      key = `${entry.term}:m:${JSON.stringify(entry.change)}`;
      break;
  }
  entryKeys.set(entry, key);
  return key;
}

function keyTerm(key: string): Term {
  return Number(key.slice(0, key.indexOf(":")));
}

/** Index before the first stored entry. */
export function storageOffset(storage: MemoryStorage): Index {
  return storage.snapshot?.metadata.index ?? 0;
}

export function storageLastIndex(storage: MemoryStorage): Index {
  return storageOffset(storage) + storage.entries.length;
}

/** Term of the stored entry at `index`, the snapshot's term at its index, undefined if absent. */
export function storageTerm(storage: MemoryStorage, index: Index): Term | undefined {
  const offset = storageOffset(storage);
  if (index === offset) return storage.snapshot?.metadata.term ?? 0;
  if (index < offset || index > offset + storage.entries.length) return undefined;
  return storage.entries[index - offset - 1].term;
}

/**
 * Raft's safety properties (Raft paper Figure 3, Ongaro's thesis §3), checked incrementally as
 * the simulation drives the cores: each hook sees one event, so a violation is reported at the
 * step that causes it.
 */
export class SafetyChecker {
  readonly seed: number;
  step = 0;
  #leaderByTerm = new Map<Term, NodeId>();
  /** Highest commit index the leader of each term reached. */
  #commitByTerm = new Map<Term, Index>();
  #appliedAt = new Map<Index, string>();
  #hashAt = new Map<Index, number>();
  #committedMax: Index = 0;
  /** `${index}/${term}` → `${prevTerm}|${key}`: by induction, the log matching property. */
  #logRegistry = new Map<string, string>();
  #memory = new Map<NodeId, { term: Term; commit: Index }>();
  /** What each node last told its leader it holds (an append answer), durable promises. */
  #acked = new Map<NodeId, { term: Term; index: Index }>();
  /** Last entry of each node's log while it leads: a leader only appends (Figure 3). */
  #leaderTail = new Map<NodeId, { term: Term; index: Index; key: string }>();
  /**
   * Per leader, for one change at a time: how far its log has been scanned, and the entry the
   * next membership change must wait on (its term's no-op, then its latest change).
   */
  #changeWait = new Map<NodeId, { term: Term; scanned: Index; waitsOn: Index }>();
  /** The highest term each node has sent a (non-pre-vote) message in: a restart resumes at least there. */
  #sentTerm = new Map<NodeId, Term>();
  #ackedMax: Index = 0;
  readsServed = 0;
  /** Proposals whose index got another entry (a deposed or crashed leader's): evidence of teeth. */
  proposalsOverwritten = 0;

  constructor(seed: number) {
    this.seed = seed;
  }

  fail(node: NodeId, what: string): never {
    throw new SafetyViolation(
      `Safety violated (seed ${this.seed}, step ${this.step}, node "${node}"): ${what}`,
    );
  }

  get committedMax(): Index {
    return this.#committedMax;
  }

  /** Terms that had a leader. */
  get leaderTerms(): number {
    return this.#leaderByTerm.size;
  }

  get ackedMax(): Index {
    return this.#ackedMax;
  }

  appliedKey(index: Index): string | undefined {
    return this.#appliedAt.get(index);
  }

  leaderOf(term: Term): NodeId | undefined {
    return this.#leaderByTerm.get(term);
  }

  /** After every call into a core: one leader per term; term and commit never decrease. */
  observe(id: NodeId, core: CoreView): void {
    const term = core.term;
    if (core.role === "leader") {
      const leader = this.#leaderByTerm.get(term);
      if (leader === undefined) {
        this.#leaderByTerm.set(term, id);
        this.#checkLeaderCompleteness(id, core);
      } else if (leader !== id) {
        this.fail(id, `two leaders in term ${term}: "${leader}" and "${id}"`);
      }
      this.#checkLeaderAppendOnly(id, core);
      this.#checkOneChangeAtATime(id, core);
      if (core.commitIndex > (this.#commitByTerm.get(term) ?? 0)) {
        this.#commitByTerm.set(term, core.commitIndex);
      }
    }
    const commit = core.commitIndex;
    const memory = this.#memory.get(id);
    if (memory !== undefined) {
      if (term < memory.term) this.fail(id, `term went back from ${memory.term} to ${term}`);
      if (commit < memory.commit) {
        this.fail(id, `commit went back from ${memory.commit} to ${commit}`);
      }
    }
    if (memory === undefined || term !== memory.term || commit !== memory.commit) {
      this.#memory.set(id, { term, commit });
    }
    const last = core.lastIndex();
    if (commit > last) this.fail(id, `commit index ${commit} passes last index ${last}`);
    if (core.appliedIndex > commit) {
      this.fail(id, `applied index ${core.appliedIndex} passes commit index ${commit}`);
    }
  }

  /** A restarted core resumes from what it persisted, never from less. */
  onRestart(id: NodeId, core: CoreView, persisted: HardState): void {
    this.#memory.delete(id);
    this.#leaderTail.delete(id);
    this.#changeWait.delete(id);
    // The core starts from what it finds on disk, so compare with what the node showed the
    // world before the crash: it has sent messages in this term.
    const sentTerm = this.#sentTerm.get(id) ?? 0;
    if (core.term < sentTerm) {
      this.fail(id, `restarted in term ${core.term} below term ${sentTerm} it had sent in`);
    }
    if (core.term < persisted.term) {
      this.fail(id, `restarted in term ${core.term} below persisted term ${persisted.term}`);
    }
    if (core.commitIndex < persisted.commit) {
      this.fail(
        id,
        `restarted with commit ${core.commitIndex} below persisted ${persisted.commit}`,
      );
    }
    this.observe(id, core);
  }

  /**
   * Persist before send (thesis §3.8): nothing leaves a node in a term (or with a vote) it has
   * not stored, and no answer promises entries its disk does not hold.
   */
  onSend(sender: SenderView, message: Message): void {
    const id = sender.id;
    const persisted = sender.storage.hardState;
    if (message.type === "vote" || message.type === "voteResponse") {
      if (message.pre) return;
    }
    this.#sentTerm.set(id, Math.max(this.#sentTerm.get(id) ?? 0, message.term));
    if (message.term > persisted.term) {
      this.fail(
        id,
        `sent ${message.type} in term ${message.term} before persisting it ` +
          `(stored ${persisted.term})`,
      );
    }
    if (message.type === "vote" && persisted.term === message.term && persisted.vote !== id) {
      // A candidate that forgets its own vote may vote again in that term after a restart. A
      // later stored term covers it: the node can neither vote nor win in that term again (a
      // candidate that moved on in the same step still sends the requests it had queued).
      this.fail(
        id,
        `asked for votes in term ${message.term} before persisting its own vote ` +
          `(stored term ${persisted.term}, vote ${JSON.stringify(persisted.vote)})`,
      );
    }
    // A persisted later term covers a vote of an earlier one: it can never be cast again.
    const voteStored = persisted.term > message.term || persisted.vote === message.to;
    if (message.type === "appendEntriesResponse" && message.success) {
      this.#checkAckPersisted(sender, message.matchIndex);
      const acked = this.#acked.get(id);
      if (acked === undefined || acked.term !== message.term) {
        this.#acked.set(id, { term: message.term, index: message.matchIndex });
      } else if (message.matchIndex > acked.index) {
        acked.index = message.matchIndex;
      }
    }
    if (message.type === "voteResponse" && message.granted && !voteStored) {
      this.fail(
        id,
        `granted a vote to "${message.to}" in term ${message.term} before persisting it`,
      );
    }
  }

  /**
   * A success answer up to `matchIndex` lets the leader count this node for every entry up to
   * there: its disk must hold them, and hold the same entry at `matchIndex` as its memory (an
   * older entry of another term at that index would be a promise about a different log).
   */
  #checkAckPersisted(sender: SenderView, matchIndex: Index): void {
    const { id, storage } = sender;
    if (matchIndex <= storageOffset(storage)) return; // covered by the stored snapshot
    const storedLast = storageLastIndex(storage);
    if (matchIndex > storedLast) {
      this.fail(
        id,
        `acknowledged entries up to ${matchIndex} before persisting them ` +
          `(stored up to ${storedLast})`,
      );
    }
    const storedTerm = storageTerm(storage, matchIndex);
    const memoryTerm = sender.core?.entry(matchIndex)?.term;
    if (memoryTerm !== storedTerm) {
      this.fail(
        id,
        `acknowledged entry ${matchIndex} of term ${memoryTerm ?? "none"} before persisting it ` +
          `(stored term ${storedTerm})`,
      );
    }
  }

  /** Before `storage.appendSync(entries, hardState)` of a Ready produced in `readyTerm`. */
  onAppend(
    id: NodeId,
    storage: MemoryStorage,
    ready: { entries: Entry[]; hardState: HardState | undefined },
    readyTerm: Term,
  ): void {
    const { entries, hardState } = ready;
    if (hardState !== undefined) this.#checkHardState(id, storage.hardState, hardState);
    if (entries.length === 0) return;
    const first = entries[0].index;
    const offset = storageOffset(storage);
    const storedLast = storageLastIndex(storage);
    if (first <= offset) {
      this.fail(id, `appends at ${first}, inside the snapshot (up to ${offset})`);
    }
    if (first > storedLast + 1) {
      this.fail(id, `appends at ${first} leaving a gap after ${storedLast}`);
    }
    const newLast = first + entries.length - 1;
    const acked = this.#acked.get(id);
    for (let index = first; index <= storedLast; index++) {
      const old = storage.entries[index - offset - 1];
      const replacement = index <= newLast ? entries[index - first] : undefined;
      if (replacement !== undefined && replacement.term === old.term) {
        if (entryKey(replacement) !== entryKey(old)) {
          this.fail(id, `rewrites entry ${index} of term ${old.term} with different contents`);
        }
        continue;
      }
      if (acked !== undefined && acked.term === readyTerm && index <= acked.index) {
        this.fail(id, `removes entry ${index}, which it acknowledged in term ${readyTerm}`);
      }
      if (old.term === readyTerm && this.#leaderByTerm.get(readyTerm) === id) {
        this.fail(id, `leader of term ${readyTerm} removes its own entry ${index}`);
      }
      if (this.#appliedAt.get(index) === entryKey(old)) {
        this.fail(id, `removes committed entry ${index} (${entryKey(old)})`);
      }
    }
    let prevTerm = storageTerm(storage, first - 1) ?? 0;
    for (let k = 0; k < entries.length; k++) {
      const entry = entries[k];
      if (entry.index !== first + k) this.fail(id, `Ready entries not contiguous at ${first + k}`);
      if (entry.term < prevTerm) {
        this.fail(id, `entry ${entry.index} has term ${entry.term} below ${prevTerm}`);
      }
      const key = `${entry.index}/${entry.term}`;
      const value = `${prevTerm}|${entryKey(entry)}`;
      const known = this.#logRegistry.get(key);
      if (known === undefined) this.#logRegistry.set(key, value);
      else if (known !== value) {
        this.fail(
          id,
          `log matching: entry ${key} is "${value}" here but "${known}" on another log`,
        );
      }
      prevTerm = entry.term;
    }
  }

  /** After the append: the stored commit never passes the stored log. */
  afterAppend(id: NodeId, storage: MemoryStorage): void {
    const last = storageLastIndex(storage);
    if (storage.hardState.commit > last) {
      this.fail(
        id,
        `persisted commit ${storage.hardState.commit} passes persisted log end ${last}`,
      );
    }
  }

  #checkHardState(id: NodeId, old: HardState, next: HardState): void {
    if (next.term < old.term) this.fail(id, `persists term ${next.term} below stored ${old.term}`);
    if (next.commit < old.commit) {
      this.fail(id, `persists commit ${next.commit} below stored ${old.commit}`);
    }
    if (next.term === old.term && old.vote !== null && next.vote !== old.vote) {
      this.fail(id, `changes its vote in term ${old.term} from "${old.vote}" to "${next.vote}"`);
    }
  }

  /** A snapshot from the leader, before it replaces the stored log. */
  onInstallSnapshot(id: NodeId, snapshot: Snapshot, readyTerm: Term): void {
    const { index, term } = snapshot.metadata;
    if (this.#leaderByTerm.get(readyTerm) === id && readyTerm === term) {
      this.fail(id, `leader of term ${readyTerm} replaces its log by a snapshot at ${index}`);
    }
    if (snapshot.data.length === 0) this.fail(id, `installs snapshot ${index} without data`);
    const acked = this.#acked.get(id);
    if (acked !== undefined && acked.term === readyTerm && acked.index > index) {
      this.fail(id, `snapshot ${index} discards entries up to ${acked.index} it acknowledged`);
    }
    this.#checkSnapshotTerm(id, snapshot.metadata);
  }

  /** A snapshot taken locally at the applied index. */
  onLocalSnapshot(id: NodeId, metadata: SnapshotMetadata, storage: MemoryStorage): void {
    const stored = storageTerm(storage, metadata.index);
    if (stored !== undefined && stored !== metadata.term) {
      this.fail(
        id,
        `snapshot metadata at ${metadata.index} says term ${metadata.term}, log says ${stored}`,
      );
    }
    this.#checkSnapshotTerm(id, metadata);
  }

  #checkSnapshotTerm(id: NodeId, metadata: SnapshotMetadata): void {
    const applied = this.#appliedAt.get(metadata.index);
    if (applied !== undefined && keyTerm(applied) !== metadata.term) {
      this.fail(
        id,
        `snapshot at ${metadata.index} has term ${metadata.term}, committed entry has ${
          keyTerm(applied)
        }`,
      );
    }
  }

  /** The state machine was restored from a snapshot: it must equal the history at its index. */
  onRestore(id: NodeId, state: SimState, metadata: SnapshotMetadata): void {
    if (state.index !== metadata.index) {
      this.fail(id, `snapshot data is at index ${state.index}, its metadata at ${metadata.index}`);
    }
    const hash = this.#hashAt.get(state.index);
    if (hash !== undefined && hash !== state.hash) {
      this.fail(id, `restored state at ${state.index} differs from the state applied elsewhere`);
    }
  }

  /** State machine safety: every node applies the same entry at each index, in order. */
  onApply(id: NodeId, entry: Entry, appliedBefore: Index): void {
    if (entry.index !== appliedBefore + 1) {
      this.fail(id, `applies entry ${entry.index} right after ${appliedBefore}`);
    }
    const key = entryKey(entry);
    const known = this.#appliedAt.get(entry.index);
    if (known === undefined) {
      this.#appliedAt.set(entry.index, key);
      if (entry.index > this.#committedMax) this.#committedMax = entry.index;
    } else if (known !== key) {
      this.fail(id, `applies "${key}" at ${entry.index} where another node applied "${known}"`);
    }
  }

  afterApply(id: NodeId, state: SimState): void {
    const hash = this.#hashAt.get(state.index);
    if (hash === undefined) this.#hashAt.set(state.index, state.hash);
    else if (hash !== state.hash) {
      this.fail(id, `state after ${state.index} differs from other nodes`);
    }
  }

  /** A proposal was applied on the node that proposed it: the client has its answer. */
  onAck(index: Index): void {
    if (index > this.#ackedMax) this.#ackedMax = index;
  }

  /** A linearizable read reflects every write acknowledged before it was asked. */
  onReadState(id: NodeId, readId: number, readIndex: Index, ackedAtAsk: Index): void {
    if (readIndex < ackedAtAsk) {
      this.fail(
        id,
        `read ${readId} got index ${readIndex} but write ${ackedAtAsk} was acknowledged before it`,
      );
    }
  }

  onReadServed(id: NodeId, readId: number, state: SimState, ackedAtAsk: Index): void {
    this.readsServed += 1;
    if (state.index < ackedAtAsk) {
      this.fail(
        id,
        `read ${readId} served state ${state.index}, older than acknowledged write ${ackedAtAsk}`,
      );
    }
  }

  /**
   * Leader completeness (§5.4): a leader holds every entry committed in lower terms. (A leader
   * of a lower term may still win late, on delayed votes; it owes nothing to higher terms.)
   */
  #checkLeaderCompleteness(id: NodeId, core: CoreView): void {
    let committed = 0;
    for (const [term, commit] of this.#commitByTerm) {
      if (term < core.term && commit > committed) committed = commit;
    }
    const last = core.lastIndex();
    if (last < committed) {
      this.fail(
        id,
        `new leader in term ${core.term} ends at ${last}, before committed ${committed}`,
      );
    }
    for (let index = core.snapshotIndex() + 1; index <= committed; index++) {
      const applied = this.#appliedAt.get(index);
      const entry = core.entry(index);
      const own = entry === undefined ? "nothing" : entryKey(entry);
      if (applied !== undefined && applied !== own) {
        this.fail(
          id,
          `new leader in term ${core.term} has "${own}" at ${index}, committed was "${applied}"`,
        );
      }
    }
  }

  /**
   * A leader appends a membership change only once its term's no-op and its previous change
   * are committed (thesis §4.1, and the fix of §4.1.1's single-server bug). Checked against the
   * commit index when the change is seen, which can only be later than when it was made.
   */
  #checkOneChangeAtATime(id: NodeId, core: CoreView): void {
    const term = core.term;
    const last = core.lastIndex();
    let wait = this.#changeWait.get(id);
    if (wait === undefined || wait.term !== term) {
      // This term's entries start with its no-op: everything from there is new to the scan.
      let first = last;
      while (first > core.snapshotIndex() && core.entry(first - 1)?.term === term) first--;
      wait = { term, scanned: first, waitsOn: first };
      this.#changeWait.set(id, wait);
    }
    for (let index = wait.scanned + 1; index <= last; index++) {
      if (core.entry(index)?.type !== "config") continue;
      if (wait.waitsOn > core.commitIndex) {
        this.fail(
          id,
          `leader of term ${term} appended a membership change at ${index} while entry ` +
            `${wait.waitsOn} (a change or its term's no-op) is uncommitted (commit ${core.commitIndex})`,
        );
      }
      wait.waitsOn = index;
    }
    wait.scanned = Math.max(wait.scanned, last);
  }

  #checkLeaderAppendOnly(id: NodeId, core: CoreView): void {
    const term = core.term;
    const last = core.lastIndex();
    const tail = this.#leaderTail.get(id);
    if (tail !== undefined && tail.term === term) {
      if (last < tail.index) {
        this.fail(id, `leader of term ${term} shrank its log from ${tail.index} to ${last}`);
      }
      const entry = tail.index > core.snapshotIndex() ? core.entry(tail.index) : undefined;
      if (entry !== undefined && entryKey(entry) !== tail.key) {
        this.fail(id, `leader of term ${term} overwrote its entry ${tail.index}`);
      }
    }
    const lastEntry = last > core.snapshotIndex() ? core.entry(last) : undefined;
    if (lastEntry === undefined) this.#leaderTail.delete(id);
    else this.#leaderTail.set(id, { term, index: last, key: entryKey(lastEntry) });
  }
}
