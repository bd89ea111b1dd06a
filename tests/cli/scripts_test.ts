import assert from "node:assert/strict";
import { findBusyPort, nodeSpecs, parseClusterArgs, tryLines } from "../../scripts/cluster.ts";
import {
  compileArgs,
  describeCompileFailure,
  neededPermissions,
  outputPath,
  selectTargets,
  TARGETS,
} from "../../scripts/compile.ts";
import { denortArchivePath, hostCompileAvailability } from "../../scripts/compile_available.ts";

const ROOT = `${import.meta.dirname}/../..`;

Deno.test("cluster.ts gives every node the same --peers and its own port and dir", () => {
  const options = parseClusterArgs(["--nodes", "3", "--base-port", "3000", "--", "--id-x"]);
  assert(options !== "help");
  const specs = nodeSpecs({ ...options, main: "main.ts", extraArgs: [] });
  const peers = "http://127.0.0.1:3000,http://127.0.0.1:3001,http://127.0.0.1:3002";
  assert.deepEqual(specs.map((spec) => [spec.label, spec.port, spec.dir]), [
    ["n1", 3000, "data1"],
    ["n2", 3001, "data2"],
    ["n3", 3002, "data3"],
  ]);
  assert.deepEqual(specs[1].args, [
    "run",
    "-A",
    "main.ts",
    "--port",
    "3001",
    "--dir",
    "data2",
    "--peers",
    peers,
  ]);
  assert.deepEqual(options.extraArgs, ["--id-x"]);
  assert.equal(parseClusterArgs(["--help"]), "help");
  assert.throws(() => parseClusterArgs(["--nodes", "0"]), /--nodes/);
  assert.throws(() => parseClusterArgs(["--base-port", "65535", "--nodes", "2"]), /--base-port/);
  assert.throws(() => parseClusterArgs(["--bogus"]), /Usage: deno task cluster/);
  const lines = tryLines(specs, specs[1].url);
  assert(lines.some((line) => line.includes("consistency=stale")));
  assert(lines.every((line) => line.startsWith("curl ")));
});

Deno.test("cluster.ts findBusyPort() names a port that is taken", () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const port = (listener.addr as Deno.NetAddr).port;
    assert.equal(findBusyPort([port]), port);
  } finally {
    listener.close();
  }
});

/** A free run of `count` ports (cluster.ts needs consecutive ones). */
function freePorts(count: number): number {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 20_000);
    const ports = Array.from({ length: count }, (_, i) => base + i);
    if (findBusyPort(ports) === undefined) return base;
  }
  throw new Error("Cannot find free consecutive ports");
}

Deno.test("cluster.ts says a port is busy and exits non-zero", async () => {
  const base = freePorts(2);
  const listener = Deno.listen({ hostname: "127.0.0.1", port: base + 1 });
  try {
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--no-check", `${ROOT}/scripts/cluster.ts`, "--base-port", `${base}`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(output.code, 1);
    assert.match(
      new TextDecoder().decode(output.stderr),
      new RegExp(`Port ${base + 1} on 127.0.0.1 is busy`),
    );
  } finally {
    listener.close();
  }
});

Deno.test("cluster.ts starts a node, reports the leader and stops on SIGTERM", async () => {
  const dir = await Deno.makeTempDir();
  const base = freePorts(1);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-check", `${ROOT}/scripts/cluster.ts`, "--nodes", "1"].concat([
      "--base-port",
      `${base}`,
      "--dir-prefix",
      `${dir}/node`,
    ]),
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  try {
    let stdout = "";
    const decoder = new TextDecoder();
    const reader = child.stdout.getReader();
    while (!stdout.includes("Ctrl-C stops the cluster")) {
      const { value, done } = await reader.read();
      if (done) break;
      stdout += decoder.decode(value);
    }
    assert.match(stdout, new RegExp(`leader is http://127\\.0\\.0\\.1:${base}`));
    child.kill("SIGTERM");
    while (!(await reader.read()).done) { /* drain */ }
    const status = await child.status;
    assert.equal(status.code, 0);
    assert.match(await stderr, /\[n1\] raftkv \S+ serving on http:\/\/127\.0\.0\.1:\d+/);
  } finally {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
    await child.status;
    await stderr;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("compile.ts selects targets: all by default, host, or named ones", () => {
  const host = "x86_64-unknown-linux-gnu";
  assert.deepEqual(selectTargets([], host), [...TARGETS]);
  assert.deepEqual(selectTargets(["all"], host), [...TARGETS]);
  assert.deepEqual(selectTargets(["host"], host), [host]);
  assert.deepEqual(
    selectTargets(["host,aarch64-apple-darwin", "x86_64-unknown-linux-gnu"], host),
    [host, "aarch64-apple-darwin"],
  );
  assert.throws(() => selectTargets(["mips"], host), /Unknown target "mips"/);
  assert.equal(
    outputPath("dist", "x86_64-pc-windows-msvc"),
    "dist/raftkv-x86_64-pc-windows-msvc.exe",
  );
  assert.equal(outputPath("dist", "aarch64-apple-darwin"), "dist/raftkv-aarch64-apple-darwin");
});

Deno.test("compile.ts grants only the permissions raftkv uses", async () => {
  const permissions = await neededPermissions(ROOT);
  assert.deepEqual(permissions.slice(0, 3), ["--allow-net", "--allow-read", "--allow-write"]);
  assert(!permissions.includes("--allow-all") && !permissions.includes("-A"));
  const args = compileArgs("aarch64-apple-darwin", "dist/x", permissions);
  assert(args.includes("--unstable-kv"));
  assert.deepEqual(args.slice(args.indexOf("--target"), args.indexOf("--target") + 2), [
    "--target",
    "aarch64-apple-darwin",
  ]);
});

Deno.test("compile.ts explains a base runtime that cannot be downloaded in one line", () => {
  const stderr = "Compile main.ts\nDownload https://dl.deno.land/release/v2.9.6/" +
    "denort-x86_64-apple-darwin.zip\nerror: Writing deno compile executable\n\nCaused by:\n" +
    "    0: Setting up base binary.\n    1: error sending request: dns error\n";
  const line = describeCompileFailure("x86_64-apple-darwin", stderr, "/cache/x.zip");
  assert.match(line, /^Cannot build x86_64-apple-darwin: its base runtime .* not cached at/);
  assert(!line.includes("\n"));
  assert.equal(
    describeCompileFailure("t", "Check main.ts\nerror: Type checking failed.\n", "/c"),
    "Cannot build t: deno compile failed: Type checking failed.",
  );
});

Deno.test("compile_available.ts tells whether a host binary can be built, with a reason", async () => {
  const answer = await hostCompileAvailability({ probeNetwork: false });
  assert.equal(typeof answer.available, "boolean");
  assert(answer.reason.length > 0 && !answer.reason.includes("\n"));
  assert.match(
    denortArchivePath("/d", "aarch64-apple-darwin"),
    /^\/d\/dl\/release\/v\d+\.\d+\.\d+\/denort-aarch64-apple-darwin\.zip$/,
  );
});
