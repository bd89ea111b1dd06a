/**
 * Gives back, at once, the memory a snapshot leaves behind. A snapshot is an image of the whole
 * state (about 94 MiB at a million keys): written on every node now and then, in pieces of a
 * few hundred KiB, and read back whole and decoded when a node restarts or installs one. Once
 * used, the pieces or the image are garbage, but V8 frees an ArrayBuffer only in a full
 * collection, and with a few hundred MiB of live heap the next one may come minutes later:
 * meanwhile RSS holds the dead bytes (measured with whole images: 115 MiB of external memory
 * on a follower 5 s after its restart, 208 MiB on a leader 40 s after a load).
 * So after each of those events the node asks V8 for one full collection. Its pause (tens to a
 * few hundred ms with a million keys) comes once per snapshot, not per request. Then, on Linux
 * with glibc, malloc_trim: glibc keeps what was freed in its per-thread arenas (tens of MiB
 * after the decoding and encoding a snapshot takes) unless asked to give it back.
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import type { Logger, NodeCounters } from "../raft/mod.ts";

/** How often a node with a large state gives freed malloc memory back between snapshots. */
export const MEMORY_TRIM_INTERVAL_MS = 10_000;
/** How often the snapshot counters are looked at. */
export const MEMORY_RELEASE_CHECK_MS = 1_000;
/**
 * Smallest snapshot worth a full collection. A small image costs little memory while it waits
 * for V8, and a small state snapshots often (every --snapshot-entries writes): a full
 * collection each time would only add pauses to the answers' latency.
 */
export const MEMORY_RELEASE_SNAPSHOT_BYTES_MIN = 16 * 1024 * 1024;

/**
 * V8's full collection, or undefined where the runtime does not let code have it. The flag
 * `--expose-gc` set now applies to contexts created after it: the one made here (Node's
 * documented idiom; Deno 2.9 follows it). The main context keeps no `gc` global.
 */
export function fullCollection(): (() => void) | undefined {
  try {
    setFlagsFromString("--expose-gc");
    const gc: unknown = runInNewContext("gc");
    return typeof gc === "function" ? () => gc() : undefined;
  } catch {
    return undefined;
  }
}

/**
 * glibc's malloc_trim(0), or undefined where there is none to call: another OS or libc, or no
 * permission to load it (--allow-ffi; `deno task compile` grants it). About 1 ms.
 */
export function mallocTrim(): (() => void) | undefined {
  if (Deno.build.os !== "linux") return undefined;
  try {
    const libc = Deno.dlopen("libc.so.6", {
      malloc_trim: { parameters: ["usize"], result: "i32" },
    });
    return () => void libc.symbols.malloc_trim(0n);
  } catch {
    return undefined;
  }
}

export interface MemoryReleaseOptions {
  /** The node's counters: a change of snapshots taken or installed means an image to free. */
  counters: () => Readonly<NodeCounters>;
  logger: Logger;
  /** Injected for tests; default fullCollection(). */
  collect?: () => void;
  /** Injected for tests; default mallocTrim(). */
  trim?: () => void;
  checkMs?: number;
  /** Default MEMORY_TRIM_INTERVAL_MS. */
  trimIntervalMs?: number;
  /** Default MEMORY_RELEASE_SNAPSHOT_BYTES_MIN. */
  snapshotBytesMin?: number;
  /**
   * Whether this node leads now. A leader's collection waits until a check finds no write
   * committed since the one before: its pause (up to most of a second with a million keys on a
   * busy machine) stops heartbeats too, and a pause that outlasts the election timeout would
   * cost an election. Under steady writes V8 collects on its own, in short steps.
   */
  isLeader?: () => boolean;
}

/**
 * Calls `collect` once now (the node has just restored its snapshot) and then after every
 * snapshot taken or installed, each time only if that snapshot was large; a leader's waits for
 * a pause in the writes (see `isLeader`). Returns the function that stops it.
 */
export function releaseSnapshotMemory(options: MemoryReleaseOptions): () => void {
  const fullGc = options.collect ?? fullCollection();
  if (fullGc === undefined) return () => {};
  const trim = "trim" in options ? options.trim : mallocTrim();
  let sinceTrimMs = 0;
  const collect = () => {
    const startMs = performance.now();
    fullGc();
    trim?.();
    sinceTrimMs = 0;
    const pauseMs = Math.round(performance.now() - startMs);
    options.logger.info("memory released after a snapshot", { pauseMs });
  };
  const snapshots = () => {
    const counters = options.counters();
    return counters.snapshotsTaken + counters.snapshotsInstalled;
  };
  const large = () =>
    options.counters().lastSnapshotBytes >=
      (options.snapshotBytesMin ?? MEMORY_RELEASE_SNAPSHOT_BYTES_MIN);
  let seen = snapshots();
  let due = large();
  let committed = options.counters().proposalsCommitted;
  const busyLeader = () => {
    const before = committed;
    committed = options.counters().proposalsCommitted;
    return (options.isLeader?.() ?? false) && committed !== before;
  };
  if (due) {
    collect();
    due = false;
  }
  const checkMs = options.checkMs ?? MEMORY_RELEASE_CHECK_MS;
  const timer = setInterval(() => {
    sinceTrimMs += checkMs;
    const busy = busyLeader();
    const now = snapshots();
    if (now !== seen) {
      seen = now;
      due ||= large();
    }
    if (due && !busy) {
      due = false;
      return collect();
    }
    // What requests and writes freed since, given back now and then: glibc would keep it.
    if (
      trim !== undefined && sinceTrimMs >= (options.trimIntervalMs ?? MEMORY_TRIM_INTERVAL_MS) &&
      large()
    ) {
      sinceTrimMs = 0;
      trim();
    }
  }, checkMs);
  return () => clearInterval(timer);
}
