/**
 * The compiled binary runs raftkv like `deno run main.ts` does: three nodes from one binary,
 * a write on the leader, the read on a follower. deno compile needs a base runtime (denort)
 * for the host; without one (offline, no cache, no DENORT_BIN) the test is skipped and says why.
 */
import assert from "node:assert/strict";
import { compileArgs, describeCompileFailure, neededPermissions } from "../../scripts/compile.ts";
import {
  denoDir,
  denortArchivePath,
  hostCompileAvailability,
} from "../../scripts/compile_available.ts";
import { freePort, NodeProcess, waitFor, waitReady } from "./_harness.ts";

// deno-lint-ignore no-console
const print = console.log;

const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
const COMPILE_TIMEOUT_MS = 5 * 60_000;
const target = Deno.build.target;

const availability = await hostCompileAvailability();
if (!availability.available) {
  const denortBin = Deno.env.get("DENORT_BIN");
  print(
    `skipped: deno compile cannot build a raftkv binary for ${target} on this machine ` +
      `(${denortBin ? `DENORT_BIN is "${denortBin}"` : "DENORT_BIN is not set"}): ` +
      availability.reason,
  );
}

async function compile(output: string): Promise<void> {
  const args = compileArgs(target, output, await neededPermissions(ROOT));
  const result = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
    signal: AbortSignal.timeout(COMPILE_TIMEOUT_MS),
  }).output();
  const stderr = new TextDecoder().decode(result.stderr);
  if (result.code !== 0) {
    const cache = denortArchivePath(await denoDir() ?? "DENO_DIR", target);
    throw new Error(`${describeCompileFailure(target, stderr, cache)}\n${stderr}`);
  }
}

Deno.test({
  name: `the compiled binary for ${target} runs a 3-node cluster`,
  ignore: !availability.available,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "raftkv-e2e-binary-" });
    const binary = `${root}/raftkv${Deno.build.os === "windows" ? ".exe" : ""}`;
    const ports = [freePort(), freePort(), freePort()];
    const peers = ports.map((port) => `http://127.0.0.1:${port}`).join(",");
    const nodes = ports.map((port, i) =>
      new NodeProcess({ port, dir: `${root}/node${i + 1}`, args: ["--peers", peers] })
    );
    try {
      const startedAtMs = Date.now();
      await compile(binary);
      print(`compiled ${binary} (${availability.reason}) in ${Date.now() - startedAtMs} ms`);

      const help = await new Deno.Command(binary, { args: ["--help"], stdout: "piped" }).output();
      const helpText = new TextDecoder().decode(help.stdout);
      assert.equal(help.code, 0, helpText);
      assert.match(helpText, /^raftkv/, "the binary does not run raftkv (is DENORT_BIN a denort?)");

      for (const node of nodes) node.start([binary]);
      const leader = await waitFor("a leader among the compiled nodes", async () => {
        for (const node of nodes) {
          const status = await node.status().catch(() => undefined);
          if (status?.role === "leader") return node;
        }
        return undefined;
      }, { timeoutMs: 60_000 });
      const follower = nodes.find((node) => node !== leader)!;
      await waitReady(follower);

      const write = await leader.client().set("compiled", "works");
      assert.equal(write.status, 200, JSON.stringify(write.body));
      const read = await follower.client().get("compiled");
      assert.equal(read.status, 200, JSON.stringify(read.body));
      assert.equal(read.value, "works");
      const local = await follower.client().get("compiled", {
        consistency: "stale",
        minIndex: write.writeIndex!,
      });
      assert.equal(local.value, "works");
    } catch (error) {
      for (const node of nodes) print(`--- ${node.url}\n${node.output.slice(-4000)}`);
      throw error;
    } finally {
      await Promise.all(nodes.map((node) => node.kill()));
      await Deno.remove(root, { recursive: true }).catch(() => {});
    }
  },
});
