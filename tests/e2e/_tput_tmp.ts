import { Cluster, mapConcurrent } from "./_harness.ts";
const N = Number(Deno.args[0] ?? 20000);
const cluster = await Cluster.start(3, { extraArgs: ["--snapshot-entries", "1000", "--log-level", "warn"] });
try {
  const leader = await cluster.leader();
  const t0 = performance.now();
  let done = 0;
  const keys = Array.from({ length: N }, (_, i) => i);
  await mapConcurrent(keys, 64, async (i) => {
    for (;;) {
      const r = await fetch(`${leader.url}/set?key=k${i % 5000}&value=v${i}`, { method: "POST" });
      await r.text();
      if (r.status === 200) break;
      console.log("status", r.status);
    }
    done++;
    if (done % 5000 === 0) console.log(done, ((performance.now() - t0) / 1000).toFixed(1), JSON.stringify((await leader.status()).logEntries));
  });
  console.log("total s", ((performance.now() - t0) / 1000).toFixed(1));
  for (const n of cluster.nodes) { const s = await n.status(); console.log(s.logEntries, s.snapshotIndex, s.snapshotBytes, s.appliedIndex); }
} finally { await cluster.destroy(); }
