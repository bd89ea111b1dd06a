import assert from "node:assert/strict";
import { keyName, requestBytes, valueOf } from "../../scripts/bench.ts";
import { chunkedBodyEnd, HttpConnection, parseResponseHead } from "../../http/mod.ts";
import {
  type BenchReport,
  ErrorCounts,
  formatReport,
  LatencyHistogram,
  parseBenchArgs,
  parseMix,
  PhaseStats,
  UsageError,
} from "../../scripts/bench_stats.ts";

const ROOT = `${import.meta.dirname}/../..`;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Within `ratio` of the expected value (the histogram promises 1 %). */
function assertNear(actual: number, expected: number, ratio = 0.01): void {
  assert(
    Math.abs(actual - expected) <= expected * ratio,
    `${actual} is not within ${ratio * 100} % of ${expected}`,
  );
}

Deno.test("LatencyHistogram percentiles of a uniform distribution are within 1 %", () => {
  const histogram = new LatencyHistogram();
  for (let us = 1; us <= 100_000; us++) histogram.record(us);
  assertNear(histogram.percentileUs(50), 50_000);
  assertNear(histogram.percentileUs(90), 90_000);
  assertNear(histogram.percentileUs(99), 99_000);
  assertNear(histogram.percentileUs(99.9), 99_900);
  assert.equal(histogram.percentileUs(100), 100_000);
  assert.equal(histogram.percentileUs(0), 1);
  assertNear(histogram.meanUs(), 50_000.5, 1e-9);
});

Deno.test("LatencyHistogram percentiles of an exponential distribution are within 1 %", () => {
  const histogram = new LatencyHistogram();
  const meanUs = 2_000;
  const count = 200_000;
  // Exact quantiles of Exp(1/mean), spaced evenly: no randomness, so no flaky bounds.
  for (let i = 0; i < count; i++) histogram.record(-Math.log(1 - (i + 0.5) / count) * meanUs);
  for (const p of [50, 90, 99, 99.9]) {
    assertNear(histogram.percentileUs(p), -Math.log(1 - p / 100) * meanUs);
  }
  assertNear(histogram.meanUs(), meanUs, 0.01);
});

Deno.test("LatencyHistogram is exact for a constant and empty for no samples", () => {
  const empty = new LatencyHistogram();
  assert.equal(empty.percentileUs(99), 0);
  assert.equal(empty.summaryMs().p50Ms, 0);
  const constant = new LatencyHistogram();
  for (let i = 0; i < 1_000; i++) constant.record(1_234);
  assert.equal(constant.percentileUs(50), 1_234);
  assert.equal(constant.percentileUs(99.9), 1_234);
  assert.deepEqual(constant.summaryMs(), {
    count: 1_000,
    minMs: 1.234,
    meanMs: 1.234,
    p50Ms: 1.234,
    p90Ms: 1.234,
    p99Ms: 1.234,
    p999Ms: 1.234,
    maxMs: 1.234,
  });
});

Deno.test("LatencyHistogram merge() equals recording every sample in one histogram", () => {
  const [low, high, both] = [
    new LatencyHistogram(),
    new LatencyHistogram(),
    new LatencyHistogram(),
  ];
  for (let us = 1; us <= 1_000; us++) {
    low.record(us);
    high.record(us * 100);
    both.record(us);
    both.record(us * 100);
  }
  low.merge(high);
  assert.equal(low.count, 2_000);
  assert.deepEqual(low.summaryMs(), both.summaryMs());
  // Half the samples are at most 1 ms, so the median sits at the top of the low half.
  assertNear(low.percentileUs(50), 1_000);
  // A sample far out of range is kept in the last bucket, and max stays exact.
  low.record(5e12);
  assert.equal(low.percentileUs(100), 5e12);
});

Deno.test("PhaseStats counts answers by status and failures by kind", () => {
  const stats = new PhaseStats();
  const body = encoder.encode('{"error":"no leader"}');
  stats.record("write", { kind: "answer", status: 200, body: new Uint8Array() }, 1_000);
  stats.record("write", { kind: "answer", status: 503, body }, 2_000);
  stats.record("read", { kind: "timeout", detail: "" }, 5_000_000);
  stats.record("read", { kind: "network", detail: "ConnectionRefused" }, 10);
  stats.record("cas", { kind: "cut" }, 10);
  assert.equal(stats.requests, 4);
  assert.equal(stats.ok, 1);
  assert.deepEqual(stats.errors.toRecord(), { network: 1, "status 503": 1, timeout: 1 });
  assert.equal(stats.errorSample, 'write: 503 {"error":"no leader"}');
  assert.equal(stats.byOp.get("write")!.histogram.count, 2);
  assert.equal(stats.byOp.get("read")!.histogram.count, 0, "failures are not timed");
  assert.equal(stats.byOp.has("cas"), false, "a request cut by the end of a phase is not counted");
  const counts = new ErrorCounts();
  counts.merge(stats.errors);
  assert.equal(counts.total, 3);
});

Deno.test("parseBenchArgs() applies the documented defaults", () => {
  const options = parseBenchArgs([]);
  assert(options !== "help");
  assert.deepEqual(options, {
    connections: 16,
    durationSeconds: 10,
    warmupSeconds: 2,
    valueBytes: 100,
    keys: 1000,
    mix: { write: 50, read: 40, stale: 0, cas: 10 },
    consistency: "linearizable",
    servers: ["http://127.0.0.1:2020"],
    target: "all",
    params: "json",
    seed: true,
    timeoutMs: 5000,
    json: false,
  });
});

Deno.test("parseBenchArgs() reads every flag", () => {
  const options = parseBenchArgs([
    ...["-c", "64", "--duration", "2.5", "--warmup", "0", "--value-bytes", "10"],
    ...["--keys", "50", "--workload", "stale", "--consistency", "stale", "--target", "leader"],
    ...["--servers", "http://127.0.0.1:2021/, http://localhost:2022", "--params", "query"],
    ...["--no-seed", "--timeout-ms", "250", "--json"],
  ]);
  assert(options !== "help");
  assert.equal(options.connections, 64);
  assert.equal(options.durationSeconds, 2.5);
  assert.equal(options.warmupSeconds, 0);
  assert.equal(options.valueBytes, 10);
  assert.equal(options.keys, 50);
  assert.deepEqual(options.mix, { write: 0, read: 0, stale: 100, cas: 0 });
  assert.equal(options.consistency, "stale");
  assert.equal(options.target, "leader");
  assert.deepEqual(options.servers, ["http://127.0.0.1:2021", "http://localhost:2022"]);
  assert.equal(options.params, "query");
  assert.equal(options.seed, false);
  assert.equal(options.timeoutMs, 250);
  assert.equal(options.json, true);
  assert.equal(parseBenchArgs(["--help"]), "help");
  assert.equal(parseBenchArgs(["-h"]), "help");
});

Deno.test("parseBenchArgs() refuses bad flags with a UsageError naming the flag", () => {
  const bad: [string[], RegExp][] = [
    [["--bogus"], /Unknown option '--bogus'.*Usage: deno task bench/],
    [["-c", "0"], /Invalid value "0" for --connections/],
    [["-c", "1.5"], /--connections/],
    [["--duration", "x"], /Invalid value "x" for --duration/],
    [["--value-bytes", "600000"], /--value-bytes/],
    [["--workload", "delete"], /Invalid value "delete" for --workload/],
    [["--workload", "read", "--mix", "read=1"], /cannot be used together/],
    [["--consistency", "strong"], /--consistency/],
    [["--servers", "https://x:1"], /only http:\/\//],
    [["--servers", "nope"], /not a URL/],
    [["--servers", ","], /--servers: empty/],
    [["--target", "follower"], /--target/],
    [["--params", "form"], /--params/],
    [["--timeout-ms", "-1"], /--timeout-ms/],
    [["positional"], /Usage/],
  ];
  for (const [args, message] of bad) {
    assert.throws(() => parseBenchArgs(args), (error: Error) => {
      assert(error instanceof UsageError, `${args.join(" ")}: ${error}`);
      assert.match(error.message, message);
      return true;
    });
  }
});

Deno.test("parseMix() sums weights by operation and refuses unknown ones", () => {
  assert.deepEqual(parseMix("write=50,read=40,cas=10"), { write: 50, read: 40, stale: 0, cas: 10 });
  assert.deepEqual(parseMix(" stale = 1 , stale=2"), { write: 0, read: 0, stale: 3, cas: 0 });
  assert.throws(() => parseMix("delete=5"), /--mix/);
  assert.throws(() => parseMix("write=0"), /all weights are zero/);
  assert.throws(() => parseMix("write"), /--mix/);
});

Deno.test("requests use the keys, values and encodings of bench/wrk/kv.lua", () => {
  assert.equal(keyName(7, 1000), "k0007");
  assert.equal(keyName(7, 100_000), "k00007");
  assert.equal(valueOf(3, 100), `v0003-${"x".repeat(94)}`);
  assert.equal(valueOf(3, 4), "v000");
  const shape = {
    host: "127.0.0.1:2020",
    consistency: "linearizable" as const,
    params: "json" as const,
  };
  const text = (bytes: Uint8Array) => decoder.decode(bytes);
  assert.equal(
    text(requestBytes("write", "k1", "v", shape)),
    "POST /set HTTP/1.1\r\nHost: 127.0.0.1:2020\r\nContent-Type: application/json\r\n" +
      'Content-Length: 24\r\n\r\n{"key":"k1","value":"v"}',
  );
  assert.equal(
    text(requestBytes("cas", "k1", "v", { ...shape, params: "query" })),
    "POST /cas?key=k1&expected=v&value=v HTTP/1.1\r\nHost: 127.0.0.1:2020\r\nContent-Length: 0\r\n\r\n",
  );
  assert.equal(
    text(requestBytes("read", "k1", "", shape)),
    "GET /get?key=k1 HTTP/1.1\r\nHost: 127.0.0.1:2020\r\n\r\n",
  );
  assert.equal(
    text(requestBytes("read", "k1", "", { ...shape, consistency: "stale" })),
    text(requestBytes("stale", "k1", "", shape)),
  );
  assert.match(
    text(requestBytes("stale", "k1", "", shape)),
    /^GET \/get\?key=k1&consistency=stale /,
  );
});

Deno.test("parseResponseHead() and chunkedBodyEnd() find where an answer ends", () => {
  const head = encoder.encode("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nok");
  assert.deepEqual(parseResponseHead(head, head.length), {
    status: 200,
    headBytes: head.length - 2,
    contentLength: 2,
    chunked: false,
    close: false,
  });
  assert.equal(parseResponseHead(head, 20), undefined, "an incomplete head needs more bytes");
  const closing = encoder.encode("HTTP/1.1 503 x\r\nConnection: close\r\n\r\n");
  assert.equal(parseResponseHead(closing, closing.length)!.close, true);
  const bad = encoder.encode("SSH-2.0\r\n\r\n");
  assert.throws(() => parseResponseHead(bad, bad.length), /Invalid status line/);
  const chunked = encoder.encode("5\r\nhello\r\n1;ext=1\r\n!\r\n0\r\nTrailer: x\r\n\r\n");
  assert.equal(chunkedBodyEnd(chunked, 0, chunked.length), chunked.length);
  assert.equal(chunkedBodyEnd(chunked, 0, chunked.length - 1), -1);
  assert.equal(chunkedBodyEnd(chunked, 0, 6), -1);
  assert.throws(() => chunkedBodyEnd(encoder.encode("zz\r\n"), 0, 4), /Invalid chunk size/);
});

Deno.test("HttpConnection reads chunked and sized answers on one keep-alive connection", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const answers = [
    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
    "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    "HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope",
  ];
  const served = (async () => {
    const conn = await listener.accept();
    const buffer = new Uint8Array(4096);
    for (const answer of answers) {
      await conn.read(buffer);
      // Split the answer in two writes: the client must reassemble it.
      const bytes = encoder.encode(answer);
      await conn.write(bytes.subarray(0, 30));
      await new Promise((resolve) => setTimeout(resolve, 20));
      await conn.write(bytes.subarray(30));
    }
    conn.close();
  })();
  const connection = new HttpConnection(`http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`);
  try {
    const request = encoder.encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    const first = await connection.exchange(request);
    assert.equal(first.status, 200);
    assert.equal(decoder.decode(first.body), "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
    const second = await connection.exchange(request);
    assert.equal(second.status, 404);
    assert.equal(decoder.decode(second.body), "nope");
    await served;
  } finally {
    connection.close();
    listener.close();
  }
});

Deno.test("formatReport() prints one row per operation and the errors", () => {
  const stats = new PhaseStats();
  stats.record("read", { kind: "answer", status: 200, body: new Uint8Array() }, 1_500);
  stats.record("read", { kind: "timeout", detail: "" }, 5_000_000);
  const report: BenchReport = {
    servers: ["http://127.0.0.1:2020"],
    target: "all",
    connections: 1,
    durationSeconds: 1,
    warmupSeconds: 0,
    keys: 10,
    valueBytes: 100,
    mix: { write: 0, read: 1, stale: 0, cas: 0 },
    consistency: "linearizable",
    params: "json",
    timeoutMs: 5000,
    seed: null,
    elapsedSeconds: 1,
    requests: 2,
    ok: 1,
    errors: 1,
    requestsPerSecond: 2,
    okPerSecond: 1,
    latencyMs: stats.byOp.get("read")!.histogram.summaryMs(),
    ops: {},
    errorsByKind: stats.errors.toRecord(),
    errorSample: stats.errorSample ?? null,
    generatorCpuPercent: 3,
  };
  const text = formatReport(report);
  assert.match(text, /^all +2 +1 +1\.0 +1\.50 /m);
  assert.match(text, /errors: timeout: 1/);
  assert.match(text, /generator CPU: 3 %/);
});

// ---------------------------------------------------------------------------------------------
// A short run against a real one-node raftkv.

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

async function waitReady(url: string, timeoutMs: number): Promise<void> {
  const untilMs = Date.now() + timeoutMs;
  while (Date.now() < untilMs) {
    try {
      const response = await fetch(`${url}/ready`);
      await response.body?.cancel();
      if (response.ok) return;
    } catch {
      // Not listening yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`Node "${url}" was not ready within ${timeoutMs} ms`);
}

async function runBenchProcess(
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}/scripts/bench.ts`, ...args],
    stdin: "null",
  }).output();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

Deno.test("bench runs 2 s at c=4 against a one-node raftkv and prints one JSON object", async () => {
  const dir = await Deno.makeTempDir({ prefix: "raftkv_bench_test_" });
  const port = freePort();
  const url = `http://127.0.0.1:${port}`;
  const node = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}/main.ts`, "--port", String(port), "--dir", `${dir}/data`],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    await waitReady(url, 20_000);
    const args = [
      "--servers",
      url,
      "-c",
      "4",
      "--duration",
      "2",
      "--warmup",
      "0.5",
      "--keys",
      "100",
    ];
    const run = await runBenchProcess([...args, "--json", "--timeout-ms", "3000"]);
    assert.equal(run.code, 0, run.stderr);
    const report = JSON.parse(run.stdout) as BenchReport;
    assert.deepEqual(report.seed?.ok, 100, "seeding wrote every key");
    assert.equal(report.connections, 4);
    assert.equal(report.elapsedSeconds, 2);
    assert(report.ok > 0, "some requests succeeded");
    assert.equal(report.errors, 0, JSON.stringify(report.errorsByKind) + report.errorSample);
    assert.equal(report.requests, report.ok);
    assert.deepEqual(Object.keys(report.ops).sort(), ["cas", "read", "write"]);
    assert(report.latencyMs.p50Ms > 0 && report.latencyMs.p50Ms <= report.latencyMs.p99Ms);
    assert(report.latencyMs.p99Ms <= report.latencyMs.p999Ms);
    assert(report.latencyMs.p999Ms <= report.latencyMs.maxMs);
    assert.equal(report.latencyMs.count, report.requests);
    assert(report.okPerSecond > 0);
    assert.match(run.stderr, /bench measure 1s: \d+ req\/s, 0 errors/);
  } finally {
    node.kill("SIGKILL");
    await node.status;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bench exits 3 when no server is reachable and 2 on a usage error", async () => {
  const closed = `http://127.0.0.1:${freePort()}`;
  const unreachable = await runBenchProcess(["--servers", closed, "--duration", "1"]);
  assert.equal(unreachable.code, 3);
  assert.match(unreachable.stderr, /No server reachable/);
  const usage = await runBenchProcess(["-c", "zero"]);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /Invalid value "zero" for --connections/);
});
