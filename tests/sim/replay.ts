/**
 * Replays simulation seeds: `deno task sim --seed N` reruns one seed exactly, `--verbose`
 * prints its trace, `--seeds COUNT` soaks COUNT seeds from --seed on with progress.
 */
import { parseArgs } from "node:util";
import { describeOptions, STEPS_DEFAULT } from "./sim_options.ts";
import { addStats, formatStats, optionsFor, type RunOverrides, runSeed } from "./sim_runner.ts";
import type { SimStats } from "./simulation.ts";

const USAGE =
  `Usage: deno task sim [--seed N] [--seeds COUNT] [--steps N] [--nodes 3|5|7] [--verbose]
  --seed N        the seed to replay, or the first of a soak (default 1; random with --seeds)
  --seeds COUNT   run COUNT consecutive seeds (a long soak), printing progress
  --steps N       faulty steps per seed (default ${STEPS_DEFAULT})
  --nodes N       override the node count the seed would choose
  --verbose       print every notable event of the run
  --messages      with --verbose, print every delivered message too
  --keep-going    in a soak, report every failing seed instead of stopping at the first`;

// deno-lint-ignore no-console
const print = console.log;

function parseCount(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`Invalid value for "--${name}": "${text}" is not a non-negative integer`);
  }
  return value;
}

function main(args: string[]): number {
  const { values } = parseArgs({
    args,
    options: {
      seed: { type: "string" },
      seeds: { type: "string" },
      steps: { type: "string" },
      nodes: { type: "string" },
      verbose: { type: "boolean", default: false },
      messages: { type: "boolean", default: false },
      "keep-going": { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    print(USAGE);
    return 0;
  }
  const count = parseCount("seeds", values.seeds);
  const first = parseCount("seed", values.seed) ??
    (count === undefined ? 1 : Math.floor(Math.random() * 1_000_000_000));
  const overrides: RunOverrides = {
    steps: parseCount("steps", values.steps),
    nodeCount: parseCount("nodes", values.nodes),
    trace: values.verbose || values.messages ? (line) => print(line) : undefined,
    traceMessages: values.messages,
  };
  const seeds = count ?? 1;
  const startMs = performance.now();
  let total: SimStats | undefined;
  let failures = 0;
  for (let seed = first; seed < first + seeds; seed++) {
    if (seeds === 1 || values.verbose) print(describeOptions(optionsFor(seed, overrides)));
    try {
      total = addStats(total, runSeed(seed, overrides));
    } catch (error) {
      print(error instanceof Error ? error.message : String(error));
      failures += 1;
      if (!values["keep-going"]) return 1;
    }
    const done = seed - first + 1;
    if (seeds > 1 && (done % 100 === 0 || done === seeds)) {
      const seconds = ((performance.now() - startMs) / 1000).toFixed(1);
      print(`${done - failures}/${done} seeds passed (${first}..${seed}) in ${seconds} s`);
    }
  }
  const seconds = ((performance.now() - startMs) / 1000).toFixed(2);
  if (total !== undefined) {
    print(`${seeds === 1 ? "stats" : "totals of the passing seeds"}: ${formatStats(total)}`);
  }
  if (failures > 0) {
    print(`${failures} of ${seeds} seeds failed in ${seconds} s`);
    return 1;
  }
  print(`ok: ${seeds} seed(s) from ${first} in ${seconds} s`);
  return 0;
}

if (import.meta.main) {
  try {
    Deno.exitCode = main(Deno.args);
  } catch (error) {
    print(error instanceof Error ? error.message : String(error));
    print(USAGE);
    Deno.exitCode = 2;
  }
}
