import type { SnapshotReader, StateMachine } from "./state_machine.ts";
import type { Entry, HardState, Index, Snapshot, SnapshotMetadata } from "./types.ts";

/** What a node finds on its disk when it starts. */
export interface PersistedState {
  hardState: HardState;
  /** Metadata of the latest snapshot, if any; entries start right after it. */
  snapshot: SnapshotMetadata | undefined;
  /** Every entry after the snapshot, in order, contiguous. */
  entries: Entry[];
}

/**
 * Durable storage for one node's Raft state. Declared here, implemented in kv/ (Deno KV) and
 * below (memory, for tests and the simulator). Every method resolves only once durable.
 */
export interface RaftStorage {
  load(): Promise<PersistedState>;
  /**
   * Appends entries (overwriting any stored suffix from entries[0].index on, and forgetting
   * stored entries past the last one given) and saves the hard state: all or nothing.
   */
  append(entries: Entry[], hardState: HardState | undefined): Promise<void>;
  /**
   * Saves a snapshot. `discardLog`: the snapshot came from the leader and replaces the whole
   * log; otherwise it was taken locally and entries after it stay. Entries up to the snapshot
   * index are dropped either way. A crash leaves the old or the new snapshot, never a mix.
   */
  saveSnapshot(snapshot: Snapshot, options: { discardLog: boolean }): Promise<void>;
  /**
   * Optional: saves a snapshot taken locally (saveSnapshot without discardLog) whose image
   * comes piece by piece from `reader`, which it closes; resolves with the image's bytes.
   */
  saveSnapshotFrom?(metadata: SnapshotMetadata, reader: SnapshotReader): Promise<number>;
  /** The latest snapshot with its data, if any. */
  loadSnapshot(): Promise<Snapshot | undefined>;
  close(): Promise<void>;
}

/**
 * Stores the state machine's state as it is now, as the snapshot at `metadata`; resolves with
 * the image's bytes. Read out piece by piece when both sides can, so that no whole image of a
 * large state is held and the loop does not stop while it is encoded: entries apply meanwhile.
 */
export async function saveLocalSnapshot(
  stateMachine: StateMachine,
  storage: RaftStorage,
  metadata: SnapshotMetadata,
): Promise<number> {
  // Async, so that a state machine or storage that throws rejects instead.
  if (stateMachine.snapshotReader !== undefined && storage.saveSnapshotFrom !== undefined) {
    return await storage.saveSnapshotFrom(metadata, stateMachine.snapshotReader());
  }
  const data = stateMachine.snapshot();
  await storage.saveSnapshot({ metadata, data }, { discardLog: false });
  return data.byteLength;
}

const EMPTY_HARD_STATE: HardState = { term: 0, vote: null, commit: 0 };

/** Storage in memory, with the same contract. The simulator keeps it across a crash. */
export class MemoryStorage implements RaftStorage {
  hardState: HardState = { ...EMPTY_HARD_STATE };
  snapshot: Snapshot | undefined = undefined;
  entries: Entry[] = [];

  load(): Promise<PersistedState> {
    return Promise.resolve(this.loadSync());
  }

  loadSync(): PersistedState {
    return {
      hardState: { ...this.hardState },
      snapshot: this.snapshot?.metadata,
      entries: [...this.entries],
    };
  }

  append(entries: Entry[], hardState: HardState | undefined): Promise<void> {
    this.appendSync(entries, hardState);
    return Promise.resolve();
  }

  appendSync(entries: Entry[], hardState: HardState | undefined): void {
    if (entries.length > 0) {
      const first = entries[0].index;
      const offset = this.#offset();
      if (first <= offset) throw new Error(`Cannot append at index ${first}: compacted`);
      if (first > offset + this.entries.length + 1) {
        throw new Error(
          `Cannot append at index ${first}: gap after ${offset + this.entries.length}`,
        );
      }
      this.entries = this.entries.slice(0, first - offset - 1).concat(entries);
    }
    if (hardState !== undefined) this.hardState = { ...hardState };
  }

  saveSnapshot(snapshot: Snapshot, options: { discardLog: boolean }): Promise<void> {
    this.saveSnapshotSync(snapshot, options);
    return Promise.resolve();
  }

  saveSnapshotSync(snapshot: Snapshot, options: { discardLog: boolean }): void {
    const offset = this.#offset();
    const keep = options.discardLog ? [] : this.entries.slice(snapshot.metadata.index - offset);
    this.entries = keep.filter((entry) => entry.index > snapshot.metadata.index);
    this.snapshot = snapshot;
  }

  // deno-lint-ignore require-await
  async saveSnapshotFrom(metadata: SnapshotMetadata, reader: SnapshotReader): Promise<number> {
    const pieces: Uint8Array[] = [];
    try {
      for (let piece = reader.next(); piece !== undefined; piece = reader.next()) {
        pieces.push(piece);
      }
    } finally {
      reader.close();
    }
    const data = new Uint8Array(pieces.reduce((total, piece) => total + piece.byteLength, 0));
    let offset = 0;
    for (const piece of pieces) {
      data.set(piece, offset);
      offset += piece.byteLength;
    }
    this.saveSnapshotSync({ metadata, data }, { discardLog: false });
    return data.byteLength;
  }

  loadSnapshot(): Promise<Snapshot | undefined> {
    return Promise.resolve(this.snapshot);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  /** Index just before the first stored entry. */
  #offset(): Index {
    return this.snapshot?.metadata.index ?? 0;
  }
}
