import { Cluster } from "./tests/e2e/_harness.ts";
const c = await Cluster.start(3, { extraArgs: ["--request-timeout-ms", "2000"] });
try {
  const leader = await c.leader();
  const f = c.followers(leader)[0];
  await leader.kill();
  for (let i = 0; i < 8; i++) {
    const t = performance.now();
    try {
      const r = await f.client(3000).set("a", String(i));
      console.log(i, (performance.now()-t).toFixed(0), r.status, JSON.stringify(r.body));
    } catch (e) { console.log(i, "err", String(e)); }
    await new Promise(r => setTimeout(r, 200));
  }
} finally { console.log(c.nodes.map(n=>n.output.split("\n").filter(l=>/relay/.test(l)).slice(0,2).join("\n")).join("\n")); await c.destroy(); }
