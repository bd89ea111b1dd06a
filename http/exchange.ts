/**
 * A client request and the cheap way to answer it. The hot routes (/set, /get, /cas, /delete,
 * /kv/) are served through this instead of a framework context: the body is JSON.stringify'd
 * once and the Response is built with every header at once, never amended afterwards.
 */
export const RAFT_INDEX_HEADER = "X-Raft-Index";
export const RAFT_LEADER_HEADER = "X-Raft-Leader";
const JSON_TYPE = "application/json";

/** What an answer names besides its body: the applied index and the leader, as API.md says. */
export interface AnswerHeaders {
  appliedIndex: () => number;
  leaderUrl: () => string | undefined;
}

export class Exchange {
  readonly request: Request;
  readonly url: string;
  readonly method: string;
  #answer: AnswerHeaders;
  #index: string | undefined;
  #built: Response | undefined;

  constructor(request: Request, answer: AnswerHeaders) {
    this.request = request;
    this.url = request.url;
    this.method = request.method;
    this.#answer = answer;
  }

  header(name: string): string | null {
    return this.request.headers.get(name);
  }

  /** The path, still percent-encoded, without the query. */
  path(): string {
    return pathOf(this.url);
  }

  /** The applied index to name in X-Raft-Index (a read names the state it read). */
  setIndex(index: number): void {
    this.#index = String(index);
  }

  json(body: unknown, status = 200, extra?: Record<string, string>): Response {
    const headers: Record<string, string> = {
      "content-type": JSON_TYPE,
      [RAFT_INDEX_HEADER]: this.#index ?? String(this.#answer.appliedIndex()),
    };
    const leaderUrl = this.#answer.leaderUrl();
    if (leaderUrl !== undefined) headers[RAFT_LEADER_HEADER] = leaderUrl;
    if (extra !== undefined) Object.assign(headers, extra);
    this.#built = new Response(JSON.stringify(body), { status, headers });
    return this.#built;
  }

  /** Whether `response` is the last answer json() built (so it names index and leader). */
  built(response: Response): boolean {
    return response === this.#built;
  }
}

/** The path of an absolute request URL, still percent-encoded, without the query. */
export function pathOf(url: string): string {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  if (start === -1) return "/";
  const query = url.indexOf("?", start);
  return query === -1 ? url.slice(start) : url.slice(start, query);
}
