/**
 * Child process for crash tests: appends entries and saves snapshots in a loop, printing what
 * is durable, until its parent kills it with SIGKILL.
 *   deno run -A tests/kv/_storage_child.ts <db path>
 */
import { DenoKvStorage } from "../../kv/mod.ts";
import { command, patternBytes } from "./_helpers.ts";

export const SNAPSHOT_BYTES = 1_500_000;
const CONF = { members: [{ id: "n1", url: "http://127.0.0.1:1", voter: true }] };

if (import.meta.main) {
  const storage = await DenoKvStorage.open(Deno.args[0]);
  const state = await storage.load();
  let index = state.entries.at(-1)?.index ?? state.snapshot?.index ?? 0;
  const encoder = new TextEncoder();
  const print = (line: string) => Deno.stdout.writeSync(encoder.encode(line + "\n"));
  for (;;) {
    index += 1;
    await storage.append([command(index, 1)], { term: 1, vote: "n1", commit: index });
    print(`acked ${index}`);
    if (index % 3 === 0) {
      print(`saving ${index}`);
      const data = patternBytes(SNAPSHOT_BYTES, index);
      await storage.saveSnapshot({ metadata: { index, term: 1, confState: CONF }, data }, {
        discardLog: false,
      });
      print(`saved ${index}`);
    }
  }
}
