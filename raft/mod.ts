/** The public surface of raft/. Other directories import raft/ only through this file. */
export type * from "./types.ts";
export { assertNever } from "./types.ts";
export type { PersistedState, RaftStorage } from "./storage.ts";
export { MemoryStorage } from "./storage.ts";
export type { Transport } from "./transport.ts";
export type { SnapshotReader, StateMachine } from "./state_machine.ts";
export type { Clock, Prng } from "./clock.ts";
export { ManualClock, XorShiftPrng } from "./clock.ts";
export type { LogFields, Logger, LogLevel } from "./logger.ts";
export { noopLogger } from "./logger.ts";
export type { RaftConfig, RaftConfigInput } from "./config.ts";
export { validateRaftConfig } from "./config.ts";
export * from "./errors.ts";
export type {
  MemberStatus,
  NodeCounters,
  NodeStatus,
  ProposeResult,
  RaftNodeApi,
  RaftNodeOptions,
} from "./node_api.ts";
export { RaftNode } from "./node.ts";
export { RaftCore } from "./core.ts";
export { bootstrapState } from "./membership.ts";
export {
  encodeMessage,
  encodeMessages,
  estimateMessageBytes,
  parseMessage,
  parseMessages,
} from "./wire.ts";
