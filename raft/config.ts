import type { Prng } from "./clock.ts";
import type { Logger } from "./logger.ts";
import { noopLogger } from "./logger.ts";
import type { NodeId } from "./types.ts";

/** Settings of one core. Time is in ticks; http/server.ts converts from milliseconds. */
export interface RaftConfig {
  id: NodeId;
  /** A follower campaigns after [n, n + jitter) ticks without hearing from a leader. */
  electionTimeoutTicks: number;
  /** Randomization of the election timeout (thesis §9.3); default electionTimeoutTicks. */
  electionJitterTicks: number;
  heartbeatIntervalTicks: number;
  /** Pre-Vote (thesis §9.6): a node that cannot win does not disturb the term. */
  preVote: boolean;
  /** CheckQuorum (thesis §6.2): a leader that has not heard from a quorum steps down. */
  checkQuorum: boolean;
  prng: Prng;
  logger: Logger;
}

export type RaftConfigInput = Pick<RaftConfig, "id" | "prng"> & Partial<RaftConfig>;

export function validateRaftConfig(input: RaftConfigInput): RaftConfig {
  const config: RaftConfig = {
    electionTimeoutTicks: input.electionTimeoutTicks ?? 10,
    electionJitterTicks: input.electionJitterTicks ?? input.electionTimeoutTicks ?? 10,
    heartbeatIntervalTicks: 1,
    preVote: true,
    checkQuorum: true,
    logger: noopLogger,
    ...input,
  };
  if (config.id === "") throw new RangeError("Cannot configure raft: id is empty");
  if (!Number.isSafeInteger(config.heartbeatIntervalTicks) || config.heartbeatIntervalTicks < 1) {
    throw new RangeError("Cannot configure raft: heartbeatIntervalTicks must be at least 1");
  }
  if (
    !Number.isSafeInteger(config.electionTimeoutTicks) ||
    config.electionTimeoutTicks <= 2 * config.heartbeatIntervalTicks
  ) {
    throw new RangeError(
      "Cannot configure raft: electionTimeoutTicks must exceed twice heartbeatIntervalTicks",
    );
  }
  if (!Number.isSafeInteger(config.electionJitterTicks) || config.electionJitterTicks < 1) {
    throw new RangeError("Cannot configure raft: electionJitterTicks must be at least 1");
  }
  return config;
}
