/** Two small tools of DenoKvStorage: a commit checked against Deno KV's limits, and a queue. */
import assert from "node:assert/strict";
import { StorageError } from "../raft/mod.ts";
import { keyBytes } from "./_storage_records.ts";
import { errorMessage } from "./_validate.ts";
import {
  DENO_KV_COMMIT_BYTES_MAX,
  DENO_KV_MUTATIONS_MAX,
  DENO_KV_VALUE_BYTES_MAX,
} from "./limits.ts";

/** One atomic commit, checked against Deno KV's limits before it is sent. */
export class CommitBatch {
  readonly #atomic: Deno.AtomicOperation;
  #mutations = 0;
  #bytes = 0;

  constructor(kv: Deno.Kv) {
    this.#atomic = kv.atomic();
  }

  set(key: Deno.KvKey, value: Uint8Array): void {
    assert(value.byteLength <= DENO_KV_VALUE_BYTES_MAX, "a stored value fits one Deno KV value");
    this.#atomic.set(key, value);
    this.#mutations += 1;
    // Deno 2.9 counts a set's key twice toward the commit limit (measured).
    this.#bytes += 2 * keyBytes(key) + value.byteLength;
  }

  delete(key: Deno.KvKey): void {
    this.#atomic.delete(key);
    this.#mutations += 1;
    this.#bytes += keyBytes(key);
  }

  async commit(what: string): Promise<void> {
    if (this.#mutations > DENO_KV_MUTATIONS_MAX || this.#bytes > DENO_KV_COMMIT_BYTES_MAX) {
      throw new StorageError(
        `Cannot write ${what} in one Deno KV commit: ${this.#mutations} mutations and ` +
          `${this.#bytes} bytes, the limits are ${DENO_KV_MUTATIONS_MAX} and ${DENO_KV_COMMIT_BYTES_MAX}`,
      );
    }
    let result: Deno.KvCommitResult | Deno.KvCommitError;
    try {
      result = await this.#atomic.commit();
    } catch (error) {
      throw new StorageError(`Cannot write ${what} to Deno KV: ${errorMessage(error)}`, {
        cause: error,
      });
    }
    if (!result.ok) throw new StorageError(`Cannot write ${what} to Deno KV: the commit failed`);
  }
}

/** Runs async functions one at a time, in call order. */
export class Serial {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(fn);
    this.#tail = result.catch(() => undefined);
    return result;
  }

  idle(): Promise<void> {
    return this.#tail.then(() => undefined);
  }
}
