import { checkHistory } from "./tests/linearizability/checker.ts";
const text = await Deno.readTextFile(Deno.args[0]);
const history = JSON.parse(text.slice(text.indexOf("\n\n") + 2));
const t = performance.now();
const r = checkHistory(history, { timeMaxMs: 60_000 });
console.log(r.result, (performance.now() - t).toFixed(0), "ms", r.states, r.result === "illegal" ? r.report : (r as any).reason ?? "");
