import { seededRandom } from "./history.ts";
import assert from "node:assert/strict";
import { checkHistory, type CheckResult, stepRegister } from "./checker.ts";
import { HistoryRecorder, type Operation, type OpInput, type OpOutput } from "./history.ts";

let nextId = 0;

/** One operation; `output` undefined makes it indeterminate (it never completes). */
function op(
  key: string,
  input: OpInput,
  [invokeMs, completeMs]: [number, number?],
  output?: OpOutput,
  client = 0,
): Operation {
  return {
    id: nextId++,
    client,
    key,
    input,
    invokeMs,
    completion: output === undefined ? undefined : { completeMs: completeMs!, output },
  };
}

const get = (value: string | null): OpOutput => ({ type: "get", value });
const SET: OpOutput = { type: "set" };
const set = (value: string): OpInput => ({ type: "set", value });
const cas = (expected: string | null, value: string): OpInput => ({ type: "cas", expected, value });
const casOk: OpOutput = { type: "cas", ok: true };
const casFailed = (current?: string | null): OpOutput => ({ type: "cas", ok: false, current });
const READ: OpInput = { type: "get" };
const DELETE: OpInput = { type: "delete" };
const deleted = (existed: boolean): OpOutput => ({ type: "delete", deleted: existed });

function assertResult(result: CheckResult, expected: CheckResult["result"]): void {
  assert.equal(result.result, expected, JSON.stringify(result, null, 2));
}

Deno.test("stepRegister() follows the register's sequential specification", () => {
  assert.equal(stepRegister(null, set("a"), SET), "a");
  assert.equal(stepRegister("a", READ, get("a")), "a");
  assert.equal(stepRegister("a", READ, get("b")), undefined);
  assert.equal(stepRegister(null, cas(null, "a"), casOk), "a");
  assert.equal(stepRegister("a", cas(null, "b"), casOk), undefined);
  assert.equal(stepRegister("a", cas("b", "c"), casFailed("a")), "a");
  assert.equal(stepRegister("a", cas("b", "c"), casFailed("z")), undefined);
  assert.equal(stepRegister("a", cas("a", "c"), casFailed("a")), undefined);
  assert.equal(stepRegister("a", DELETE, deleted(true)), null);
  assert.equal(stepRegister(null, DELETE, deleted(true)), undefined);
  // Indeterminate: only the effect counts.
  assert.equal(stepRegister("a", cas("a", "b"), undefined), "b");
  assert.equal(stepRegister("a", cas("x", "b"), undefined), "a");
  assert.equal(stepRegister("a", DELETE, undefined), null);
});

Deno.test("checkHistory() accepts an empty history and a sequential valid one", () => {
  assertResult(checkHistory([]), "ok");
  const result = checkHistory([
    op("k", READ, [0, 1], get(null)),
    op("k", set("a"), [2, 3], SET),
    op("k", READ, [4, 5], get("a")),
    op("k", cas("a", "b"), [6, 7], casOk),
    op("k", cas("a", "c"), [8, 9], casFailed("b")),
    op("k", DELETE, [10, 11], deleted(true)),
    op("k", DELETE, [12, 13], deleted(false)),
    op("k", cas(null, "d"), [14, 15], casOk),
    op("k", READ, [16, 17], get("d")),
  ]);
  assertResult(result, "ok");
  assert.equal(result.result === "ok" && result.operations, 9);
});

Deno.test("checkHistory() accepts reads concurrent with a write seeing either value", () => {
  assertResult(
    checkHistory([
      op("k", set("a"), [0, 1], SET),
      op("k", set("b"), [2, 10], SET, 1),
      op("k", READ, [3, 4], get("a"), 2),
      op("k", READ, [5, 6], get("b"), 3),
      op("k", READ, [11, 12], get("b"), 2),
    ]),
    "ok",
  );
});

Deno.test("checkHistory() rejects a read that goes back to the old value (new-old inversion)", () => {
  assertResult(
    checkHistory([
      op("k", set("a"), [0, 1], SET),
      op("k", set("b"), [2, 10], SET, 1),
      op("k", READ, [3, 4], get("b"), 2),
      op("k", READ, [5, 6], get("a"), 3),
    ]),
    "illegal",
  );
});

Deno.test("checkHistory() rejects a stale read after an acknowledged write", () => {
  const result = checkHistory([
    op("k", set("a"), [0, 1], SET),
    op("k", set("b"), [2, 3], SET),
    op("k", READ, [4, 5], get("a"), 1),
  ]);
  assertResult(result, "illegal");
  assert.match(result.result === "illegal" ? result.report : "", /#\d+ c1 "k" .* get\(\)/);
});

Deno.test("checkHistory() rejects a lost acknowledged write", () => {
  assertResult(
    checkHistory([
      op("k", set("a"), [0, 1], SET),
      op("k", READ, [2, 3], get(null), 1),
    ]),
    "illegal",
  );
  assertResult(
    checkHistory([
      op("k", cas(null, "a"), [0, 1], casOk),
      op("k", cas(null, "b"), [2, 3], casOk, 1),
    ]),
    "illegal",
  );
});

Deno.test("checkHistory() rejects a CAS that succeeded against a value that was never current", () => {
  assertResult(
    checkHistory([
      op("k", set("a"), [0, 1], SET),
      op("k", cas("b", "c"), [2, 3], casOk),
    ]),
    "illegal",
  );
  // A failed CAS must report the value that was current.
  assertResult(
    checkHistory([
      op("k", set("a"), [0, 1], SET),
      op("k", cas("b", "c"), [2, 3], casFailed("z")),
    ]),
    "illegal",
  );
});

Deno.test("checkHistory() rejects two concurrent CAS that both succeed from the same value", () => {
  const base = [op("k", set("a"), [0, 1], SET)];
  assertResult(
    checkHistory([
      ...base,
      op("k", cas("a", "b"), [2, 5], casOk, 1),
      op("k", cas("a", "c"), [2, 5], casOk, 2),
    ]),
    "illegal",
  );
  assertResult(
    checkHistory([
      ...base,
      op("k", cas("a", "b"), [2, 5], casOk, 1),
      op("k", cas("a", "c"), [2, 5], casFailed("b"), 2),
    ]),
    "ok",
  );
});

Deno.test("checkHistory() lets an indeterminate write take effect, late, or never", () => {
  const base = [
    op("k", set("a"), [0, 1], SET),
    op("k", set("b"), [2], undefined, 1),
  ];
  // Took effect before the read.
  assertResult(checkHistory([...base, op("k", READ, [3, 4], get("b"))]), "ok");
  // Not (yet): it may also never take effect.
  assertResult(checkHistory([...base, op("k", READ, [30, 40], get("a"))]), "ok");
  // Long after its caller gave up: a later read may still see it first.
  assertResult(
    checkHistory([
      ...base,
      op("k", READ, [30, 40], get("a")),
      op("k", READ, [50, 60], get("b")),
    ]),
    "ok",
  );
  // But once seen, it cannot be undone.
  assertResult(
    checkHistory([
      ...base,
      op("k", READ, [3, 4], get("b")),
      op("k", READ, [5, 6], get("a")),
    ]),
    "illegal",
  );
  // And it cannot take effect before it was invoked.
  assertResult(
    checkHistory([
      op("k", set("a"), [0, 1], SET),
      op("k", READ, [2, 3], get("b")),
      op("k", set("b"), [4], undefined, 1),
    ]),
    "illegal",
  );
});

Deno.test("checkHistory() applies an indeterminate CAS or delete only where it could", () => {
  const base = [
    op("k", set("a"), [0, 1], SET),
    op("k", cas("a", "b"), [2], undefined, 1),
  ];
  assertResult(checkHistory([...base, op("k", READ, [3, 4], get("b"))]), "ok");
  assertResult(checkHistory([...base, op("k", READ, [3, 4], get("a"))]), "ok");
  // The CAS cannot succeed against "c".
  assertResult(
    checkHistory([
      op("k", set("c"), [0, 1], SET),
      op("k", cas("a", "b"), [2], undefined, 1),
      op("k", READ, [3, 4], get("b")),
    ]),
    "illegal",
  );
  const deletion = [
    op("k", set("a"), [0, 1], SET),
    op("k", DELETE, [2], undefined, 1),
  ];
  assertResult(checkHistory([...deletion, op("k", READ, [3, 4], get(null))]), "ok");
  assertResult(
    checkHistory([
      ...deletion,
      op("k", READ, [3, 4], get(null)),
      op("k", READ, [5, 6], get("a")),
    ]),
    "illegal",
  );
});

Deno.test("checkHistory() checks each key on its own", () => {
  assertResult(
    checkHistory([
      op("x", set("a"), [0, 10], SET),
      op("y", set("b"), [0, 10], SET, 1),
      op("x", READ, [1, 2], get(null), 2),
      op("y", READ, [1, 2], get("b"), 3),
      op("x", READ, [11, 12], get("a"), 2),
    ]),
    "ok",
  );
  assertResult(
    checkHistory([
      op("x", set("a"), [0, 1], SET),
      op("y", READ, [2, 3], get("a"), 1),
    ]),
    "illegal",
  );
});

Deno.test("checkHistory() answers unknown, not ok, when the budget is spent", () => {
  const ops: Operation[] = [];
  for (let i = 0; i < 40; i++) {
    ops.push(op("k", set(`v${i}`), [i, i + 100], SET, i));
  }
  const result = checkHistory(ops, { statesMax: 10 });
  assertResult(result, "unknown");
  assert.match(result.result === "unknown" ? result.reason : "", /budget/);
});

Deno.test("HistoryRecorder keeps completions and indeterminate writes, forgets failures", () => {
  let nowMs = 0;
  const recorder = new HistoryRecorder(() => nowMs++);
  const a = recorder.invoke(0, "k", set("a"));
  const b = recorder.invoke(1, "k", set("b"));
  const c = recorder.invoke(2, "k", READ);
  const d = recorder.invoke(3, "k", READ);
  recorder.complete(a, SET);
  recorder.fail(b);
  recorder.indeterminate(c);
  recorder.complete(d, get("a"));
  recorder.invoke(4, "k", set("e"));
  const ops = recorder.operations();
  assert.deepEqual(ops.map((o) => [o.id, o.completion !== undefined]), [[0, true], [3, true], [
    4,
    false,
  ]]);
  assert.deepEqual(recorder.counts, { ok: 2, failed: 1, indeterminate: 1 });
});

/**
 * A history of a correct register: each operation takes effect at a random instant inside its
 * interval (an indeterminate one at a random instant after its call, or never).
 */
function randomHistory(seed: number, clients: number, opsPerClient: number): Operation[] {
  const random = seededRandom(seed);
  const planned: { op: Operation; atMs: number }[] = [];
  for (let client = 0; client < clients; client++) {
    let timeMs = random() * 10;
    for (let i = 0; i < opsPerClient; i++) {
      const durationMs = 1 + random() * 20;
      const roll = random();
      const key = `k${Math.floor(random() * 3)}`;
      const value = `c${client}-${i}`;
      const input: OpInput = roll < 0.4
        ? READ
        : roll < 0.65
        ? set(value)
        : roll < 0.9
        ? cas(random() < 0.2 ? null : `c${Math.floor(random() * clients)}-${i - 1}`, value)
        : DELETE;
      const indeterminate = input.type !== "get" && random() < 0.05;
      const atMs = indeterminate
        ? (random() < 0.5 ? timeMs + random() * 100 : Infinity)
        : timeMs + random() * durationMs;
      const operation: Operation = { id: planned.length, client, key, input, invokeMs: timeMs };
      if (!indeterminate) {
        operation.completion = { completeMs: timeMs + durationMs, output: SET };
      }
      planned.push({ op: operation, atMs });
      timeMs += durationMs + random() * 5;
    }
  }
  const registers = new Map<string, string | null>();
  for (const { op: operation, atMs } of [...planned].sort((a, b) => a.atMs - b.atMs)) {
    if (atMs === Infinity) break;
    const state = registers.get(operation.key) ?? null;
    const input = operation.input;
    let output: OpOutput;
    let next = state;
    if (input.type === "get") output = get(state);
    else if (input.type === "set") [output, next] = [SET, input.value];
    else if (input.type === "cas") {
      const matches = state === input.expected;
      [output, next] = [matches ? casOk : casFailed(state), matches ? input.value : state];
    } else [output, next] = [deleted(state !== null), null];
    registers.set(operation.key, next);
    if (operation.completion !== undefined) operation.completion.output = output;
  }
  return planned.map(({ op: operation }) => operation);
}

Deno.test("checkHistory() accepts random histories of a correct register, fast", () => {
  for (let seed = 1; seed <= 20; seed++) {
    const history = randomHistory(seed, 10, 100);
    const startMs = performance.now();
    const result = checkHistory(history, { timeMaxMs: 20_000 });
    assertResult(result, "ok");
    assert.ok(performance.now() - startMs < 10_000, `seed ${seed} took too long`);
  }
});

Deno.test("checkHistory() rejects random histories with one read corrupted", () => {
  for (let seed = 1; seed <= 20; seed++) {
    const history = randomHistory(seed, 10, 100);
    // A value that nobody wrote: no order can explain it.
    const read = history.find((o) => o.input.type === "get" && o.completion !== undefined)!;
    read.completion!.output = get("never-written");
    assertResult(checkHistory(history, { timeMaxMs: 20_000 }), "illegal");
  }
});

Deno.test("checkHistory() treats interchangeable indeterminate writes as one, soundly", () => {
  const ops: Operation[] = [op("k", set("a"), [0, 1], SET)];
  // A burst of timeouts (a leader died): none of their values was ever seen.
  for (let i = 0; i < 150; i++) {
    const input = i % 3 === 0 ? DELETE : i % 3 === 1 ? set(`lost${i}`) : cas("a", `lost${i}`);
    ops.push(op("k", input, [2 + i / 100], undefined, 1 + (i % 12)));
  }
  ops.push(op("k", READ, [10, 11], get(null), 20));
  ops.push(op("k", set("b"), [12, 13], SET, 20));
  // Needs one of the unseen writes to have happened after the first delete, before this one.
  ops.push(op("k", DELETE, [14, 15], deleted(true), 20));
  ops.push(op("k", DELETE, [16, 17], deleted(true), 20));
  assertResult(checkHistory(ops, { timeMaxMs: 5_000 }), "ok");
  ops.push(op("k", READ, [18, 19], get("b"), 20));
  assertResult(checkHistory(ops, { timeMaxMs: 5_000 }), "illegal");
});

/** Every order of the operations allowed by real time, each indeterminate one in or out. */
function bruteForce(ops: Operation[]): boolean {
  const returnMs = (o: Operation) => o.completion?.completeMs ?? Infinity;
  const search = (placed: Set<number>, state: string | null): boolean => {
    if (ops.every((o, i) => placed.has(i) || o.completion === undefined)) return true;
    for (const [i, o] of ops.entries()) {
      if (placed.has(i)) continue;
      // o may go next only if no unplaced operation returned before o was invoked.
      if (ops.some((p, j) => j !== i && !placed.has(j) && returnMs(p) < o.invokeMs)) continue;
      const next = stepRegister(state, o.input, o.completion?.output);
      if (next === undefined) continue;
      if (search(new Set([...placed, i]), next)) return true;
    }
    return false;
  };
  return search(new Set(), null);
}

Deno.test("checkHistory() agrees with a brute-force search on small random histories", () => {
  const random = seededRandom(42);
  const pick = <T>(items: T[]): T => items[Math.floor(random() * items.length)];
  const values = ["a", "b", "c"];
  let illegal = 0;
  for (let round = 0; round < 1_500; round++) {
    const ops: Operation[] = [];
    const count = 2 + Math.floor(random() * 5);
    for (let i = 0; i < count; i++) {
      const invokeMs = Math.floor(random() * 10);
      const span: [number, number] = [invokeMs, invokeMs + Math.floor(random() * 6)];
      const kind = Math.floor(random() * 4);
      const indeterminate = kind !== 0 && random() < 0.3;
      const value = `${pick(values)}${random() < 0.3 ? i : ""}`;
      const [input, output]: [OpInput, OpOutput] = kind === 0
        ? [READ, get(random() < 0.2 ? null : pick(values))]
        : kind === 1
        ? [set(value), SET]
        : kind === 2
        ? [
          cas(random() < 0.2 ? null : pick(values), value),
          random() < 0.5 ? casOk : casFailed(random() < 0.2 ? null : pick(values)),
        ]
        : [DELETE, deleted(random() < 0.5)];
      ops.push(op("k", input, span, indeterminate ? undefined : output, i));
    }
    const expected = bruteForce(ops) ? "ok" : "illegal";
    if (expected === "illegal") illegal++;
    assert.equal(
      checkHistory(ops).result,
      expected,
      `round ${round}:\n${ops.map((o) => JSON.stringify(o)).join("\n")}`,
    );
  }
  assert.ok(illegal > 100 && illegal < 1_400, `unbalanced sample: ${illegal} illegal`);
});
