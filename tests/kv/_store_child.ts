/**
 * Child process for dir lock tests.
 *   deno run -A tests/kv/_store_child.ts hold <dir>   opens the store, prints "locked", waits
 *   deno run -A tests/kv/_store_child.ts try <dir>    prints the outcome of openNodeStore as JSON
 */
import { openNodeStore } from "../../kv/mod.ts";

const [mode, dir] = Deno.args;
const print = (line: string) => Deno.stdout.writeSync(new TextEncoder().encode(line + "\n"));
if (mode === "hold") {
  await openNodeStore(dir);
  print("locked");
  await new Promise(() => {}); // until killed
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
