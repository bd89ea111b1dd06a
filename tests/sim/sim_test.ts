/**
 * The seeded simulation of the Raft core: every seed runs a cluster through faults with
 * safety checked after every step, then checks liveness once the faults stop.
 *
 * RAFTKV_SEED=N runs only seed N; RAFTKV_SEEDS=COUNT runs COUNT seeds (from RAFTKV_SEED, or
 * 1); RAFTKV_STEPS=N changes the steps per seed. A failure prints `deno task sim --seed N`.
 */
import { STEPS_DEFAULT } from "./sim_options.ts";
import { addStats, formatStats, runSeed } from "./sim_runner.ts";
import type { SimStats } from "./simulation.ts";

/** Seeds CI runs by default, and how many go in one Deno.test case. */
export const CI_SEEDS = 300;
const SEEDS_PER_CASE = 50;

// deno-lint-ignore no-console
const print = console.log;

function envCount(name: string): number | undefined {
  const text = Deno.env.get(name);
  if (text === undefined || text === "") return undefined;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`Invalid ${name}: "${text}" is not a non-negative integer`);
  }
  return value;
}

const firstSeed = envCount("RAFTKV_SEED") ?? 1;
const seedCount = envCount("RAFTKV_SEEDS") ??
  (envCount("RAFTKV_SEED") === undefined ? CI_SEEDS : 1);
const steps = envCount("RAFTKV_STEPS") ?? STEPS_DEFAULT;
const startMs = performance.now();
let total: SimStats | undefined;
let seedsRun = 0;

for (let caseStart = firstSeed; caseStart < firstSeed + seedCount; caseStart += SEEDS_PER_CASE) {
  const caseEnd = Math.min(caseStart + SEEDS_PER_CASE, firstSeed + seedCount) - 1;
  const name = `simulation keeps the Raft core safe and live: seeds ${caseStart}..${caseEnd}` +
    ` × ${steps} steps`;
  Deno.test(name, () => {
    for (let seed = caseStart; seed <= caseEnd; seed++) {
      total = addStats(total, runSeed(seed, { steps }));
      seedsRun += 1;
    }
    if (caseEnd === firstSeed + seedCount - 1) {
      const seconds = ((performance.now() - startMs) / 1000).toFixed(1);
      print(`simulation: ${seedsRun} seeds × ${steps} steps in ${seconds} s`);
      print(`simulation totals: ${formatStats(total!)}`);
    }
  });
}
