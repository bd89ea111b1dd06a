import assert from "node:assert/strict";
import { KeyValueTable } from "../../kv/_key_value_table.ts";

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
