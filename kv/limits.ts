import assert from "node:assert/strict";

/** Limits of kv/. Every size the state machine or the storage accepts is bounded here. */

/** UTF-8 bytes of one key (API: 413 above it). */
export const KEY_BYTES_MAX = 1024;
/** UTF-8 bytes of one value, and of a CAS `expected` value (API: 413 above it). */
export const VALUE_BYTES_MAX = 524_288;
/** UTF-8 bytes of one request id (the `request_id` parameter or `Idempotency-Key` header). */
export const REQUEST_ID_BYTES_MAX = 256;
/**
 * Encoded bytes of one command. A CAS carries two values, so this, not twice VALUE_BYTES_MAX,
 * bounds it: one command must fit one log entry, and one log entry one Deno KV commit.
 */
export const COMMAND_BYTES_MAX = 640 * 1024;
/** Request ids remembered for idempotent retries; the oldest is forgotten first. */
export const REQUEST_IDS_MAX = 100_000;

/** Deno KV: bytes of one value (denokv limits; checked against Deno 2.9 by tests/kv). */
export const DENO_KV_VALUE_BYTES_MAX = 65_536;
/** Deno KV: bytes of one key. */
export const DENO_KV_KEY_BYTES_MAX = 2048;
/**
 * Deno KV: bytes of one atomic commit. Deno 2.9 counts a `set` as twice its encoded key plus
 * its value, and a `delete` as its encoded key (measured; see deno_kv_storage.ts).
 */
export const DENO_KV_COMMIT_BYTES_MAX = 819_200;
/** Deno KV: mutations in one atomic commit. */
export const DENO_KV_MUTATIONS_MAX = 1000;
/** Deno KV: entries returned by one read (a `list` batch). */
export const DENO_KV_READ_ENTRIES_MAX = 1000;

/** Bytes of one stored chunk of a log entry or snapshot; leaves room for the record framing. */
export const CHUNK_BYTES = 60 * 1024;
/** Snapshot chunks written per commit while a snapshot is being saved. */
export const SNAPSHOT_CHUNKS_PER_COMMIT = 12;
/** Stale log records deleted on the side of one append (the rest wait for later commits). */
export const LAZY_DELETES_PER_APPEND = 64;
/** Mutations in one commit of the batched clean-up after a snapshot. */
export const CLEANUP_MUTATIONS_PER_COMMIT = 500;

assert(KEY_BYTES_MAX > 0 && VALUE_BYTES_MAX > 0 && REQUEST_ID_BYTES_MAX > 0, "limits are positive");
assert(
  KEY_BYTES_MAX + VALUE_BYTES_MAX + REQUEST_ID_BYTES_MAX + 64 <= COMMAND_BYTES_MAX,
  "the largest set command fits COMMAND_BYTES_MAX",
);
assert(
  COMMAND_BYTES_MAX + 64 * 1024 <= DENO_KV_COMMIT_BYTES_MAX,
  "the largest command, chunked, fits one Deno KV commit with room for keys and metadata",
);
assert(CHUNK_BYTES + 1024 <= DENO_KV_VALUE_BYTES_MAX, "a chunk with its framing fits one value");
assert(
  SNAPSHOT_CHUNKS_PER_COMMIT * (CHUNK_BYTES + 2 * DENO_KV_KEY_BYTES_MAX) <=
    DENO_KV_COMMIT_BYTES_MAX,
  "a batch of snapshot chunks fits one commit",
);
assert(
  // A Ready: at most 400 entries and 600 KiB (raft/limits.ts), so at most about 420 records to
  // write, as many chunks of overwritten entries to delete, and the meta record.
  LAZY_DELETES_PER_APPEND + 2 * 420 + 1 <= DENO_KV_MUTATIONS_MAX,
  "lazy deletes leave room for a full Ready in one commit",
);
assert(CLEANUP_MUTATIONS_PER_COMMIT <= DENO_KV_MUTATIONS_MAX, "a clean-up batch fits one commit");
assert(REQUEST_IDS_MAX >= 1, "at least one request id is remembered");
