import type { Index } from "./types.ts";

/** A promise that a deadline sweep can settle from outside. */
export interface Waiter<T> {
  resolve(value: T): void;
  reject(error: Error): void;
  deadlineMs: number;
}

export function deferred<T>(deadlineMs: number): { promise: Promise<T>; waiter: Waiter<T> } {
  let resolve!: (value: T) => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, waiter: { resolve, reject, deadlineMs } };
}

/** Waiters for the applied index to reach some value, kept sorted by that index. */
export class AppliedWaiters {
  #waiting: { index: Index; waiter: Waiter<Index> }[] = [];

  add(index: Index, waiter: Waiter<Index>): void {
    let position = this.#waiting.length;
    while (position > 0 && this.#waiting[position - 1].index > index) position--;
    this.#waiting.splice(position, 0, { index, waiter });
  }

  /** Resolves every waiter whose index is now applied. */
  release(appliedIndex: Index): void {
    let count = 0;
    while (count < this.#waiting.length && this.#waiting[count].index <= appliedIndex) count++;
    const released = this.#waiting.splice(0, count);
    for (const { waiter } of released) waiter.resolve(appliedIndex);
  }

  /** Rejects the waiters past their deadline with `makeError()`. */
  expire(nowMs: number, makeError: () => Error): void {
    this.#waiting = this.#waiting.filter(({ waiter }) => {
      if (waiter.deadlineMs > nowMs) return true;
      waiter.reject(makeError());
      return false;
    });
  }

  rejectAll(error: Error): void {
    for (const { waiter } of this.#waiting) waiter.reject(error);
    this.#waiting = [];
  }
}

/** Rejects and removes the entries of `map` whose waiter is past its deadline. */
export function expireMap<K, T>(
  map: Map<K, { waiter: Waiter<T> }>,
  nowMs: number,
  makeError: () => Error,
): void {
  for (const [key, entry] of map) {
    if (entry.waiter.deadlineMs > nowMs) continue;
    map.delete(key);
    entry.waiter.reject(makeError());
  }
}
