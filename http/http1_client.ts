/**
 * A small HTTP/1.1 client over Deno.connect: keep-alive connections, one request at a time on
 * each, Content-Length or chunked answers. Deno's fetch costs several times more CPU per
 * request (measured with `deno task bench` against wrk), which matters for peer traffic: every
 * batch of Raft messages is one request. Used by the peer transport and the load generator.
 */

/** Bytes of a response head we accept. */
const HEAD_BYTES_MAX = 65_536;
/** Bytes of a response body we accept. */
const BODY_BYTES_MAX = 8 * 1024 * 1024;
/** Idle keep-alive connections kept per origin. */
const IDLE_CONNECTIONS_MAX = 8;

export class ProtocolError extends Error {
  override name = "ProtocolError";
}

export interface HttpAnswer {
  status: number;
  body: Uint8Array<ArrayBuffer>;
}

const decoder = new TextDecoder();

function indexOfCrlf(bytes: Uint8Array, from: number, end: number): number {
  for (let i = from; i + 1 < end; i++) if (bytes[i] === 13 && bytes[i + 1] === 10) return i;
  return -1;
}

/** The offset just past a complete chunked body starting at `start`, or -1 if more bytes are
 * needed (RFC 9112 §7.1). */
export function chunkedBodyEnd(bytes: Uint8Array, start: number, end: number): number {
  let position = start;
  for (;;) {
    const lineEnd = indexOfCrlf(bytes, position, end);
    if (lineEnd < 0) return -1;
    const sizeText = decoder.decode(bytes.subarray(position, lineEnd)).split(";")[0].trim();
    if (!/^[0-9a-fA-F]{1,8}$/.test(sizeText)) {
      throw new ProtocolError(`Invalid chunk size "${sizeText.slice(0, 20)}"`);
    }
    const size = parseInt(sizeText, 16);
    position = lineEnd + 2;
    if (size === 0) break;
    if (position + size + 2 > end) return -1;
    position += size + 2;
  }
  for (;;) { // trailer lines, then an empty line
    const lineEnd = indexOfCrlf(bytes, position, end);
    if (lineEnd < 0) return -1;
    if (lineEnd === position) return position + 2;
    position = lineEnd + 2;
  }
}

export interface ResponseHead {
  status: number;
  headBytes: number;
  contentLength: number | undefined;
  chunked: boolean;
  close: boolean;
}

/** Parses the status line and headers if `bytes[0, end)` holds all of them. */
export function parseResponseHead(bytes: Uint8Array, end: number): ResponseHead | undefined {
  let headEnd = -1;
  for (let i = 0; i + 3 < end; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) {
      headEnd = i;
      break;
    }
  }
  if (headEnd < 0) {
    if (end > HEAD_BYTES_MAX) throw new ProtocolError("Response head is too large");
    return undefined;
  }
  const lines = decoder.decode(bytes.subarray(0, headEnd)).split("\r\n");
  const statusMatch = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
  if (statusMatch === null) {
    throw new ProtocolError(`Invalid status line "${lines[0].slice(0, 40)}"`);
  }
  const head: ResponseHead = {
    status: Number(statusMatch[1]),
    headBytes: headEnd + 4,
    contentLength: undefined,
    chunked: false,
    close: lines[0].startsWith("HTTP/1.0"),
  };
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim().toLowerCase();
    if (name === "content-length") {
      if (!/^\d+$/.test(value)) throw new ProtocolError(`Invalid content-length "${value}"`);
      head.contentLength = Number(value);
    } else if (name === "transfer-encoding") head.chunked = value.includes("chunked");
    else if (name === "connection") head.close = value.includes("close");
  }
  return head;
}

export class HttpConnection {
  #hostname: string;
  #port: number;
  #conn: Deno.TcpConn | undefined;
  #buffer = new Uint8Array(16_384);
  #length = 0;
  /** Bumped by close(): an exchange that awaited across a close() gives up. */
  #generation = 0;

  constructor(origin: string) {
    const url = new URL(origin);
    this.#hostname = url.hostname.replace(/^\[(.*)\]$/, "$1");
    this.#port = Number(url.port || 80);
  }

  /** True while a connection is held (it may still turn out closed by the peer). */
  isOpen(): boolean {
    return this.#conn !== undefined;
  }

  close(): void {
    this.#generation += 1;
    try {
      this.#conn?.close();
    } catch {
      // Already closed by the peer or by an earlier close().
    }
    this.#conn = undefined;
    this.#length = 0;
  }

  /** Sends one request and reads its whole answer. Throws ProtocolError on a malformed answer
   * and a Deno error when the connection fails; either way the connection is closed. */
  async exchange(request: Uint8Array): Promise<HttpAnswer> {
    const generation = this.#generation;
    try {
      return await this.#exchange(request, generation);
    } catch (error) {
      if (generation === this.#generation) this.close();
      throw error;
    }
  }

  async #exchange(request: Uint8Array, generation: number): Promise<HttpAnswer> {
    if (this.#conn === undefined) {
      const conn = await Deno.connect({ hostname: this.#hostname, port: this.#port });
      if (generation !== this.#generation) {
        conn.close();
        throw new Deno.errors.Interrupted("Connection closed while connecting");
      }
      conn.setNoDelay(true);
      this.#conn = conn;
    }
    const conn = this.#conn;
    for (let written = 0; written < request.length;) {
      written += await conn.write(request.subarray(written));
      this.#check(generation);
    }
    this.#length = 0;
    let head = parseResponseHead(this.#buffer, 0);
    // 1xx answers are interim (RFC 9110 §15.2): skip them.
    while (head === undefined || (head.status >= 100 && head.status < 200)) {
      if (head !== undefined) this.#discard(head.headBytes);
      else if (!await this.#fill(conn, generation)) throw new Deno.errors.UnexpectedEof();
      head = parseResponseHead(this.#buffer, this.#length);
    }
    const end = await this.#readBody(conn, generation, head);
    const answer = { status: head.status, body: this.#buffer.slice(head.headBytes, end) };
    // Nothing is pipelined, so extra bytes mean the connection is out of step: drop it.
    if (head.close || end !== this.#length) this.close();
    return answer;
  }

  async #readBody(conn: Deno.TcpConn, generation: number, head: ResponseHead): Promise<number> {
    const start = head.headBytes;
    const noBody = head.status === 204 || head.status === 304;
    if (noBody) return start;
    if (head.chunked) {
      let end = chunkedBodyEnd(this.#buffer, start, this.#length);
      while (end < 0) {
        if (!await this.#fill(conn, generation)) throw new Deno.errors.UnexpectedEof();
        end = chunkedBodyEnd(this.#buffer, start, this.#length);
      }
      return end;
    }
    if (head.contentLength !== undefined) {
      if (head.contentLength > BODY_BYTES_MAX) throw new ProtocolError("Response body too large");
      while (this.#length < start + head.contentLength) {
        if (!await this.#fill(conn, generation)) throw new Deno.errors.UnexpectedEof();
      }
      return start + head.contentLength;
    }
    head.close = true; // the body runs to the end of the connection
    while (await this.#fill(conn, generation));
    return this.#length;
  }

  /** Reads more bytes into the buffer; false at the end of the stream. */
  async #fill(conn: Deno.TcpConn, generation: number): Promise<boolean> {
    if (this.#length === this.#buffer.length) {
      if (this.#buffer.length >= HEAD_BYTES_MAX + BODY_BYTES_MAX) {
        throw new ProtocolError("Response too large");
      }
      const grown = new Uint8Array(this.#buffer.length * 2);
      grown.set(this.#buffer);
      this.#buffer = grown;
    }
    const count = await conn.read(this.#buffer.subarray(this.#length));
    this.#check(generation);
    if (count === null) return false;
    this.#length += count;
    return true;
  }

  #discard(count: number): void {
    this.#buffer.copyWithin(0, count, this.#length);
    this.#length -= count;
  }

  #check(generation: number): void {
    if (generation !== this.#generation) {
      throw new Deno.errors.Interrupted("Connection closed during the request");
    }
  }
}

/** Builds the bytes of one HTTP/1.1 request with a body. */
export function requestHead(
  method: string,
  url: URL,
  headers: Record<string, string>,
  bodyBytes: number,
): string {
  return requestHeadWithoutLength(method, url, headers) + `Content-Length: ${bodyBytes}\r\n\r\n`;
}

/** The request line and headers of a request, without Content-Length and the blank line. */
export function requestHeadWithoutLength(
  method: string,
  url: URL,
  headers: Record<string, string>,
): string {
  let head = `${method} ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\n`;
  for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
  return head;
}

const encoder = new TextEncoder();

/**
 * A fetch for POST requests with a byte body, on pooled HTTP/1.1 keep-alive connections.
 * Network failures reject with TypeError, like fetch; an aborted signal rejects with its reason.
 */
export class Http1Client {
  #idle = new Map<string, HttpConnection[]>();
  /** Connections with a request in flight: close() interrupts them. */
  #busy = new Set<HttpConnection>();
  #closed = false;

  /**
   * POSTs `body` to `origin` after `head`: the request line and headers, already encoded, up to
   * but without Content-Length (see requestHead). The cheap path for peer traffic: no URL,
   * Headers, signal or Response per request. Rejects with TypeError on a network failure and
   * with a DOMException named TimeoutError when no answer came within `timeoutMs`.
   */
  async post(
    origin: string,
    head: Uint8Array,
    body: Uint8Array,
    timeoutMs: number,
  ): Promise<HttpAnswer> {
    if (this.#closed) throw new TypeError("The HTTP client is closed");
    const length = encoder.encode(`Content-Length: ${body.byteLength}\r\n\r\n`);
    const request = new Uint8Array(head.byteLength + length.byteLength + body.byteLength);
    request.set(head);
    request.set(length, head.byteLength);
    request.set(body, head.byteLength + length.byteLength);
    const connection = this.#take(origin);
    this.#busy.add(connection);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      connection.close();
    }, timeoutMs);
    try {
      const answer = await connection.exchange(request);
      this.#busy.delete(connection);
      if (connection.isOpen()) this.#give(origin, connection);
      return answer;
    } catch (error) {
      if (timedOut) throw new DOMException(`No answer within ${timeoutMs} ms`, "TimeoutError");
      throw new TypeError(`HTTP request to ${origin} failed: ${(error as Error).message}`, {
        cause: error,
      });
    } finally {
      clearTimeout(timer);
      this.#busy.delete(connection);
    }
  }

  readonly fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    if (this.#closed) throw new TypeError("The HTTP client is closed");
    const url = new URL(input instanceof Request ? input.url : input);
    const body = init?.body;
    if (!(body instanceof Uint8Array)) {
      throw new TypeError("Http1Client sends Uint8Array bodies only");
    }
    const headers: Record<string, string> = {};
    new Headers(init?.headers).forEach((value, name) => headers[name] = value);
    const head = encoder.encode(requestHead(init?.method ?? "POST", url, headers, body.byteLength));
    const request = new Uint8Array(head.byteLength + body.byteLength);
    request.set(head);
    request.set(body, head.byteLength);
    const connection = this.#take(url.origin);
    const signal = init?.signal;
    signal?.throwIfAborted();
    const onAbort = () => connection.close();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      const answer = await connection.exchange(request);
      if (connection.isOpen()) this.#give(url.origin, connection);
      const status = answer.status;
      const bodyAllowed = status !== 204 && status !== 304;
      return new Response(bodyAllowed ? answer.body : null, { status });
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      throw new TypeError(`HTTP request to ${url.origin} failed: ${(error as Error).message}`, {
        cause: error,
      });
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  };

  /** Closes every connection: idle ones, and those of post() requests in flight (they fail). */
  close(): void {
    this.#closed = true;
    for (const connection of this.#busy) connection.close();
    this.#busy.clear();
    for (const connections of this.#idle.values()) {
      for (const connection of connections) connection.close();
    }
    this.#idle.clear();
  }

  #take(origin: string): HttpConnection {
    return this.#idle.get(origin)?.pop() ?? new HttpConnection(origin);
  }

  #give(origin: string, connection: HttpConnection): void {
    const idle = this.#idle.get(origin) ?? [];
    if (this.#closed || idle.length >= IDLE_CONNECTIONS_MAX) {
      connection.close();
      return;
    }
    idle.push(connection);
    this.#idle.set(origin, idle);
  }
}
