/**
 * DenoKvStorage against MemoryStorage (the contract's reference) under seeded random appends
 * that overwrite suffixes, local and leader snapshots, and reopens: after every step both load
 * the same hard state, snapshot and entries. Runs of entries in one record, records that
 * overlap after a conflict, and lazy deletes of stale records are all exercised here.
 */
import assert from "node:assert/strict";
import type { Entry, HardState, Snapshot } from "../../raft/mod.ts";
import { MemoryStorage } from "../../raft/mod.ts";
import { DenoKvStorage } from "../../kv/mod.ts";
import { seededRandom } from "../linearizability/history.ts";
import { patternBytes, withTempDir } from "./_helpers.ts";

const CONF = { members: [{ id: "n1", url: "http://127.0.0.1:1", voter: true }] };
const SEEDS = Number(Deno.env.get("RAFTKV_STORAGE_SEEDS") ?? 12);
const STEPS = 60;

/** Mostly small entries; some of 25 KiB (a run holds two), now and then one over a chunk. */
function entryAt(index: number, term: number, random: () => number): Entry {
  const roll = random();
  const bytes = roll < 0.8 ? 1 + Math.floor(random() * 200) : roll < 0.97 ? 25 * 1024 : 70 * 1024;
  return { type: "command", index, term, data: patternBytes(bytes, index * 31 + term) };
}

async function runSeed(seed: number, path: string): Promise<void> {
  const random = seededRandom(seed);
  const model = new MemoryStorage();
  let storage = await DenoKvStorage.open(path);
  await storage.load();
  let term = 1;
  let snapshotIndex = 0;
  let lastIndex = 0;
  try {
    for (let step = 0; step < STEPS; step++) {
      const roll = random();
      if (roll < 0.7) {
        // Append from a random point at or after the snapshot: a suffix is overwritten.
        const overwrite = random() < 0.35 && lastIndex > snapshotIndex;
        const first = overwrite
          ? snapshotIndex + 1 + Math.floor(random() * (lastIndex - snapshotIndex))
          : lastIndex + 1;
        if (overwrite) term++;
        const count = Math.floor(random() * 12);
        const entries: Entry[] = [];
        for (let i = 0; i < count; i++) entries.push(entryAt(first + i, term, random));
        const hardState: HardState | undefined = random() < 0.5
          ? { term, vote: null, commit: snapshotIndex }
          : undefined;
        if (entries.length === 0 && hardState === undefined) continue;
        await storage.append(entries, hardState);
        await model.append(entries, hardState);
        if (entries.length > 0) lastIndex = first + count - 1;
      } else if (roll < 0.85) {
        // A snapshot: local within the log, or a leader's anywhere at or after the last one.
        const discardLog = random() < 0.3;
        const index = discardLog
          ? snapshotIndex + 1 + Math.floor(random() * (lastIndex - snapshotIndex + 5))
          : snapshotIndex + 1 + Math.floor(random() * (lastIndex - snapshotIndex));
        if (!discardLog && index > lastIndex) continue;
        // A local snapshot takes the term of its last entry, as Raft's would.
        const entryTerm = model.entries.find((entry) => entry.index === index)?.term;
        const snapshot: Snapshot = {
          metadata: { index, term: discardLog ? term : entryTerm ?? term, confState: CONF },
          data: patternBytes(100, index),
        };
        await storage.saveSnapshot(snapshot, { discardLog });
        await model.saveSnapshot(snapshot, { discardLog });
        snapshotIndex = index;
        if (discardLog) lastIndex = index;
      } else {
        await storage.close();
        storage = await DenoKvStorage.open(path);
      }
      const where = `seed ${seed}, step ${step}`;
      const [got, want] = [await loadOrSay(storage, where), await model.load()];
      assert.deepEqual(got.hardState, want.hardState, where);
      assert.deepEqual(got.snapshot, want.snapshot, where);
      assert.equal(got.entries.length, want.entries.length, where);
      assert.deepEqual(got.entries, want.entries, where);
    }
  } finally {
    await storage.close();
  }
}

async function loadOrSay(storage: DenoKvStorage, where: string) {
  try {
    return await storage.load();
  } catch (error) {
    throw new Error(`${where}: ${error}`);
  }
}

Deno.test("DenoKvStorage loads what MemoryStorage does under random overwrites and snapshots", async () => {
  const firstSeed = Number(Deno.env.get("RAFTKV_STORAGE_SEED") ?? 1);
  for (let seed = firstSeed; seed < firstSeed + SEEDS; seed++) {
    await withTempDir((dir) => runSeed(seed, `${dir}/raftkv.db`));
  }
});
