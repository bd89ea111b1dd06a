/** Architecture and style, enforced: the dependency rule of DESIGN.md and STYLE.md. */
import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url).pathname;
const LINES_MAX = 600;

async function listTs(dir: string): Promise<string[]> {
  const files: string[] = [];
  for await (const entry of Deno.readDir(`${ROOT}${dir}`)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) files.push(...await listTs(path));
    else if (entry.name.endsWith(".ts")) files.push(path);
  }
  return files.sort();
}

function importsOf(text: string): string[] {
  const specifiers: string[] = [];
  for (const match of text.matchAll(/(?:import|export)\s[^;]*?from\s+"([^"]+)"/gs)) {
    specifiers.push(match[1]);
  }
  for (const match of text.matchAll(/import\(\s*"([^"]+)"\s*\)/g)) specifiers.push(match[1]);
  return specifiers;
}

const BANNED_IN_RAFT = [
  "Deno.",
  "Date.now(",
  "Math.random(",
  "setTimeout(",
  "setInterval(",
  "fetch(",
  "console.",
  "performance.now(",
];

Deno.test("raft/ stays free of I/O, wall-clock time and randomness", async () => {
  for (const path of await listTs("raft")) {
    const text = await Deno.readTextFile(`${ROOT}${path}`);
    for (const banned of BANNED_IN_RAFT) {
      assert(!text.includes(banned), `${path}: "${banned}" is banned in raft/`);
    }
  }
});

Deno.test("raft/ imports only its own files, node:assert, and msgpack in wire.ts", async () => {
  for (const path of await listTs("raft")) {
    for (const specifier of importsOf(await Deno.readTextFile(`${ROOT}${path}`))) {
      const allowed = specifier.startsWith("./") || specifier === "node:assert/strict" ||
        (specifier === "@msgpack/msgpack" && path === "raft/wire.ts");
      assert(allowed, `${path} imports "${specifier}"`);
    }
  }
});

Deno.test("kv/ imports its own files, msgpack, and raft/ only through raft/mod.ts", async () => {
  for (const path of await listTs("kv")) {
    for (const specifier of importsOf(await Deno.readTextFile(`${ROOT}${path}`))) {
      const allowed = (specifier.startsWith("./") && !specifier.startsWith("../")) ||
        specifier === "@msgpack/msgpack" || specifier === "node:assert/strict" ||
        specifier === "../raft/mod.ts";
      assert(allowed, `${path} imports "${specifier}"`);
    }
  }
});

Deno.test("http/ reaches other directories only through their mod.ts", async () => {
  for (const path of await listTs("http")) {
    for (const specifier of importsOf(await Deno.readTextFile(`${ROOT}${path}`))) {
      if (!specifier.startsWith("../")) continue;
      assert(
        specifier === "../raft/mod.ts" || specifier === "../kv/mod.ts",
        `${path} imports "${specifier}": use the directory's mod.ts`,
      );
    }
  }
});

Deno.test("only main.ts, scripts/ and tests/ import http/, and only through http/mod.ts", async () => {
  for (const dir of ["raft", "kv"]) {
    for (const path of await listTs(dir)) {
      const text = await Deno.readTextFile(`${ROOT}${path}`);
      assert(!importsOf(text).some((s) => s.includes("http/")), `${path} imports http/`);
    }
  }
  const main = await Deno.readTextFile(`${ROOT}main.ts`);
  for (const specifier of importsOf(main)) {
    assert(
      !specifier.startsWith("./http/") || specifier === "./http/mod.ts",
      `main.ts imports "${specifier}"`,
    );
  }
});

Deno.test("source files use named exports and stay under the line limit", async () => {
  const files = [
    "main.ts",
    ...await listTs("raft"),
    ...await listTs("kv"),
    ...await listTs("http"),
    ...await listTs("scripts"),
  ];
  for (const path of files) {
    const text = await Deno.readTextFile(`${ROOT}${path}`);
    assert(!/export\s+default/.test(text), `${path}: no export default`);
    const lines = text.split("\n").length - (text.endsWith("\n") ? 1 : 0);
    assert(lines <= LINES_MAX, `${path} has ${lines} lines (at most ${LINES_MAX})`);
  }
});

Deno.test("file names are snake_case", async () => {
  for (const dir of ["raft", "kv", "http", "scripts", "tests"]) {
    for (const path of await listTs(dir)) {
      const name = path.split("/").pop()!;
      assert(/^_?[a-z0-9]+(_[a-z0-9]+)*\.ts$/.test(name), `${path}: file names are snake_case`);
    }
  }
});
