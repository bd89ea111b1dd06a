/**
 * The key-value operations on top of the Raft node: writes are proposed and answered with what
 * the state machine returned when it applied them; linearizable reads go through ReadIndex
 * (never the follower's local copy); stale reads are local, optionally after min_index.
 */
import {
  NoLeaderError,
  NotLeaderError,
  ProposalDroppedError,
  ProposalTimeoutError,
  type RaftNodeApi,
  StoppedError,
} from "../raft/mod.ts";
import { type ApplyResult, type Command, encodeCommand, type KvStateMachine } from "../kv/mod.ts";
import { ApiError } from "./errors.ts";
import type { Counter } from "./metrics.ts";
import type { Consistency } from "./params.ts";

/** What a write returns: an "invalid" result never answers a command encoded here. */
export type WriteResult = Exclude<ApplyResult, { type: "invalid" }>;

export interface KvServiceDeps {
  node: RaftNodeApi;
  stateMachine: KvStateMachine;
  /** raftkv_proposals_total{result}. */
  proposals: Counter;
}

export interface ReadOptions {
  consistency: Consistency;
  /** With "stale": wait until this node has applied this index. */
  minIndex?: number;
  timeoutMs: number;
}

export interface ReadAnswer {
  entry: { value: string; index: number } | undefined;
  /** The applied index the answer reflects (X-Raft-Index). */
  appliedIndex: number;
}

function proposalResult(error: unknown): string {
  if (error instanceof NotLeaderError) return "not_leader";
  if (error instanceof NoLeaderError) return "no_leader";
  if (error instanceof ProposalDroppedError) return "dropped";
  if (error instanceof ProposalTimeoutError) return "timeout";
  if (error instanceof StoppedError) return "stopped";
  return "error";
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

/**
 * Checks what the state machine returned. A repeated request_id returns the first result,
 * which may be of another type than this command (the client reused an id): that first answer
 * is what the client gets, as API.md promises, so any well-formed result is accepted.
 */
function asWriteResult(value: unknown): WriteResult {
  const ok = isRecord(value) && Number.isSafeInteger(value.index) && (
    (value.type === "set" && value.ok === true) ||
    (value.type === "cas" && value.ok === true) ||
    (value.type === "cas" && value.ok === false &&
      (value.current === null || typeof value.current === "string")) ||
    (value.type === "delete" && typeof value.deleted === "boolean")
  );
  if (!ok) {
    throw new Error(`Unexpected result from the state machine: ${JSON.stringify(value)}`);
  }
  return value as WriteResult;
}

export class KvService {
  #node: RaftNodeApi;
  #stateMachine: KvStateMachine;
  #proposals: Counter;
  #proposalsOk: () => void;

  constructor(deps: KvServiceDeps) {
    this.#node = deps.node;
    this.#stateMachine = deps.stateMachine;
    this.#proposals = deps.proposals;
    this.#proposalsOk = deps.proposals.incrementer({ result: "ok" });
  }

  /** Proposes `command` and resolves with its apply result once committed and applied. */
  async write(command: Command, options: { timeoutMs: number }): Promise<WriteResult> {
    let bytes: Uint8Array;
    try {
      bytes = encodeCommand(command);
    } catch (error) {
      // params.ts checked each field; only a CAS with two large values can still be too big.
      if (!(error instanceof RangeError)) throw error;
      throw new ApiError(413, `Command is too large: ${error.message}`);
    }
    let proposed;
    try {
      proposed = await this.#node.propose(bytes, options);
    } catch (error) {
      this.#proposals.inc({ result: proposalResult(error) });
      throw error;
    }
    const result = asWriteResult(proposed.result);
    this.#proposalsOk();
    return result;
  }

  async read(key: string, options: ReadOptions): Promise<ReadAnswer> {
    if (options.consistency === "linearizable") {
      // ReadIndex: resolves once this node confirmed its leadership and applied the read index.
      const readIndex = await this.#node.readBarrier({ timeoutMs: options.timeoutMs });
      // The contract says it is applied already; waiting is free if so and safe if not.
      if (this.#node.appliedIndex() < readIndex) {
        await this.#node.waitApplied(readIndex, { timeoutMs: options.timeoutMs });
      }
    } else if (
      options.minIndex !== undefined && this.#node.appliedIndex() < options.minIndex
    ) {
      await this.#node.waitApplied(options.minIndex, { timeoutMs: options.timeoutMs });
    }
    // Both reads below happen in one synchronous step: the index names the state read.
    return { entry: this.#stateMachine.get(key), appliedIndex: this.#node.appliedIndex() };
  }
}
