/** Can `deno compile` build a raftkv binary for this machine right now? deno compile needs a
 * base runtime ("denort") for the target: the file named by DENORT_BIN, or a copy cached in
 * DENO_DIR/dl, or a download from dl.deno.land. Machines without internet access usually have
 * none of these, and an end-to-end test of the binary should then skip with this reason.
 *
 * `deno run -A scripts/compile_available.ts` prints the answer and exits 0 (yes) or 1 (no). */

const PROBE_TIMEOUT_MS = 3_000;

export interface CompileAvailability {
  available: boolean;
  /** One line: how the base runtime would be found, or why it cannot be. */
  reason: string;
  via?: "DENORT_BIN" | "cache" | "download";
}

/** Where deno compile looks for, and downloads, the base runtime of `target`. */
export function denortArchivePath(denoDir: string, target: string): string {
  return `${denoDir}/dl/release/v${Deno.version.deno}/denort-${target}.zip`;
}

export function denortDownloadUrl(target: string): string {
  return `https://dl.deno.land/release/v${Deno.version.deno}/denort-${target}.zip`;
}

/** Deno's cache directory, as `deno info` reports it (it honours DENO_DIR). */
export async function denoDir(): Promise<string | undefined> {
  try {
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json"],
      stdout: "piped",
      stderr: "null",
    }).output();
    const info: unknown = JSON.parse(new TextDecoder().decode(output.stdout));
    if (typeof info === "object" && info !== null && "denoDir" in info) {
      return typeof info.denoDir === "string" ? info.denoDir : undefined;
    }
  } catch {
    // Fall through: unknown, treated as "not cached".
  }
  return Deno.env.get("DENO_DIR");
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/** Whether the base runtime of `target` can be had without building anything. */
export async function compileAvailability(
  target: string,
  options: { probeNetwork?: boolean } = {},
): Promise<CompileAvailability> {
  const denortBin = Deno.env.get("DENORT_BIN");
  if (denortBin !== undefined && denortBin !== "") {
    if (target !== Deno.build.target) {
      return {
        available: false,
        reason: `DENORT_BIN is set: deno compile uses it for every target, so only the host ` +
          `target "${Deno.build.target}" can be built`,
      };
    }
    return await isFile(denortBin)
      ? { available: true, via: "DENORT_BIN", reason: `DENORT_BIN is "${denortBin}"` }
      : { available: false, reason: `DENORT_BIN is "${denortBin}", which is not a file` };
  }
  const dir = await denoDir();
  if (dir !== undefined && await isFile(denortArchivePath(dir, target))) {
    return {
      available: true,
      via: "cache",
      reason: `cached at "${denortArchivePath(dir, target)}"`,
    };
  }
  const url = denortDownloadUrl(target);
  if (options.probeNetwork ?? true) {
    try {
      const response = await fetch(url, {
        method: "HEAD",
        signal: AbortSignal.timeout(PROBE_TIMEOUT_MS),
      });
      await response.body?.cancel();
      if (response.ok) return { available: true, via: "download", reason: `downloadable ${url}` };
      return { available: false, reason: `not cached, and ${url} answers ${response.status}` };
    } catch (error) {
      const why = error instanceof Error ? error.message.split("\n")[0] : String(error);
      return {
        available: false,
        reason: `not cached in DENO_DIR and cannot download ${url} (${why}); set DENORT_BIN ` +
          `to a denort ${Deno.version.deno} binary to build offline`,
      };
    }
  }
  return { available: false, reason: `not cached in DENO_DIR, and the network was not probed` };
}

/** Whether a binary for this machine can be built right now. */
export function hostCompileAvailability(
  options: { probeNetwork?: boolean } = {},
): Promise<CompileAvailability> {
  return compileAvailability(Deno.build.target, options);
}

if (import.meta.main) {
  const answer = await hostCompileAvailability();
  const line = `${answer.available ? "yes" : "no"}: ${Deno.build.target}: ${answer.reason}\n`;
  Deno.stdout.writeSync(new TextEncoder().encode(line));
  Deno.exit(answer.available ? 0 : 1);
}
