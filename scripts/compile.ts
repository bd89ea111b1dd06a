/** `deno task compile [--target T[,T]] [--allow-partial] [--out-dir dist]`: one raftkv binary per
 * platform, dist/raftkv-<target>[.exe], with only the permissions raftkv uses.
 *
 * deno compile appends the program to a base runtime ("denort") for the target, which it
 * downloads from dl.deno.land unless it is cached in DENO_DIR/dl or DENORT_BIN names one. Deno
 * 2.9 reads DENORT_BIN itself (cli/standalone/binary.rs) and then uses that file for whatever
 * --target says, so with DENORT_BIN set only the host target is built. A target whose runtime
 * cannot be had is reported on one line and skipped. */

import { parseArgs } from "node:util";
import { denoDir, denortArchivePath } from "./compile_available.ts";

export const TARGETS = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
  "x86_64-pc-windows-msvc",
] as const;

const COMPILE_TIMEOUT_MS = 10 * 60_000;
const ROOT = `${import.meta.dirname}/..`;

/** Sources whose Deno API calls decide the permissions (tests and scripts are not shipped). */
const SHIPPED_DIRS = ["http", "kv", "raft"];

/** A Deno API found in the shipped sources → the permission it needs beyond the base set. */
const PERMISSION_BY_API: [RegExp, string][] = [
  [/\bDeno\.env\b|\bprocess\.env\b/, "--allow-env"],
  [
    /\bDeno\.(hostname|osRelease|osUptime|loadavg|networkInterfaces|systemMemoryInfo|uid|gid)\b/,
    "--allow-sys",
  ],
  [/\bDeno\.(Command|run)\b/, "--allow-run"],
  [/\bDeno\.dlopen\b/, "--allow-ffi"],
];

/** Listening and peers (net), the Deno KV files in --dir (read, write). */
const BASE_PERMISSIONS = ["--allow-net", "--allow-read", "--allow-write"];

export function outputPath(outDir: string, target: string): string {
  return `${outDir}/raftkv-${target}${target.includes("windows") ? ".exe" : ""}`;
}

/** The targets to build from --target values ("all", "host" or target names). */
export function selectTargets(filters: string[], hostTarget: string): string[] {
  const names = filters.flatMap((filter) => filter.split(",")).map((name) => name.trim())
    .filter((name) => name !== "");
  if (names.length === 0 || names.includes("all")) return [...TARGETS];
  const selected: string[] = [];
  for (const name of names) {
    const target = name === "host" ? hostTarget : name;
    if (!(TARGETS as readonly string[]).includes(target)) {
      throw new TypeError(
        `Unknown target "${name}": expected all, host or one of ${TARGETS.join(", ")}`,
      );
    }
    if (!selected.includes(target)) selected.push(target);
  }
  return selected;
}

/** The permissions raftkv needs: the base set plus what the shipped sources call. */
export async function neededPermissions(root: string): Promise<string[]> {
  const texts = [await Deno.readTextFile(`${root}/main.ts`)];
  for (const dir of SHIPPED_DIRS) {
    for await (const path of walkTs(`${root}/${dir}`)) texts.push(await Deno.readTextFile(path));
  }
  const extra = PERMISSION_BY_API.filter(([pattern]) => texts.some((text) => pattern.test(text)))
    .map(([, permission]) => permission);
  return [...BASE_PERMISSIONS, ...new Set(extra)];
}

async function* walkTs(dir: string): AsyncGenerator<string> {
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) yield* walkTs(path);
    else if (entry.isFile && entry.name.endsWith(".ts")) yield path;
  }
}

export function compileArgs(target: string, output: string, permissions: string[]): string[] {
  return [
    "compile",
    "--unstable-kv",
    ...permissions,
    "--target",
    target,
    "--output",
    output,
    `${ROOT}/main.ts`,
  ];
}

/** One line saying why deno compile failed for `target`, from its stderr. */
export function describeCompileFailure(target: string, stderr: string, cachePath: string): string {
  const text = stderr; // Plain: deno compile runs with NO_COLOR.
  if (/Setting up base binary|dl\.deno\.land/.test(text)) {
    return `Cannot build ${target}: its base runtime denort-${target}.zip is not cached at ` +
      `"${cachePath}" and cannot be downloaded from dl.deno.land (no internet access?)`;
  }
  if (/Could not find denort/.test(text)) {
    return `Cannot build ${target}: DENORT_BIN does not name a readable file`;
  }
  const lines = text.split("\n").map((line) => line.trim()).filter((line) => line !== "");
  const error = lines.find((line) => line.startsWith("error:")) ?? lines.at(-1) ?? "no output";
  return `Cannot build ${target}: deno compile failed: ${error.replace(/^error:\s*/, "")}`;
}

const encoder = new TextEncoder();
function say(line: string): void {
  Deno.stderr.writeSync(encoder.encode(line + "\n"));
}

async function runDenoCompile(args: string[]): Promise<{ code: number; stderr: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), COMPILE_TIMEOUT_MS);
  try {
    const output = await child.output();
    const decoder = new TextDecoder();
    return { code: output.code, stderr: decoder.decode(output.stderr) };
  } finally {
    clearTimeout(timer);
  }
}

const USAGE = "Usage: deno task compile [--target all|host|TARGET[,TARGET]] [--allow-partial] " +
  "[--out-dir dist]";

function printHelp(): void {
  say(USAGE);
  say("  --target         all (default), host, or target names: " + TARGETS.join(", "));
  say("  --allow-partial  exit 0 when at least one target was built (default: every one)");
  say("  --out-dir        where the binaries go, relative to the repository (default dist)");
  say("  DENORT_BIN       base runtime to use offline; then only the host target is built");
}

/** With DENORT_BIN set, deno compile would wrap the host runtime for any --target: keep only
 * the host target, and say what is skipped. */
function applyDenortBin(targets: string[]): string[] {
  const denortBin = Deno.env.get("DENORT_BIN");
  if (denortBin === undefined || denortBin === "") return targets;
  const skipped = targets.filter((target) => target !== Deno.build.target);
  if (skipped.length > 0) {
    say(
      `DENORT_BIN is set ("${denortBin}"): deno compile uses it for every target, so only ` +
        `the host target ${Deno.build.target} is built; skipped: ${skipped.join(", ")}`,
    );
  }
  return [Deno.build.target];
}

/** A host binary must run: a DENORT_BIN that is a full deno, say, gives one that does not. */
async function smokeTest(output: string): Promise<string | undefined> {
  try {
    const result = await new Deno.Command(`${ROOT}/${output}`, {
      args: ["--help"],
      stdout: "piped",
      stderr: "null",
      signal: AbortSignal.timeout(30_000),
    }).output();
    const text = new TextDecoder().decode(result.stdout);
    if (result.code === 0 && text.startsWith("raftkv")) return undefined;
    return `the binary does not run raftkv (is DENORT_BIN a denort ${Deno.version.deno}?)`;
  } catch (error) {
    return `the binary does not start: ${(error as Error).message.split("\n")[0]}`;
  }
}

async function buildTarget(
  target: string,
  outDir: string,
  permissions: string[],
  cacheDir: string,
): Promise<boolean> {
  const output = outputPath(outDir, target);
  say(`Compiling ${target} → ${output}`);
  const result = await runDenoCompile(compileArgs(target, output, permissions));
  if (result.code !== 0) {
    say(describeCompileFailure(target, result.stderr, denortArchivePath(cacheDir, target)));
    return false;
  }
  if (target === Deno.build.target) {
    const problem = await smokeTest(output);
    if (problem !== undefined) {
      say(`Cannot build ${target}: ${problem}`);
      await Deno.remove(`${ROOT}/${output}`).catch(() => {});
      return false;
    }
  }
  return true;
}

async function compileAll(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      target: { type: "string", multiple: true },
      "allow-partial": { type: "boolean" },
      "out-dir": { type: "string", default: "dist" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) {
    printHelp();
    return 0;
  }
  const targets = applyDenortBin(selectTargets(values.target ?? [], Deno.build.target));
  const outDir = values["out-dir"].replace(/\/+$/, "");
  if (/^([A-Za-z]:)?[\\/]/.test(outDir)) throw new TypeError("--out-dir must be relative");
  await Deno.mkdir(`${ROOT}/${outDir}`, { recursive: true });
  const permissions = await neededPermissions(ROOT);
  const cacheDir = await denoDir() ?? "DENO_DIR";
  say(`Permissions: ${permissions.join(" ")} (and --unstable-kv)`);
  const built: string[] = [];
  const failed: string[] = [];
  for (const target of targets) {
    const ok = await buildTarget(target, outDir, permissions, cacheDir);
    (ok ? built : failed).push(target);
  }
  const names = built.length > 0 ? `: ${built.join(", ")}` : "";
  say(`Built ${built.length} of ${targets.length} targets into ${outDir}/${names}`);
  if (built.length === 0) return 1;
  if (failed.length > 0 && values["allow-partial"] !== true) {
    say(`Failing because ${failed.join(", ")} did not build: pass --allow-partial to accept this`);
    return 1;
  }
  return 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await compileAll(Deno.args));
  } catch (error) {
    say(`error: ${error instanceof Error ? error.message.split("\n")[0] : String(error)}`);
    Deno.exit(2);
  }
}
