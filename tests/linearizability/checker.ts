/**
 * A linearizability checker for histories of per-key registers (get, set, cas, delete).
 *
 * Keys are independent objects, and a history is linearizable iff each key's sub-history is
 * (Herlihy & Wing's locality; Horn & Kroening call its use "P-compositionality"), so each key
 * is checked on its own. Per key, the search is Wing & Gong's, with Lowe's improvements as
 * Porcupine uses them: the calls and returns sit in one doubly linked list in time order; an
 * operation may be linearized next if its call comes before the first return still in the
 * list; a linearized operation is lifted out of the list, and the search backtracks when it
 * meets a return whose operation could not be placed. A cache of (set of linearized
 * operations, register value) prunes configurations already explored.
 *
 * An indeterminate operation (no completion) returns at +∞: it may be placed anywhere after
 * its call, and leaving it for the very end is the same as saying it never took effect.
 *
 * The search is bounded by a budget of cached states and of time: past either, the answer is
 * "unknown", never "ok".
 */
import { describeOperation, type Operation, type OpInput, type OpOutput } from "./history.ts";

/** The register: a value, or null when the key does not exist (every key starts so). */
export type RegisterValue = string | null;

export interface CheckOptions {
  /** Cached states across all keys before giving up with "unknown"; default 2,000,000. */
  statesMax?: number;
  /** Wall time before giving up with "unknown"; default 60,000 ms. */
  timeMaxMs?: number;
}

export type CheckResult =
  | { result: "ok"; keys: number; operations: number; states: number }
  | { result: "illegal"; key: string; states: number; report: string }
  | { result: "unknown"; key: string; states: number; reason: string };

const STATES_MAX_DEFAULT = 2_000_000;
const TIME_MAX_MS_DEFAULT = 60_000;
/** Operations of the best partial linearization quoted in a report. */
const REPORT_TAIL_OPS = 12;

/**
 * The register's sequential specification: the value after `input` ran on `state` and
 * answered `output`, or undefined if it could not have answered that. `output` undefined
 * (indeterminate): any answer is possible, so only the effect matters.
 */
export function stepRegister(
  state: RegisterValue,
  input: OpInput,
  output: OpOutput | undefined,
): RegisterValue | undefined {
  switch (input.type) {
    case "get":
      if (output === undefined) return state;
      return output.type === "get" && output.value === state ? state : undefined;
    case "set":
      if (output !== undefined && output.type !== "set") return undefined;
      return input.value;
    case "cas": {
      const matches = state === input.expected;
      if (output === undefined) return matches ? input.value : state;
      if (output.type !== "cas") return undefined;
      if (output.ok) return matches ? input.value : undefined;
      if (matches) return undefined;
      return output.current === undefined || output.current === state ? state : undefined;
    }
    case "delete":
      if (output === undefined) return null;
      if (output.type !== "delete" || output.deleted !== (state !== null)) return undefined;
      return null;
  }
}

/** Checks every key's sub-history; the first key that is not "ok" decides the result. */
export function checkHistory(
  history: readonly Operation[],
  options: CheckOptions = {},
): CheckResult {
  const byKey = new Map<string, Operation[]>();
  for (const op of history) {
    const ops = byKey.get(op.key);
    if (ops === undefined) byKey.set(op.key, [op]);
    else ops.push(op);
  }
  const budget = {
    statesLeft: options.statesMax ?? STATES_MAX_DEFAULT,
    deadlineMs: performance.now() + (options.timeMaxMs ?? TIME_MAX_MS_DEFAULT),
  };
  let states = 0;
  let unknown: CheckResult | undefined;
  for (const [key, ops] of [...byKey].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)) {
    const result = checkKey(key, ops, budget);
    states += result.states;
    if (result.result === "illegal") return { ...result, states };
    if (result.result === "unknown") {
      unknown ??= result;
      // The budget is spent: the other keys cannot be checked either.
      if (budget.statesLeft <= 0 || performance.now() > budget.deadlineMs) break;
    }
  }
  if (unknown !== undefined) return { ...unknown, states };
  return { result: "ok", keys: byKey.size, operations: history.length, states };
}

interface Entry {
  op: number;
  call: boolean;
  timeMs: number;
  /** For a call: its return entry. */
  match: Entry | undefined;
  prev: Entry | undefined;
  next: Entry | undefined;
}

interface Budget {
  statesLeft: number;
  deadlineMs: number;
}

type KeyResult =
  | { result: "ok"; states: number }
  | { result: "illegal"; key: string; states: number; report: string }
  | { result: "unknown"; key: string; states: number; reason: string };

/** Builds the time-ordered list of calls and returns; at equal times, calls come first. */
function buildList(ops: readonly Operation[]): Entry {
  const entries: Entry[] = [];
  ops.forEach((op, index) => {
    const returnMs = op.completion?.completeMs ?? Infinity;
    if (!(returnMs >= op.invokeMs)) {
      throw new RangeError(`Operation "${op.id}" completes before it is invoked`);
    }
    const ret: Entry = {
      op: index,
      call: false,
      timeMs: returnMs,
      match: undefined,
      prev: undefined,
      next: undefined,
    };
    entries.push(ret, { ...ret, call: true, timeMs: op.invokeMs, match: ret });
  });
  entries.sort((a, b) => a.timeMs - b.timeMs || Number(b.call) - Number(a.call) || a.op - b.op);
  const head: Entry = {
    op: -1,
    call: false,
    timeMs: -Infinity,
    match: undefined,
    prev: undefined,
    next: undefined,
  };
  let last = head;
  for (const entry of entries) {
    entry.prev = last;
    last.next = entry;
    last = entry;
  }
  return head;
}

/** Takes a call and its return out of the list. */
function lift(call: Entry): void {
  call.prev!.next = call.next;
  if (call.next !== undefined) call.next.prev = call.prev;
  const ret = call.match!;
  ret.prev!.next = ret.next;
  if (ret.next !== undefined) ret.next.prev = ret.prev;
}

/** Puts back what lift() took out, in the reverse order. */
function unlift(call: Entry): void {
  const ret = call.match!;
  ret.prev!.next = ret;
  if (ret.next !== undefined) ret.next.prev = ret;
  call.prev!.next = call;
  if (call.next !== undefined) call.next.prev = call;
}

class Bitset {
  readonly #words: Uint32Array;
  constructor(bits: number) {
    this.#words = new Uint32Array(Math.ceil(bits / 32) || 1);
  }
  set(bit: number): void {
    this.#words[bit >>> 5] |= 1 << (bit & 31);
  }
  clear(bit: number): void {
    this.#words[bit >>> 5] &= ~(1 << (bit & 31));
  }
  key(): string {
    return this.#words.join(",");
  }
}

function stateKey(state: RegisterValue): string {
  return state === null ? "\u0000" : `=${state}`;
}

/**
 * Stands for every value written only by indeterminate operations and never seen by anyone.
 * No answer can mention it, so such writes are interchangeable: one of them stands for all.
 */
const UNSEEN = "\u0000unseen";

/**
 * What the search needs of one key's operations: the inputs, with values nobody saw replaced
 * by UNSEEN in indeterminate writes, and for each indeterminate operation its effect class.
 * Two indeterminate operations of the same class have the same effect on every state, and
 * neither has a return that constrains it, so only the earliest one still unplaced needs to
 * be tried: any order using a later one works with the earliest in its place.
 */
interface Prepared {
  ops: readonly Operation[];
  inputs: OpInput[];
  /** undefined for a determinate operation. */
  classes: (string | undefined)[];
}

function prepare(ops: readonly Operation[]): Prepared {
  const seen = new Set<string>();
  for (const op of ops) {
    if (op.input.type === "cas" && op.input.expected !== null) seen.add(op.input.expected);
    const output = op.completion?.output;
    if (output?.type === "get" && output.value !== null) seen.add(output.value);
    if (output?.type === "cas" && typeof output.current === "string") seen.add(output.current);
  }
  const inputs = ops.map((op): OpInput => {
    const input = op.input;
    if (op.completion !== undefined || input.type === "get" || input.type === "delete") {
      return input;
    }
    return seen.has(input.value) ? input : { ...input, value: UNSEEN };
  });
  const classes = ops.map((op, i) =>
    op.completion === undefined ? JSON.stringify(inputs[i]) : undefined
  );
  return { ops, inputs, classes };
}

/**
 * The calls that may be linearized next: those before the first return still in the list,
 * keeping only the earliest indeterminate call of each effect class.
 */
function candidates(head: Entry, prepared: Prepared): Entry[] {
  const result: Entry[] = [];
  const classes = new Set<string>();
  for (let entry = head.next; entry !== undefined && entry.call; entry = entry.next) {
    const effect = prepared.classes[entry.op];
    if (effect !== undefined) {
      if (classes.has(effect)) continue;
      classes.add(effect);
    }
    result.push(entry);
  }
  return result;
}

interface Frame {
  call: Entry;
  /** The register before the call was linearized. */
  state: RegisterValue;
  /** Where to resume when backtracking to this frame. */
  candidates: Entry[];
  next: number;
}

/** Lowe's just-in-time linearization search over one key's operations. */
function checkKey(key: string, ops: readonly Operation[], budget: Budget): KeyResult {
  const prepared = prepare(ops);
  const head = buildList(ops);
  const linearized = new Bitset(ops.length);
  const cache = new Set<string>();
  const stack: Frame[] = [];
  let state: RegisterValue = null;
  let determinateLeft = ops.filter((op) => op.completion !== undefined).length;
  let best: { order: number[]; states: RegisterValue[]; blocked: number } | undefined;
  let steps = 0;
  let choices = candidates(head, prepared);
  let next = 0;
  while (true) {
    // Only indeterminate operations are left: they go last, where nothing observes them.
    if (determinateLeft === 0) return { result: "ok", states: cache.size };
    if (++steps % 4096 === 0 && performance.now() > budget.deadlineMs) {
      return { result: "unknown", key, states: cache.size, reason: "time budget exceeded" };
    }
    if (next < choices.length) {
      const call = choices[next++];
      const op = ops[call.op];
      const after = stepRegister(state, prepared.inputs[call.op], op.completion?.output);
      if (after === undefined) continue;
      // An indeterminate operation that changes nothing here is as well placed at the end.
      if (op.completion === undefined && after === state) continue;
      linearized.set(call.op);
      const configuration = `${linearized.key()}|${stateKey(after)}`;
      if (cache.has(configuration)) {
        linearized.clear(call.op);
        continue;
      }
      cache.add(configuration);
      if (--budget.statesLeft < 0) {
        return { result: "unknown", key, states: cache.size, reason: "state budget exceeded" };
      }
      stack.push({ call, state, candidates: choices, next });
      state = after;
      if (op.completion !== undefined) determinateLeft--;
      lift(call);
      choices = candidates(head, prepared);
      next = 0;
      continue;
    }
    // No candidate fits: the first return in the list belongs to an operation that cannot be
    // placed after this order. Backtrack.
    if (best === undefined || stack.length > best.order.length) {
      let blocked = head.next;
      while (blocked !== undefined && blocked.call) blocked = blocked.next;
      best = {
        order: stack.map((frame) => frame.call.op),
        states: [...stack.slice(1).map((frame) => frame.state), state],
        blocked: blocked?.op ?? -1,
      };
    }
    const frame = stack.pop();
    if (frame === undefined) {
      return { result: "illegal", key, states: cache.size, report: report(key, ops, best) };
    }
    state = frame.state;
    linearized.clear(frame.call.op);
    if (ops[frame.call.op].completion !== undefined) determinateLeft++;
    unlift(frame.call);
    choices = frame.candidates;
    next = frame.next;
  }
}

/** Explains a failure: the longest order found, and the operation that could not follow it. */
function report(
  key: string,
  ops: readonly Operation[],
  best: { order: number[]; states: RegisterValue[]; blocked: number },
): string {
  const placed = new Set(best.order);
  const blocked = ops[best.blocked];
  const label = (state: RegisterValue | undefined) =>
    state === UNSEEN ? "(a value nobody read)" : JSON.stringify(state ?? null);
  const tail = best.order.slice(-REPORT_TAIL_OPS).map((index, i, slice) => {
    const state = best.states[best.order.length - slice.length + i];
    return `  ${describeOperation(ops[index])}  -> ${label(state)}`;
  });
  // The operations that overlap the blocked one in time: one of them is usually the culprit.
  const blockedEnd = blocked.completion?.completeMs ?? Infinity;
  const overlapping = ops.filter((op, index) =>
    !placed.has(index) && index !== best.blocked && op.invokeMs <= blockedEnd &&
    (op.completion?.completeMs ?? Infinity) >= blocked.invokeMs
  );
  const determinate = overlapping.filter((op) => op.completion !== undefined);
  const indeterminate = overlapping.filter((op) => op.completion === undefined);
  const shown = [...determinate, ...indeterminate].slice(0, REPORT_TAIL_OPS);
  return [
    `Key ${JSON.stringify(key)} is not linearizable: the longest valid order places ` +
    `${best.order.length} of ${ops.length} operations, ending with the value ` +
    `${label(best.states.at(-1))}:`,
    ...(best.order.length > REPORT_TAIL_OPS ? ["  ..."] : []),
    ...tail,
    `and then this operation can be placed neither there nor later:`,
    `  ${describeOperation(blocked)}`,
    ...(shown.length > 0 ? ["operations not placed that overlap it in time:"] : []),
    ...shown.map((op) => `  ${describeOperation(op)}`),
    ...(overlapping.length > shown.length
      ? [
        `  ... and ${
          overlapping.length - shown.length
        } more (${indeterminate.length} indeterminate)`,
      ]
      : []),
  ].join("\n");
}
