import assert from "node:assert/strict";
import { KeyValueTable, type TableCursor } from "../../kv/_key_value_table.ts";
import { XorShiftPrng } from "../../raft/mod.ts";

function contents(table: KeyValueTable): [string, string, number][] {
  const seen: [string, string, number][] = [];
  table.forEach((key, value, index) => seen.push([key, value, index]));
  return seen;
}

Deno.test("KeyValueTable sets, gets, overwrites and deletes keys", () => {
  const table = new KeyValueTable();
  assert.equal(table.get("a"), undefined);
  assert.equal(table.value("a"), undefined);
  table.set("a", "1", 1);
  table.set("b", "2", 2);
  assert.deepEqual(table.get("a"), { value: "1", index: 1 });
  assert.equal(table.value("b"), "2");
  assert.equal(table.has("b"), true);
  table.set("a", "3", 5);
  assert.deepEqual(table.get("a"), { value: "3", index: 5 });
  assert.equal(table.size, 2);
  assert.equal(table.delete("a"), true);
  assert.equal(table.delete("a"), false);
  assert.equal(table.get("a"), undefined);
  assert.equal(table.has("a"), false);
  assert.equal(table.size, 1);
});

Deno.test("KeyValueTable iterates in first-insertion order, as a Map does", () => {
  const table = new KeyValueTable();
  table.set("x", "1", 1);
  table.set("y", "2", 2);
  table.set("z", "3", 3);
  table.set("x", "4", 4); // an overwrite keeps its place
  table.delete("y");
  table.set("y", "5", 5); // a key set again after a delete goes last
  assert.deepEqual(contents(table), [["x", "4", 4], ["z", "3", 3], ["y", "5", 5]]);
});

Deno.test("KeyValueTable reuses the slots of deleted keys without mixing up their values", () => {
  const table = new KeyValueTable();
  const reference = new Map<string, { value: string; index: number }>();
  let index = 0;
  // A fixed pattern of sets and deletes over a small key space.
  for (let step = 0; step < 5_000; step++) {
    const key = `k${(step * 7919) % 97}`;
    index++;
    if (step % 3 === 2) {
      assert.equal(table.delete(key), reference.delete(key));
    } else {
      table.set(key, `v${step}`, index);
      reference.set(key, { value: `v${step}`, index });
    }
  }
  assert.equal(table.size, reference.size);
  for (const [key, entry] of reference) assert.deepEqual(table.get(key), entry);
  assert.deepEqual(
    contents(table),
    [...reference].map(([key, entry]) => [key, entry.value, entry.index]),
  );
});

Deno.test("KeyValueTable keeps indexes beyond 32 bits exactly", () => {
  const table = new KeyValueTable();
  table.set("small", "s", 7);
  table.set("big", "b", 2 ** 40 + 1);
  table.set("max", "m", Number.MAX_SAFE_INTEGER);
  assert.deepEqual(table.get("small"), { value: "s", index: 7 });
  assert.deepEqual(table.get("big"), { value: "b", index: 2 ** 40 + 1 });
  assert.deepEqual(table.get("max"), { value: "m", index: Number.MAX_SAFE_INTEGER });
});

type Image = Map<string, { value: string; index: number }>;

function imageOf(table: KeyValueTable): Image {
  const image: Image = new Map();
  table.forEach((key, value, index) => image.set(key, { value, index }));
  return image;
}

/** Reads `cursor` to the end, `batch` keys at a time, calling `between` after each batch. */
function readAll(cursor: TableCursor, batch: number, between: () => void): Image {
  const seen: Image = new Map();
  let more = true;
  while (more) {
    more = cursor.next(batch, (key, value, index) => {
      assert(!seen.has(key), `the cursor visits "${key}" once`);
      seen.set(key, { value, index });
    });
    between();
  }
  return seen;
}

Deno.test("KeyValueTable cursor reads the table as it was when opened, whatever changes meanwhile", () => {
  for (let seed = 1; seed <= 40; seed++) {
    const prng = new XorShiftPrng(seed);
    const table = new KeyValueTable();
    const live: Image = new Map(); // the same changes, in a plain Map
    const keySpace = 20 + prng.nextInt(0, 200);
    let index = 0;
    const change = () => {
      const key = `k${prng.nextInt(0, keySpace)}`;
      index++;
      // Deletes free slots, and new keys take them back: both while the cursor reads.
      if (prng.next() < 0.4) {
        assert.equal(table.delete(key), live.delete(key));
      } else {
        table.set(key, `v${index}`, index);
        live.set(key, { value: `v${index}`, index });
      }
    };
    for (let i = 0; i < keySpace * 3; i++) change();
    const before = imageOf(table);
    const cursor = table.cursor();
    assert.equal(cursor.size, before.size);
    const changesPerBatch = prng.nextInt(0, 30);
    const seen = readAll(cursor, 1 + prng.nextInt(0, 9), () => {
      for (let i = 0; i < changesPerBatch; i++) change();
    });
    assert.deepEqual(seen, before, `seed ${seed}`);
    assert.deepEqual(imageOf(table), live, `seed ${seed}`);
  }
});

Deno.test("KeyValueTable cursor: one at a time, closed at its end or early, then never read", () => {
  const table = new KeyValueTable();
  for (let i = 0; i < 10; i++) table.set(`k${i}`, `v${i}`, i + 1);
  const first = table.cursor();
  assert.throws(() => table.cursor(), /one table cursor at a time/);
  assert.equal(first.next(3, () => {}), true);
  first.close();
  assert.throws(() => first.next(3, () => {}), /closed table cursor/);
  // Closed early: changes are no longer kept for it, and another cursor may open.
  table.set("k9", "changed", 11);
  const second = table.cursor();
  assert.equal(readAll(second, 100, () => {}).get("k9")?.value, "changed");
  table.cursor().close(); // the second closed itself at its end
});

Deno.test("KeyValueTable cursor over an empty table, or one with only free slots, ends at once", () => {
  const table = new KeyValueTable();
  assert.equal(table.cursor().next(10, () => assert.fail("no key to visit")), false);
  table.set("a", "1", 1);
  table.delete("a");
  const cursor = table.cursor();
  assert.equal(cursor.size, 0);
  assert.equal(cursor.next(10, () => assert.fail("no key to visit")), false);
});
