import assert from "node:assert/strict";

/** Protocol limits. Every queue and batch in raft/ is bounded by one of these. */

/** Entry bytes in one AppendEntries (at least one entry is always sent). */
export const APPEND_BYTES_MAX = 256 * 1024;
/** Entries in one AppendEntries. */
export const APPEND_ENTRIES_MAX = 512;
/** AppendEntries in flight per follower in the replicate state (pipelining). */
export const INFLIGHT_APPENDS_MAX = 64;
/**
 * Entry bytes in one Ready: a Ready's entries are written in one Deno KV atomic commit, which
 * holds at most 819,200 bytes (keys included). A single entry above it goes alone.
 */
export const READY_ENTRIES_BYTES_MAX = 600 * 1024;
/** Entries in one Ready: an atomic commit takes at most 1,000 mutations. */
export const READY_ENTRIES_MAX = 400;
/** Committed entries handed to the state machine per Ready. */
export const READY_COMMITTED_MAX = 4096;
/** Proposed but not yet committed bytes on a leader; more is refused at once. */
export const UNCOMMITTED_BYTES_MAX = 64 * 1024 * 1024;
/** Linearizable reads waiting for confirmation on a leader. */
export const READS_PENDING_MAX = 65_536;
/** Bytes of an entry as counted against the limits above: payload plus framing. */
export const ENTRY_OVERHEAD_BYTES = 64;

assert(READY_ENTRIES_BYTES_MAX + 200 * 1024 <= 819_200, "one Ready fits one Deno KV commit");
assert(APPEND_BYTES_MAX <= READY_ENTRIES_BYTES_MAX, "one AppendEntries fits one Ready");
assert(APPEND_ENTRIES_MAX <= 2 * READY_ENTRIES_MAX, "appends and Readies are of one scale");
/** Proposals queued for the next turn of the node's loop; more are refused at once (503). */
export const PROPOSALS_QUEUED_MAX = 16_384;
/** Inputs (peer messages, reads, admin calls) queued for the next turn; peer messages beyond it drop. */
export const INPUTS_QUEUED_MAX = 65_536;
