/**
 * The gateway for client input: the body is read once (bounded), parameters come from the
 * query string, a JSON body or a form body, and every value is checked here before anything
 * else sees it. Everything outside is `unknown` until these functions return.
 */
import { KEY_BYTES_MAX, REQUEST_ID_BYTES_MAX, utf8ByteLength, VALUE_BYTES_MAX } from "../kv/mod.ts";
import { ApiError } from "./errors.ts";
import {
  Deadline,
  FORWARDED_HEADER,
  type LeaderRequest,
  type OriginalRequest,
  requestTimeoutMs,
} from "./forward.ts";

/**
 * Largest JSON or form body read. A value of VALUE_BYTES_MAX bytes may grow up to six times
 * when escaped (a control byte becomes "\u0001" in JSON), so the cap leaves room for that.
 */
export const BODY_BYTES_MAX = 6 * (VALUE_BYTES_MAX + KEY_BYTES_MAX) + 64 * 1024;

export type Consistency = "linearizable" | "stale";

const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const utf8Encoder = new TextEncoder();

export { utf8ByteLength };

/** Decodes UTF-8 strictly: invalid bytes are a client error, never silently replaced. */
export function decodeUtf8(bytes: Uint8Array, what: string): string {
  try {
    return utf8Decoder.decode(bytes);
  } catch {
    throw new ApiError(400, `Invalid UTF-8 in ${what}`);
  }
}

/** Reads the whole body, refusing more than `limitBytes` (413) without buffering it all. */
export async function readBody(request: Request, limitBytes: number): Promise<Uint8Array> {
  const tooLarge = () => new ApiError(413, `Request body is larger than ${limitBytes} bytes`);
  const length = request.headers.get("content-length");
  if (length !== null && Number(length) > limitBytes) throw tooLarge();
  // A GET without a length or a chunked encoding has no body (and asking for it costs).
  const bodiless = request.method === "GET" && length === null &&
    !request.headers.has("transfer-encoding");
  if (bodiless || request.body === null) return new Uint8Array(0);
  // A declared length within the limit: one read of the whole body is cheapest.
  if (length !== null) return await request.bytes();
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = request.body.getReader();
  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > limitBytes) {
      await reader.cancel();
      throw tooLarge();
    }
    chunks.push(value);
  }
  const body = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.length;
  }
  return body;
}

/** Parameter values: a string, or null where JSON said null (only `expected` accepts it). */
export class Params {
  #values = new Map<string, string | null>();

  /** Adds a value; the same name twice with different values is ambiguous, hence a 400. */
  add(name: string, value: string | null, where: string): void {
    if (value !== null && !value.isWellFormed()) {
      throw new ApiError(400, `Invalid UTF-8 in parameter "${name}" of the ${where}`);
    }
    if (this.#values.has(name) && this.#values.get(name) !== value) {
      throw new ApiError(400, `Parameter "${name}" is given twice with different values`);
    }
    this.#values.set(name, value);
  }

  get(name: string): string | null | undefined {
    return this.#values.get(name);
  }
}

/** Percent-decodes one component of a query string or form body, strictly. */
function decodeComponent(text: string, what: string): string {
  // Most names and values carry no escapes: they are their own decoding.
  if (!text.includes("%")) return text.includes("+") ? text.replaceAll("+", " ") : text;
  return decodePercent(text.replaceAll("+", " "), what);
}

/** Percent-decodes a URL path segment strictly ("+" stays "+" in a path). */
export function decodePercent(text: string, what: string): string {
  if (/%(?![0-9A-Fa-f]{2})/.test(text)) {
    throw new ApiError(400, `Malformed percent escape in ${what}`);
  }
  const bytes = utf8Encoder.encode(text);
  const out = new Uint8Array(bytes.length);
  let length = 0;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] === 0x25) {
      out[length++] = parseInt(String.fromCharCode(bytes[i + 1], bytes[i + 2]), 16);
      i += 2;
    } else {
      out[length++] = bytes[i];
    }
  }
  return decodeUtf8(out.subarray(0, length), what);
}

/** Parses `a=1&b=2` into `params`; a name repeated in one source is a 400 (which one wins?). */
function addUrlEncoded(params: Params, text: string, where: string): void {
  const seen = new Set<string>();
  for (const pair of text.split("&")) {
    if (pair === "") continue;
    const at = pair.indexOf("=");
    const name = decodeComponent(at === -1 ? pair : pair.slice(0, at), `the ${where}`);
    const value = at === -1 ? "" : decodeComponent(pair.slice(at + 1), `the ${where}`);
    if (seen.has(name)) throw new ApiError(400, `Parameter "${name}" is repeated in the ${where}`);
    seen.add(name);
    params.add(name, value, where);
  }
}

/**
 * JSON values must be strings. Users of etcd's and Consul's HTTP APIs also send
 * `{"value": 42}`, so a safe integer is accepted and stored as its decimal text; other numbers
 * (1.5, 1e30) are refused because their text would not survive the round trip exactly.
 * `null` is kept so that `"expected": null` can say "the key must not exist".
 */
function addJson(params: Params, text: string): void {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new ApiError(400, `Malformed JSON body: ${(error as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new ApiError(400, "JSON body must be an object");
  }
  for (const [name, value] of Object.entries(parsed)) {
    if (typeof value === "string" || value === null) {
      params.add(name, value, "JSON body");
    } else if (typeof value === "number" && Number.isSafeInteger(value)) {
      params.add(name, String(value), "JSON body");
    } else {
      throw new ApiError(400, `Parameter "${name}" must be a string, got ${describe(value)}`);
    }
  }
}

function describe(value: unknown): string {
  if (Array.isArray(value)) return "an array";
  if (typeof value === "number") return `the number ${value}`;
  return `a ${typeof value}`;
}

async function addMultipart(params: Params, body: Uint8Array, contentType: string) {
  let form: FormData;
  try {
    form = await new Response(body as Uint8Array<ArrayBuffer>, {
      headers: { "content-type": contentType },
    }).formData();
  } catch {
    throw new ApiError(400, "Malformed multipart form body");
  }
  const seen = new Set<string>();
  for (const [name, value] of form.entries()) {
    if (typeof value !== "string") {
      throw new ApiError(400, `Parameter "${name}" must not be a file`);
    }
    if (seen.has(name)) throw new ApiError(400, `Parameter "${name}" is repeated in the form body`);
    seen.add(name);
    params.add(name, value, "form body");
  }
}

/** The media type of a Content-Type header, lowercased, without parameters. */
export function mediaType(contentType: string | null): string {
  return (contentType ?? "").split(";")[0].trim().toLowerCase();
}

/** Parameters from the query string of `url` only (for /kv/{key}, whose body is the value). */
export function queryParams(url: string): Params {
  const params = new Params();
  // A request URL has no fragment, so the query is everything after the first "?".
  const query = url.indexOf("?");
  if (query !== -1) addUrlEncoded(params, url.slice(query + 1), "query string");
  return params;
}

/** Parameters from the query string and, if there is a body, from a JSON or form body. */
export async function bodyParams(
  url: string,
  { body, contentType }: { body: Uint8Array; contentType: string | null },
): Promise<Params> {
  const params = queryParams(url);
  if (body.length === 0) return params;
  const type = mediaType(contentType);
  if (type === "application/json") {
    addJson(params, decodeUtf8(body, "the JSON body"));
  } else if (type === "application/x-www-form-urlencoded") {
    addUrlEncoded(params, decodeUtf8(body, "the form body"), "form body");
  } else if (type === "multipart/form-data") {
    await addMultipart(params, body, contentType ?? "");
  } else {
    throw new ApiError(415, `Unsupported content type "${type || "none"}"`, {
      body: { accepted: ["application/json", "application/x-www-form-urlencoded"] },
    });
  }
  return params;
}

/** A key from anywhere: non-empty (400) and at most KEY_BYTES_MAX bytes of UTF-8 (413). */
export function checkKey(key: string): string {
  if (key === "") throw new ApiError(400, 'Parameter "key" is empty');
  if (!key.isWellFormed()) throw new ApiError(400, 'Invalid UTF-8 in parameter "key"');
  const bytes = utf8ByteLength(key);
  if (bytes > KEY_BYTES_MAX) {
    throw new ApiError(413, `Key is too large: ${bytes} bytes, the limit is ${KEY_BYTES_MAX}`);
  }
  return key;
}

/** A value from anywhere: at most VALUE_BYTES_MAX bytes of UTF-8 (413); empty is allowed. */
export function checkValue(value: string, name = "value"): string {
  const bytes = utf8ByteLength(value);
  if (bytes > VALUE_BYTES_MAX) {
    throw new ApiError(
      413,
      `Parameter "${name}" is too large: ${bytes} bytes, the limit is ${VALUE_BYTES_MAX}`,
    );
  }
  return value;
}

function requiredString(params: Params, name: string): string {
  const value = params.get(name);
  if (value === undefined) throw new ApiError(400, `Missing parameter "${name}"`);
  if (value === null) throw new ApiError(400, `Parameter "${name}" must be a string, got null`);
  return value;
}

function optionalString(params: Params, name: string): string | undefined {
  const value = params.get(name);
  if (value === null) throw new ApiError(400, `Parameter "${name}" must be a string, got null`);
  return value;
}

export function keyParam(params: Params): string {
  return checkKey(requiredString(params, "key"));
}

export function valueParam(params: Params): string {
  return checkValue(requiredString(params, "value"));
}

/** Omitted (or JSON null): the key must not exist. */
export function expectedParam(params: Params): string | null {
  const expected = params.get("expected");
  return expected === undefined || expected === null ? null : checkValue(expected, "expected");
}

export function consistencyParam(params: Params): Consistency {
  const consistency = optionalString(params, "consistency") ?? "linearizable";
  if (consistency === "linearizable" || consistency === "stale") return consistency;
  throw new ApiError(
    400,
    `Invalid parameter "consistency": "${consistency}", expected "linearizable" or "stale"`,
  );
}

export function minIndexParam(params: Params): number | undefined {
  const text = optionalString(params, "min_index");
  if (text === undefined) return undefined;
  const index = /^[0-9]{1,16}$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(index)) {
    throw new ApiError(400, `Invalid parameter "min_index": "${text.slice(0, 64)}"`);
  }
  return index;
}

/** `request_id` or the Idempotency-Key header (both: they must agree). */
export function requestIdParam(params: Params, header: string | null): string | undefined {
  const fromParams = optionalString(params, "request_id");
  if (fromParams !== undefined && header !== null && fromParams !== header) {
    throw new ApiError(400, 'Parameter "request_id" and header "Idempotency-Key" disagree');
  }
  const requestId = fromParams ?? header ?? undefined;
  if (requestId === undefined) return undefined;
  if (requestId === "") throw new ApiError(400, 'Parameter "request_id" is empty');
  if (utf8ByteLength(requestId) > REQUEST_ID_BYTES_MAX) {
    throw new ApiError(400, `Parameter "request_id" is longer than ${REQUEST_ID_BYTES_MAX} bytes`);
  }
  return requestId;
}

/** A client request read once: its parameters, its body, its deadline, and its original. */
export interface ClientRequest extends LeaderRequest {
  params: Params;
  body: Uint8Array;
}

/** Reads the body once (bounded), fixes the deadline, and keeps the original for relaying. */
export async function readClientRequest(
  request: Request,
  options: { write: boolean; rawBody?: boolean; requestTimeoutMs: number; nowMs: () => number },
): Promise<ClientRequest> {
  const headers = request.headers;
  const timeoutMs = requestTimeoutMs(headers, options.requestTimeoutMs);
  const deadline = new Deadline(options.nowMs, timeoutMs);
  // A raw body is a value itself (PUT /kv/{key}): over the value limit it is a 413 at once.
  const raw = options.rawBody === true;
  const body = await readBody(request, raw ? VALUE_BYTES_MAX : BODY_BYTES_MAX);
  const contentType = headers.get("content-type");
  const url = request.url;
  const method = request.method;
  const params = raw ? queryParams(url) : await bodyParams(url, { body, contentType });
  const original: OriginalRequest = {
    method,
    url,
    // Only PUT /kv/{key} uses its raw body; elsewhere on /kv it is ignored and not relayed.
    body: raw && method !== "PUT" ? new Uint8Array(0) : body,
    contentType,
    idempotencyKey: headers.get("idempotency-key"),
    forwarded: headers.has(FORWARDED_HEADER),
    write: options.write,
  };
  return { params, body, deadline, original };
}
