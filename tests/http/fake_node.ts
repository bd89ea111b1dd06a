/**
 * A single-node, in-memory RaftNodeApi for testing http/ through app.request(): proposals are
 * applied at once to a real KvStateMachine, and switches make it act as a follower, a node
 * without a leader, or a leader whose proposals time out or are dropped.
 */
import { AssertionError } from "node:assert/strict";
import {
  type ConfChange,
  type Index,
  type LogFields,
  type Logger,
  type Member,
  MembershipError,
  type MemberStatus,
  type Message,
  type NodeCounters,
  type NodeStatus,
  NoLeaderError,
  NotLeaderError,
  ProposalDroppedError,
  ProposalTimeoutError,
  type ProposeResult,
  type RaftNodeApi,
  ReadTimeoutError,
  StoppedError,
} from "../../raft/mod.ts";
import { type Command, decodeCommand, KvStateMachine } from "../../kv/mod.ts";
import { createApp } from "../../http/app.ts";
import { Metrics } from "../../http/metrics.ts";

export const SELF_URL = "http://n1.test:2020";
export const LEADER: Member = { id: "n2", url: "http://n2.test:2020", voter: true };

export type ProposeMode = "apply" | "drop" | "timeout" | "stopped" | "assert" | "crash";
export type ReadMode = "ok" | "timeout" | "noLeader";

export class FakeNode implements RaftNodeApi {
  readonly id = "n1";
  readonly stateMachine = new KvStateMachine();
  /** Who leads: this node ("self"), another member, or nobody. */
  leadership: "self" | Member | null = "self";
  /** What waitLeader finds when no leader is known (undefined: nobody, NoLeaderError). */
  leaderAfterWait: "self" | Member | undefined;
  proposeMode: ProposeMode = "apply";
  readMode: ReadMode = "ok";
  term = 2;
  members: Member[] = [{ id: "n1", url: SELF_URL, voter: true }, LEADER];
  /** Every command proposed, decoded, in order. */
  readonly proposals: Command[] = [];
  readonly changes: ConfChange[] = [];
  readonly transfers: string[] = [];
  readBarriers = 0;
  #lastIndex = 0;
  #applied = 0;
  #waiters: { index: Index; resolve: (index: Index) => void }[] = [];

  /** Appends and applies a no-op-like marker: moves the log without touching keys. */
  advance(count = 1): void {
    for (let i = 0; i < count; i++) this.#apply(undefined);
  }

  #apply(data: Uint8Array | undefined): unknown {
    const index = ++this.#lastIndex;
    const result = data === undefined ? undefined : this.stateMachine.apply(index, data);
    this.#applied = index;
    for (const waiter of this.#waiters.filter((w) => w.index <= index)) waiter.resolve(index);
    this.#waiters = this.#waiters.filter((w) => w.index > index);
    return result;
  }

  #notLeader(): NotLeaderError {
    const leader = this.leader();
    return new NotLeaderError(leader?.id ?? null, leader?.url);
  }

  propose(data: Uint8Array, _options: { timeoutMs: number }): Promise<ProposeResult> {
    if (this.leadership !== "self") return Promise.reject(this.#notLeader());
    this.proposals.push(decodeCommand(data));
    switch (this.proposeMode) {
      case "drop":
        return Promise.reject(new ProposalDroppedError("The proposal was dropped: leader changed"));
      case "timeout":
        return Promise.reject(new ProposalTimeoutError());
      case "stopped":
        return Promise.reject(new StoppedError());
      case "assert":
        return Promise.reject(new AssertionError({ message: "applied index went backwards" }));
      case "crash":
        return Promise.reject(new TypeError("Unexpected crash"));
      case "apply": {
        const result = this.#apply(data);
        return Promise.resolve({ index: this.#lastIndex, result });
      }
    }
  }

  readBarrier(_options: { timeoutMs: number }): Promise<Index> {
    this.readBarriers++;
    if (this.leadership !== "self") return Promise.reject(this.#notLeader());
    if (this.readMode === "timeout") return Promise.reject(new ReadTimeoutError());
    if (this.readMode === "noLeader") return Promise.reject(new NoLeaderError());
    return Promise.resolve(this.#applied);
  }

  waitApplied(index: Index, options: { timeoutMs: number }): Promise<Index> {
    if (index <= this.#applied) return Promise.resolve(this.#applied);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w.resolve !== done);
        reject(new ReadTimeoutError(`Timed out waiting for index ${index} to be applied`));
      }, options.timeoutMs);
      const done = (applied: Index) => {
        clearTimeout(timer);
        resolve(applied);
      };
      this.#waiters.push({ index, resolve: done });
    });
  }

  waitLeader(_options: { timeoutMs: number }): Promise<Member> {
    if (this.leadership === null && this.leaderAfterWait !== undefined) {
      this.leadership = this.leaderAfterWait;
    }
    const leader = this.leader();
    return leader === undefined ? Promise.reject(new NoLeaderError()) : Promise.resolve(leader);
  }

  appliedIndex(): Index {
    return this.#applied;
  }

  leader(): Member | undefined {
    if (this.leadership === null) return undefined;
    if (this.leadership === "self") return { id: this.id, url: SELF_URL, voter: true };
    return this.leadership;
  }

  step(_message: Message): void {}

  status(): NodeStatus {
    const leader = this.leader();
    const self = this.leadership === "self";
    const members: MemberStatus[] = this.members.map((member) =>
      self && member.id !== this.id
        ? { ...member, matchIndex: this.#applied - 1, nextIndex: this.#applied, lastContactMs: 5 }
        : { ...member }
    );
    return {
      id: this.id,
      role: self ? "leader" : "follower",
      term: this.term,
      leader: leader?.id ?? null,
      leaderUrl: leader?.url ?? null,
      commitIndex: this.#lastIndex,
      appliedIndex: this.#applied,
      lastLogIndex: this.#lastIndex,
      snapshotIndex: 0,
      logEntries: this.#lastIndex,
      snapshotBytes: 0,
      members,
    };
  }

  counters(): Readonly<NodeCounters> {
    return {
      proposalsCommitted: this.#applied,
      proposalsFailed: 0,
      leaderChanges: 1,
      electionsStarted: 1,
      readyTurns: 0,
      persistCount: 0,
      persistMsTotal: 0,
      snapshotsTaken: 0,
      snapshotsInstalled: 0,
      lastSnapshotBytes: 0,
      lastSnapshotMs: 0,
      emptyAppendsReplaced: 0,
    };
  }

  changeMembership(change: ConfChange, _options: { timeoutMs: number }): Promise<Index> {
    if (this.leadership !== "self") return Promise.reject(this.#notLeader());
    this.changes.push(change);
    if (change.type === "addLearner") {
      this.members.push({ id: change.id, url: change.url, voter: false });
    } else if (change.type === "remove") {
      if (change.id === "n2" && this.members.length <= 2) {
        return Promise.reject(new MembershipError('Cannot remove "n2": it would lose quorum'));
      }
      this.members = this.members.filter((member) => member.id !== change.id);
    }
    this.advance();
    return Promise.resolve(this.#lastIndex);
  }

  transferLeadership(id: string, _options: { timeoutMs: number }): Promise<void> {
    if (this.leadership !== "self") return Promise.reject(this.#notLeader());
    this.transfers.push(id);
    this.leadership = this.members.find((member) => member.id === id) ?? null;
    return Promise.resolve();
  }

  takeSnapshot(): Promise<Index> {
    return Promise.resolve(this.#applied);
  }

  stop(): Promise<void> {
    return Promise.resolve();
  }
}

export interface LogRecord {
  level: string;
  message: string;
  fields?: LogFields;
}

export function recordingLogger(records: LogRecord[]): Logger {
  const record = (level: string) => (message: string, fields?: LogFields) => {
    records.push({ level, message, fields });
  };
  return {
    debug: record("debug"),
    info: record("info"),
    warn: record("warn"),
    error: record("error"),
  };
}

export interface CapturedFetch {
  url: string;
  method: string;
  headers: Headers;
  body: Uint8Array;
  signal: AbortSignal;
}

/** Resolves never; rejects like fetch when `signal` aborts (a leader that does not answer). */
export function hangUntilAborted(signal: AbortSignal): Promise<Response> {
  return new Promise((_resolve, reject) => {
    signal.addEventListener("abort", () => reject(signal.reason), { once: true });
  });
}

export interface TestAppOptions {
  fetch?: typeof fetch;
  requestTimeoutMs?: number;
}

/** An app over a FakeNode, with what it logged, exit codes it asked for and its metrics. */
export function testApp(options: TestAppOptions = {}) {
  const node = new FakeNode();
  const logs: LogRecord[] = [];
  const exits: number[] = [];
  const metrics = new Metrics();
  const app = createApp({
    node,
    stateMachine: node.stateMachine,
    logger: recordingLogger(logs),
    metrics,
    requestTimeoutMs: options.requestTimeoutMs ?? 200,
    clusterId: "cluster-test",
    fetch: options.fetch ?? (() => Promise.reject(new TypeError("fetch is not expected here"))),
    exit: (code) => exits.push(code),
  });
  return { app, node, logs, exits, metrics };
}

/** A fetch that records what it was asked and answers with `answer`. */
export function capturingFetch(
  answer: (request: CapturedFetch) => Response | Promise<Response>,
): { fetch: typeof fetch; calls: CapturedFetch[] } {
  const calls: CapturedFetch[] = [];
  const fake = async (input: RequestInfo | URL, init?: RequestInit) => {
    const request = new Request(input, init);
    const captured: CapturedFetch = {
      url: request.url,
      method: request.method,
      headers: request.headers,
      body: new Uint8Array(await request.arrayBuffer()),
      signal: request.signal,
    };
    calls.push(captured);
    return await answer(captured);
  };
  return { fetch: fake as typeof fetch, calls };
}

export interface Answer {
  status: number;
  headers: Headers;
  /** The parsed JSON body (every answer of the client API is JSON). */
  body: Record<string, unknown>;
}

/** Sends a request through app.request() and parses the JSON answer (failing if it is not). */
export async function send(
  app: { request: (path: string, init?: RequestInit) => Response | Promise<Response> },
  path: string,
  init: RequestInit = {},
): Promise<Answer> {
  const response = await app.request(path, init);
  const text = await response.text();
  const isHead = (init.method ?? "GET") === "HEAD";
  let body: Record<string, unknown> = {};
  if (!isHead) {
    if (!(response.headers.get("content-type") ?? "").startsWith("application/json")) {
      throw new Error(`Answer to ${path} is not JSON: ${response.status} ${text.slice(0, 200)}`);
    }
    body = JSON.parse(text);
  }
  return { status: response.status, headers: response.headers, body };
}

export function jsonInit(method: string, value: unknown, headers: HeadersInit = {}): RequestInit {
  return {
    method,
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(value),
  };
}
