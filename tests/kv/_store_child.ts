/**
 * Child process for dir lock tests.
 *   deno run -A tests/kv/_store_child.ts hold <dir>   opens the store, prints "locked", waits
 *   deno run -A tests/kv/_store_child.ts try <dir>    prints the outcome of openNodeStore as JSON
 */
import { openNodeStore } from "../../kv/mod.ts";

const [mode, dir] = Deno.args;
const print = (line: string) => Deno.stdout.writeSync(new TextEncoder().encode(line + "\n"));
if (mode === "hold") {
  const store = await openNodeStore(dir);
  print("locked");
  // A pending timer keeps the process alive (an unresolved promise alone would let it exit).
  setInterval(() => void store, 60_000);
} else {
  try {
    const store = await openNodeStore(dir);
    await store.close();
    print(JSON.stringify({ ok: true }));
  } catch (error) {
    const { name, message } = error as Error;
    print(JSON.stringify({ ok: false, name, message }));
  }
}
