/** How --heartbeat-ms and --election-timeout-ms become the core's ticks. */
import assert from "node:assert/strict";
import { ticksFor } from "../../http/server.ts";

Deno.test("the defaults give 10 ms ticks: heartbeats every 10, elections after 100", () => {
  assert.deepEqual(ticksFor({ heartbeatIntervalMs: 100, electionTimeoutMs: 1000 }), {
    tickMs: 10,
    heartbeatIntervalTicks: 10,
    electionTimeoutTicks: 100,
  });
});

Deno.test("ticks keep the configured durations, down to 1 ms heartbeats", () => {
  for (
    const [heartbeatIntervalMs, electionTimeoutMs] of [[100, 1000], [50, 300], [30, 150], [5, 40], [
      1,
      10,
    ]]
  ) {
    const ticks = ticksFor({ heartbeatIntervalMs, electionTimeoutMs });
    assert(ticks.tickMs >= 1);
    const heartbeatMs = ticks.tickMs * ticks.heartbeatIntervalTicks;
    assert(Math.abs(heartbeatMs - heartbeatIntervalMs) <= ticks.tickMs / 2, `${heartbeatMs}`);
    const electionMs = ticks.tickMs * ticks.electionTimeoutTicks;
    assert(Math.abs(electionMs - electionTimeoutMs) <= ticks.tickMs / 2, `${electionMs}`);
    // Election timeouts are drawn among electionTimeoutTicks / 2 values: enough to differ.
    assert(ticks.electionTimeoutTicks >= 3 * ticks.heartbeatIntervalTicks);
  }
});
