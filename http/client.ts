/** `RaftkvClient`: the HTTP client of raftkv used by the command line, the scripts and the
 * end-to-end tests. It speaks the contract of API.md and imports nothing: only global fetch. */

export interface RaftkvClientOptions {
  /** Base URLs of the nodes to try, in order, e.g. "http://127.0.0.1:2020". */
  servers: string[];
  /** Deadline of one HTTP attempt; default 10,000 ms (above the server's own 5,000 ms). */
  timeoutMs?: number;
  /** Injected for tests; default the global fetch. */
  fetch?: typeof fetch;
}

/** An answer from a node: whatever the status, it is returned, never thrown. */
export interface RaftkvResponse {
  /** Base URL of the node that answered. */
  server: string;
  status: number;
  /** The JSON body as an object; a body that is not a JSON object is `{ error: <text> }`. */
  body: Record<string, unknown>;
  /** Header X-Raft-Leader, or null. */
  leader: string | null;
  /** Header X-Raft-Index (the applied index the answer reflects), or null. */
  index: number | null;
  /** Header Retry-After in ms (503), or null. */
  retryAfterMs: number | null;
}

/** `value` is the value on 200, null otherwise (404: key not found). */
export interface GetResponse extends RaftkvResponse {
  value: string | null;
}

/** `ok` is true on 200; on 409 `current` is the value found (null: the key does not exist). */
export interface WriteResponse extends RaftkvResponse {
  ok: boolean;
  /** Log index of the write, from the body. */
  writeIndex: number | null;
}

export interface CasResponse extends WriteResponse {
  /** On 409 (compare failed): the current value, null when the key does not exist. */
  current: string | null | undefined;
}

export interface DeleteResponse extends WriteResponse {
  /** True when the key existed. */
  deleted: boolean;
}

export type Consistency = "linearizable" | "stale";

export interface GetOptions {
  consistency?: Consistency;
  /** With "stale": wait until the node has applied this index. */
  minIndex?: number;
}

export interface WriteOptions {
  /** Makes retries apply at most once. Default: a fresh random id per call, so that the
   * client's own retries on the next server are safe. */
  requestId?: string;
}

export interface RequestOptions {
  query?: Record<string, string | number | undefined>;
  /** Sent as JSON. */
  json?: unknown;
  /** Sent as is (PUT /kv/{key}). */
  text?: string;
  headers?: Record<string, string>;
}

/** No node gave an HTTP answer: every attempt failed to connect or timed out. */
export class UnavailableError extends Error {
  override name = "UnavailableError";
  constructor(readonly failures: { server: string; reason: string }[]) {
    super(
      `Cannot reach any raftkv server: ${
        failures.map((failure) => `${failure.server} (${failure.reason})`).join(", ")
      }`,
    );
  }
}

const TIMEOUT_MS_DEFAULT = 10_000;

export class RaftkvClient {
  #servers: string[];
  #timeoutMs: number;
  #fetch: typeof fetch;
  /** Index in #servers of the last node that answered: tried first next time. */
  #preferred = 0;

  constructor(options: RaftkvClientOptions) {
    if (options.servers.length === 0) throw new TypeError("Cannot create a client: no servers");
    this.#servers = options.servers.map((server) => server.replace(/\/+$/, ""));
    for (const server of this.#servers) {
      if (!/^https?:\/\/[^/]/.test(server)) {
        throw new TypeError(`Cannot create a client: "${server}" is not an http(s) URL`);
      }
    }
    this.#timeoutMs = options.timeoutMs ?? TIMEOUT_MS_DEFAULT;
    this.#fetch = options.fetch ?? globalThis.fetch;
  }

  get servers(): readonly string[] {
    return this.#servers;
  }

  async get(key: string, options: GetOptions = {}): Promise<GetResponse> {
    const response = await this.request("GET", "/get", {
      query: { key, consistency: options.consistency, min_index: options.minIndex },
    });
    const value = response.status === 200 && typeof response.body.value === "string"
      ? response.body.value
      : null;
    return { ...response, value };
  }

  async set(key: string, value: string, options: WriteOptions = {}): Promise<WriteResponse> {
    const requestId = options.requestId ?? crypto.randomUUID();
    const response = await this.request("POST", "/set", {
      json: { key, value, request_id: requestId },
    });
    return writeResponse(response);
  }

  /** `expected` null: the key must not exist. */
  async cas(
    key: string,
    expected: string | null,
    value: string,
    options: WriteOptions = {},
  ): Promise<CasResponse> {
    const requestId = options.requestId ?? crypto.randomUUID();
    const json: Record<string, string> = { key, value, request_id: requestId };
    if (expected !== null) json.expected = expected;
    const response = await this.request("POST", "/cas", { json });
    const current = response.body.current;
    return {
      ...writeResponse(response),
      current: typeof current === "string" || current === null ? current : undefined,
    };
  }

  async delete(key: string, options: WriteOptions = {}): Promise<DeleteResponse> {
    const requestId = options.requestId ?? crypto.randomUUID();
    const response = await this.request("POST", "/delete", {
      json: { key, request_id: requestId },
    });
    return { ...writeResponse(response), deleted: response.body.deleted === true };
  }

  status(): Promise<RaftkvResponse> {
    return this.request("GET", "/status");
  }

  /** The members as listed by /status (`body.members`). */
  async members(): Promise<RaftkvResponse & { members: Record<string, unknown>[] }> {
    const response = await this.status();
    const members = Array.isArray(response.body.members)
      ? response.body.members.filter(isRecord)
      : [];
    return { ...response, members };
  }

  addMember(url: string): Promise<RaftkvResponse> {
    return this.request("POST", "/cluster/members", { json: { url } });
  }

  removeMember(id: string): Promise<RaftkvResponse> {
    return this.request("DELETE", `/cluster/members/${encodeURIComponent(id)}`);
  }

  transferLeader(id: string): Promise<RaftkvResponse> {
    return this.request("POST", "/cluster/leader", { json: { id } });
  }

  snapshot(): Promise<RaftkvResponse> {
    return this.request("POST", "/cluster/snapshot");
  }

  /**
   * One call, tried on each server at most once, starting with the last one that answered.
   * The next server is tried on a network failure, a timeout or a 503 (nothing was
   * proposed); the last 503 is returned when every server answered 503. Throws
   * UnavailableError when no server answered at all.
   */
  async request(
    method: string,
    path: string,
    options: RequestOptions = {},
  ): Promise<RaftkvResponse> {
    const failures: { server: string; reason: string }[] = [];
    let last503: RaftkvResponse | undefined;
    for (let attempt = 0; attempt < this.#servers.length; attempt++) {
      const position = (this.#preferred + attempt) % this.#servers.length;
      const server = this.#servers[position];
      let response: RaftkvResponse;
      try {
        response = await this.#attempt(server, method, path, options);
      } catch (error) {
        failures.push({ server, reason: describeFailure(error) });
        continue;
      }
      if (response.status === 503) {
        last503 = response;
        continue;
      }
      this.#preferred = position;
      return response;
    }
    if (last503 !== undefined) return last503;
    throw new UnavailableError(failures);
  }

  async #attempt(
    server: string,
    method: string,
    path: string,
    options: RequestOptions,
  ): Promise<RaftkvResponse> {
    const url = new URL(server + path);
    for (const [name, value] of Object.entries(options.query ?? {})) {
      if (value !== undefined) url.searchParams.set(name, String(value));
    }
    const headers: Record<string, string> = { Accept: "application/json", ...options.headers };
    let body: string | undefined;
    if (options.json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(options.json);
    } else if (options.text !== undefined) {
      headers["Content-Type"] = "text/plain; charset=utf-8";
      body = options.text;
    }
    const signal = AbortSignal.timeout(this.#timeoutMs);
    const response = await this.#fetch(url, { method, headers, body, signal });
    // Always read the body to the end: an unread body leaks the connection (and Deno's
    // test sanitizers report it).
    const text = await response.text();
    return {
      server,
      status: response.status,
      body: parseBody(text),
      leader: response.headers.get("X-Raft-Leader"),
      index: parseNonNegativeInteger(response.headers.get("X-Raft-Index")),
      retryAfterMs: parseRetryAfterMs(response.headers.get("Retry-After")),
    };
  }
}

function writeResponse(response: RaftkvResponse): WriteResponse {
  const ok = response.status === 200 && response.body.ok !== false;
  const writeIndex = typeof response.body.index === "number" ? response.body.index : null;
  return { ...response, ok, writeIndex };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function parseBody(text: string): Record<string, unknown> {
  if (text === "") return {};
  try {
    const value: unknown = JSON.parse(text);
    if (isRecord(value)) return value;
  } catch {
    // Not JSON (a proxy's error page, say): keep the text as the error.
  }
  return { error: text.trim().slice(0, 500) };
}

function parseNonNegativeInteger(text: string | null): number | null {
  if (text === null || !/^\d+$/.test(text.trim())) return null;
  const value = Number(text);
  return Number.isSafeInteger(value) ? value : null;
}

function parseRetryAfterMs(text: string | null): number | null {
  const seconds = text === null ? NaN : Number(text);
  return Number.isFinite(seconds) && seconds >= 0 ? Math.round(seconds * 1000) : null;
}

function describeFailure(error: unknown): string {
  if (error instanceof DOMException && error.name === "TimeoutError") return "timed out";
  if (error instanceof Error) {
    if (/connection refused|os error 111|ECONNREFUSED/i.test(error.message)) {
      return "connection refused";
    }
    return error.message.split("\n")[0];
  }
  return String(error);
}
