import type { Entry } from "../../raft/mod.ts";

export const REPO_DIR = new URL("../../", import.meta.url).pathname;

export async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "raftkv_kv_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

export function command(index: number, term: number, text = `entry ${index}`): Entry {
  return { type: "command", index, term, data: new TextEncoder().encode(text) };
}

export function commands(first: number, last: number, term: number): Entry[] {
  const entries: Entry[] = [];
  for (let index = first; index <= last; index++) entries.push(command(index, term));
  return entries;
}

/** Deterministic bytes, different for each seed. */
export function patternBytes(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  let state = seed * 2654435761 >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    bytes[i] = state & 0xff;
  }
  return bytes;
}

/** Every key stored under `prefix`, as strings, for checking what is on disk. */
export async function storedKeys(path: string, prefix: Deno.KvKey): Promise<string[]> {
  const kv = await Deno.openKv(path);
  try {
    const keys: string[] = [];
    for await (const entry of kv.list({ prefix })) keys.push(entry.key.join("/"));
    return keys;
  } finally {
    kv.close();
  }
}

/** Runs `script` (a file in tests/kv) with Deno in a subprocess; the caller owns the child. */
export function spawnChild(script: string, args: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-kv", `tests/kv/${script}`, ...args],
    cwd: REPO_DIR,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** Lines of a child's stdout, read on demand. */
export class LineReader {
  readonly lines: string[] = [];
  readonly #reader: ReadableStreamDefaultReader<string>;
  #buffer = "";
  #consumed = 0;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  }

  /** The next line accepted by `predicate`, skipping others; throws if the stream ends. */
  async waitFor(predicate: (line: string) => boolean): Promise<string> {
    for (;;) {
      while (this.#consumed < this.lines.length) {
        const line = this.lines[this.#consumed++];
        if (predicate(line)) return line;
      }
      const { value, done } = await this.#reader.read();
      if (done) throw new Error(`Child output ended; lines: ${this.lines.join(" | ")}`);
      const parts = (this.#buffer + value).split("\n");
      this.#buffer = parts.pop() ?? "";
      this.lines.push(...parts);
    }
  }

  /** Reads everything left (after the child exited) into `lines`. */
  async drain(): Promise<void> {
    for (;;) {
      const { value, done } = await this.#reader.read();
      if (done) break;
      const parts = (this.#buffer + value).split("\n");
      this.#buffer = parts.pop() ?? "";
      this.lines.push(...parts);
    }
    if (this.#buffer !== "") this.lines.push(this.#buffer);
    this.#buffer = "";
  }
}
