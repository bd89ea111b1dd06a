/**
 * Histories of operations on per-key registers, as concurrent clients saw them: what each
 * operation asked, when it was invoked, and when and how it completed. The checker in
 * checker.ts decides whether some total order of them explains every answer.
 */

/** What a client asked of one key. Values are strings; null stands for "no such key". */
export type OpInput =
  | { type: "get" }
  | { type: "set"; value: string }
  /** expected null: the key must not exist. */
  | { type: "cas"; expected: string | null; value: string }
  | { type: "delete" };

/** What the store answered. */
export type OpOutput =
  | { type: "get"; value: string | null }
  | { type: "set" }
  /** ok false: compare failed; `current` is what the store reported, when it reported it. */
  | { type: "cas"; ok: boolean; current?: string | null }
  | { type: "delete"; deleted: boolean };

export interface Operation {
  /** Unique in its history, for reports. */
  id: number;
  client: number;
  key: string;
  input: OpInput;
  /** When the client sent it (any monotonic clock, the same for the whole history). */
  invokeMs: number;
  /**
   * When the answer arrived and what it was. Absent: indeterminate (a timeout, a 504, a lost
   * connection): it may or may not have taken effect, at any time after invokeMs.
   */
  completion?: { completeMs: number; output: OpOutput };
}

/** Records operations as they run. An operation known not to have happened is forgotten. */
export class HistoryRecorder {
  readonly #now: () => number;
  readonly #pending = new Map<number, Operation>();
  readonly #done: Operation[] = [];
  #nextId = 0;
  counts = { ok: 0, failed: 0, indeterminate: 0 };

  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
  }

  invoke(client: number, key: string, input: OpInput): number {
    const id = this.#nextId++;
    this.#pending.set(id, { id, client, key, input, invokeMs: this.#now() });
    return id;
  }

  /** The operation took effect (or read) and answered `output`. */
  complete(id: number, output: OpOutput): void {
    const op = this.#take(id);
    op.completion = { completeMs: this.#now(), output };
    this.#done.push(op);
    this.counts.ok++;
  }

  /** The operation certainly did not happen (e.g. 503 "not proposed"): it leaves no trace. */
  fail(id: number): void {
    this.#take(id);
    this.counts.failed++;
  }

  /** The outcome is unknown. A read that is indeterminate constrains nothing, so it is dropped. */
  indeterminate(id: number): void {
    const op = this.#take(id);
    this.counts.indeterminate++;
    if (op.input.type !== "get") this.#done.push(op);
  }

  /** Every recorded operation; ones still pending count as indeterminate. */
  operations(): Operation[] {
    const pending = [...this.#pending.values()].filter((op) => op.input.type !== "get");
    return [...this.#done, ...pending].sort((a, b) => a.id - b.id);
  }

  #take(id: number): Operation {
    const op = this.#pending.get(id);
    if (op === undefined) throw new Error(`Operation "${id}" is not pending`);
    this.#pending.delete(id);
    return op;
  }
}

/** One line per operation, for a failure report. */
export function describeOperation(op: Operation): string {
  const input = op.input;
  let call: string;
  switch (input.type) {
    case "get":
      call = "get()";
      break;
    case "set":
      call = `set(${JSON.stringify(input.value)})`;
      break;
    case "cas":
      call = `cas(${JSON.stringify(input.expected)} -> ${JSON.stringify(input.value)})`;
      break;
    case "delete":
      call = "delete()";
      break;
  }
  const when = `[${op.invokeMs.toFixed(1)}, ${op.completion?.completeMs.toFixed(1) ?? "∞"}]`;
  const result = op.completion === undefined ? "?" : JSON.stringify(op.completion.output);
  return `#${op.id} c${op.client} ${JSON.stringify(op.key)} ${when} ${call} => ${result}`;
}

/** A seeded PRNG (mulberry32): the same seed gives the same choices, so a failing run replays. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
