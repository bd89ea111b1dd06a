/** Time and randomness are injected into raft/ so that a seed replays a whole cluster. */

/** A source of ticks. The driver calls `onTick` every tick; `now()` is in milliseconds. */
export interface Clock {
  now(): number;
  /** Starts calling `onTick` every `tickMs`; returns a function that stops it. */
  every(tickMs: number, onTick: () => void): () => void;
  /** Calls `callback` once after `delayMs`; returns a function that cancels it. */
  after(delayMs: number, callback: () => void): () => void;
}

/** Pseudo-random numbers in [0, 1). */
export interface Prng {
  next(): number;
}

/** xorshift32: small, fast and reproducible from its seed. Not for cryptography. */
export class XorShiftPrng implements Prng {
  #state: number;

  constructor(seed: number) {
    this.#state = (seed | 0) === 0 ? 0x9e3779b9 : seed | 0;
  }

  next(): number {
    let x = this.#state;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#state = x;
    return (x >>> 0) / 0x1_0000_0000;
  }

  /** An integer in [low, high). */
  nextInt(low: number, high: number): number {
    return low + Math.floor(this.next() * (high - low));
  }
}

interface Timer {
  atMs: number;
  everyMs: number | undefined;
  callback: () => void;
  cancelled: boolean;
}

/** A clock that moves only when told to: for tests. */
export class ManualClock implements Clock {
  #nowMs = 0;
  #timers: Timer[] = [];

  now(): number {
    return this.#nowMs;
  }

  every(tickMs: number, onTick: () => void): () => void {
    return this.#add({
      atMs: this.#nowMs + tickMs,
      everyMs: tickMs,
      callback: onTick,
      cancelled: false,
    });
  }

  after(delayMs: number, callback: () => void): () => void {
    return this.#add({
      atMs: this.#nowMs + delayMs,
      everyMs: undefined,
      callback,
      cancelled: false,
    });
  }

  /** Moves time forward, firing due timers in order. */
  advance(deltaMs: number): void {
    const endMs = this.#nowMs + deltaMs;
    for (;;) {
      this.#timers = this.#timers.filter((timer) => !timer.cancelled);
      this.#timers.sort((a, b) => a.atMs - b.atMs);
      const timer = this.#timers[0];
      if (timer === undefined || timer.atMs > endMs) break;
      this.#nowMs = timer.atMs;
      if (timer.everyMs === undefined) timer.cancelled = true;
      else timer.atMs += timer.everyMs;
      timer.callback();
    }
    this.#nowMs = endMs;
  }

  #add(timer: Timer): () => void {
    this.#timers.push(timer);
    return () => {
      timer.cancelled = true;
    };
  }
}
