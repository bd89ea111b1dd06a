import { type SimStats, Simulation } from "./simulation.ts";
import { optionsForSeed, type SimOptions, STEPS_DEFAULT } from "./sim_options.ts";

/** What a run may override beyond the seed; each override is part of the replay command. */
export interface RunOverrides {
  steps?: number;
  nodeCount?: number;
  trace?: (line: string) => void;
  traceMessages?: boolean;
}

/** The one command that replays a seed exactly. */
export function replayCommand(seed: number, overrides: RunOverrides = {}): string {
  let command = `deno task sim --seed ${seed}`;
  if (overrides.steps !== undefined && overrides.steps !== STEPS_DEFAULT) {
    command += ` --steps ${overrides.steps}`;
  }
  if (overrides.nodeCount !== undefined) command += ` --nodes ${overrides.nodeCount}`;
  return command;
}

export function optionsFor(seed: number, overrides: RunOverrides): SimOptions {
  const partial: Partial<SimOptions> = {};
  if (overrides.steps !== undefined) partial.steps = overrides.steps;
  if (overrides.nodeCount !== undefined) partial.nodeCount = overrides.nodeCount;
  if (overrides.trace !== undefined) partial.trace = overrides.trace;
  if (overrides.traceMessages !== undefined) partial.traceMessages = overrides.traceMessages;
  return optionsForSeed(seed, partial);
}

/** Runs one seed; a failure carries the command that replays it. */
export function runSeed(seed: number, overrides: RunOverrides = {}): SimStats {
  try {
    return new Simulation(optionsFor(seed, overrides)).run();
  } catch (error) {
    const text = error instanceof Error ? error.message : String(error);
    throw new Error(`${text}\nreplay: ${replayCommand(seed, overrides)}`, { cause: error });
  }
}

/** Sums of the stats of many runs, to show that the seeds have teeth. */
export function addStats(total: SimStats | undefined, stats: SimStats): SimStats {
  if (total === undefined) return { ...stats };
  const sum = { ...total };
  for (const key of Object.keys(stats) as (keyof SimStats)[]) {
    sum[key] = key === "leaderAfterSteps" || key === "commitAfterSteps"
      ? Math.max(total[key], stats[key])
      : total[key] + stats[key];
  }
  return sum;
}

export function formatStats(stats: SimStats): string {
  return Object.entries(stats).map(([key, value]) => `${key}=${value}`).join(" ");
}
