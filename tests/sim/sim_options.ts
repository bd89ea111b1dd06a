import { XorShiftPrng } from "../../raft/mod.ts";
import type { NetworkFaults } from "./network.ts";
import { deriveSeed } from "./sim_node.ts";

/** Everything that shapes one simulation run. All of it follows from the seed by default. */
export interface SimOptions {
  seed: number;
  profile: Profile;
  /** Steps with faults; the liveness phase that follows is bounded separately. */
  steps: number;
  nodeCount: number;
  electionTimeoutTicks: number;
  heartbeatIntervalTicks: number;
  network: NetworkFaults;
  /** Per-step chances of each fault and operation (proposals may exceed 1: several a step). */
  crashRatio: number;
  /** A crashed node restarts within this many election timeouts: long outages need snapshots. */
  downTimeoutsMax: number;
  pauseRatio: number;
  partitionRatio: number;
  membershipRatio: number;
  transferRatio: number;
  snapshotRatio: number;
  proposeRatio: number;
  readRatio: number;
  /** Share of proposals padded to 4..100 KiB. */
  largeRatio: number;
  /** Chance that a node crashes during the driver turn right after it proposed. */
  crashAfterProposeRatio: number;
  /** Receives one line per notable event (`--verbose`). */
  trace?: (line: string) => void;
  /** Also trace every delivered message (`--messages`). */
  traceMessages?: boolean;
}

export const STEPS_DEFAULT = 2_000;

function pick<T>(prng: XorShiftPrng, values: readonly T[]): T {
  return values[prng.nextInt(0, values.length)];
}

/** Focused fault mixes, each aimed at a class of bugs; most seeds take the "mixed" one. */
export type Profile = "mixed" | "outage" | "staleLeader" | "churn";

const PROFILES: Record<Profile, Partial<SimOptions>> = {
  mixed: {},
  // Followers down for long under load: catch-up by pipelined appends, probes and snapshots.
  outage: {
    crashRatio: 0.01,
    downTimeoutsMax: 30,
    pauseRatio: 0,
    partitionRatio: 0,
    membershipRatio: 0,
    transferRatio: 0,
    proposeRatio: 1.5,
  },
  // Leaders cut off with a minority keep taking proposals and reads that must not succeed.
  staleLeader: { partitionRatio: 0.02, pauseRatio: 0.01, crashRatio: 0, readRatio: 0.5 },
  // Membership changes, transfers and snapshots back to back.
  churn: { membershipRatio: 0.03, transferRatio: 0.02, snapshotRatio: 0.05, crashRatio: 0.005 },
};

/**
 * Options for `seed`: node count (3, 5 or 7), timing and fault rates vary per seed so that the
 * seeds together cover calm, lossy, partitioned and crash-heavy clusters.
 */
export function optionsForSeed(seed: number, overrides: Partial<SimOptions> = {}): SimOptions {
  const prng = new XorShiftPrng(deriveSeed(seed, 0x5eed));
  // Production has 10 ticks per heartbeat: some seeds have ticks without one, where the
  // leader's pace alone sends to paced followers.
  const heartbeatIntervalTicks = pick(prng, [1, 1, 2, 5]);
  const electionTimeoutTicks = Math.max(2 * heartbeatIntervalTicks + 1, prng.nextInt(5, 15));
  const options: SimOptions = {
    seed,
    profile: "mixed",
    steps: STEPS_DEFAULT,
    // One node exercises the sole voter, which wins its election in a single tick.
    nodeCount: pick(prng, [1, 3, 5, 7]),
    electionTimeoutTicks,
    heartbeatIntervalTicks,
    network: {
      dropRatio: pick(prng, [0, 0.02, 0.05, 0.1, 0.2]),
      duplicateRatio: pick(prng, [0, 0.02, 0.05, 0.1]),
      delayStepsMax: pick(prng, [0, 1, 2, 4, 8]),
    },
    crashRatio: pick(prng, [0, 0.002, 0.005, 0.01, 0.02]),
    pauseRatio: pick(prng, [0, 0.002, 0.005, 0.01]),
    partitionRatio: pick(prng, [0, 0.003, 0.008, 0.015]),
    membershipRatio: pick(prng, [0, 0.003, 0.01, 0.02]),
    transferRatio: pick(prng, [0, 0.003, 0.01]),
    snapshotRatio: pick(prng, [0.005, 0.02, 0.05]),
    proposeRatio: pick(prng, [0.2, 0.5, 1.5]),
    readRatio: pick(prng, [0.05, 0.2, 0.5]),
    crashAfterProposeRatio: pick(prng, [0, 0.005, 0.02]),
    largeRatio: pick(prng, [0, 0.01, 0.05, 0.2, 0.6]),
    downTimeoutsMax: pick(prng, [4, 8, 30]),
  };
  const profile = pick<Profile>(prng, [
    "mixed",
    "mixed",
    "mixed",
    "outage",
    "staleLeader",
    "churn",
  ]);
  return { ...options, ...PROFILES[profile], profile, ...overrides };
}

/** One line that says what a seed exercises. */
export function describeOptions(options: SimOptions): string {
  const n = options.network;
  return [
    `seed ${options.seed} (${options.profile}): ${options.nodeCount} nodes, ${options.steps} steps`,
    `election ${options.electionTimeoutTicks} ticks, heartbeat ${options.heartbeatIntervalTicks}`,
    `drop ${n.dropRatio}, dup ${n.duplicateRatio}, delay ≤${n.delayStepsMax}`,
    `crash ${options.crashRatio} (down ≤${options.downTimeoutsMax} timeouts)`,
    `pause ${options.pauseRatio}, partition ${options.partitionRatio}`,
    `membership ${options.membershipRatio}, transfer ${options.transferRatio}`,
    `snapshot ${options.snapshotRatio}`,
    `propose ${options.proposeRatio} (large ${options.largeRatio})`,
    `read ${options.readRatio}, crash after propose ${options.crashAfterProposeRatio}`,
  ].join(", ");
}
