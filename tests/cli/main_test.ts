import assert from "node:assert/strict";
import {
  describeServeError,
  exitCodeFor,
  type Io,
  main,
  memberLines,
  serveErrorExitCode,
  statusLines,
} from "../../main.ts";
import { closedPortUrl, type FakeServer, json, startFakeServer } from "./fake_server.ts";

function recordingIo(): Io & { out: (line: string) => void; stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { stdout, stderr, out: (line) => stdout.push(line), err: (line) => stderr.push(line) };
}

/** A fake node that implements just enough of API.md for the client subcommands. */
function startFakeNode(): FakeServer {
  const data = new Map<string, string>([["x", "42"]]);
  return startFakeServer((request) => {
    const body = (typeof request.body === "object" ? request.body : {}) as Record<string, string>;
    switch (request.path) {
      case "/get": {
        const value = data.get(request.query.key);
        return value === undefined
          ? json({ error: "key not found", key: request.query.key }, 404)
          : json({ key: request.query.key, value, index: 3 });
      }
      case "/set":
        data.set(body.key, body.value);
        return json({ ok: true, index: 4 });
      case "/cas": {
        const current = data.get(body.key) ?? null;
        if (current !== (body.expected ?? null)) {
          return json({ ok: false, error: "compare failed", current }, 409);
        }
        data.set(body.key, body.value);
        return json({ ok: true, index: 5 });
      }
      case "/status":
        return json({
          id: "n1",
          role: "leader",
          term: 2,
          leader: "n1",
          members: [{ id: "n1", url: "http://127.0.0.1:2020", voter: true, matchIndex: 5 }, {
            id: "n2",
            url: "http://127.0.0.1:2021",
            voter: false,
          }],
        });
      default:
        return json({ error: "bad request" }, 400);
    }
  });
}

async function run(args: string[]): Promise<{ code: number; stdout: string[]; stderr: string[] }> {
  const io = recordingIo();
  const code = await main(args, io);
  return { code, stdout: io.stdout, stderr: io.stderr };
}

Deno.test("raftkv get prints the bare value; a missing key exits 1", async () => {
  const node = startFakeNode();
  try {
    assert.deepEqual(await run(["get", "x", "--server", node.url]), {
      code: 0,
      stdout: ["42"],
      stderr: [],
    });
    assert.deepEqual(await run(["get", "nope", "--server", node.url]), {
      code: 1,
      stdout: [],
      stderr: ['error: Key "nope" not found'],
    });
    const raw = await run(["get", "x", "--json", "--server", node.url]);
    assert.deepEqual(JSON.parse(raw.stdout[0]), { key: "x", value: "42", index: 3 });
  } finally {
    await node.close();
  }
});

Deno.test("raftkv set and cas print OK; a failed compare exits 1", async () => {
  const node = startFakeNode();
  try {
    assert.deepEqual((await run(["set", "k", "v", "--server", node.url])).stdout, [
      "OK (index 4)",
    ]);
    assert.equal((await run(["cas", "k", "v", "w", "--server", node.url])).code, 0);
    const failed = await run(["cas", "k", "v", "w", "--server", node.url]);
    assert.equal(failed.code, 1);
    assert.deepEqual(failed.stderr, ['error: Compare failed: current value is "w"']);
    const absent = await run(["cas", "k", "z", "--absent", "--server", node.url]);
    assert.equal(absent.code, 1);
    assert.equal((await run(["cas", "new", "z", "--absent", "--server", node.url])).code, 0);
  } finally {
    await node.close();
  }
});

Deno.test("raftkv fails over to the next --server and exits 3 when none answers", async () => {
  const node = startFakeNode();
  try {
    const servers = `${closedPortUrl()},${node.url}`;
    assert.equal((await run(["get", "x", "--server", servers])).code, 0);
    const down = await run(["get", "x", "--server", closedPortUrl()]);
    assert.equal(down.code, 3);
    assert.equal(down.stderr.length, 1);
    assert.match(down.stderr[0], /^error: Cannot reach any raftkv server: /);
  } finally {
    await node.close();
  }
});

Deno.test("raftkv exits 3 on 503 and 504, 2 on 400, 1 on 500", async () => {
  let status = 503;
  const node = startFakeServer(() => json({ error: "no leader" }, status));
  try {
    for (const [answer, code] of [[503, 3], [504, 3], [400, 2], [413, 2], [500, 1]]) {
      status = answer;
      const result = await run(["set", "k", "v", "--server", node.url]);
      assert.equal(result.code, code, `HTTP ${answer}`);
      assert.equal(result.stderr.length, 1);
      assert.match(result.stderr[0], new RegExp(`HTTP ${answer} from ${node.url}`));
    }
  } finally {
    await node.close();
  }
  assert.equal(exitCodeFor(200), 0);
  assert.equal(exitCodeFor(404), 1);
  assert.equal(exitCodeFor(409), 1);
});

Deno.test("raftkv status and members print aligned tables", async () => {
  const node = startFakeNode();
  try {
    const status = await run(["status", "--server", node.url]);
    assert.equal(status.code, 0);
    assert.deepEqual(status.stdout.slice(0, 4), [
      "id      n1",
      "role    leader",
      "term    2",
      "leader  n1",
    ]);
    const members = await run(["members", "--server", node.url]);
    assert.deepEqual(members.stdout, [
      "ID  URL                    VOTER  MATCH INDEX",
      "n1  http://127.0.0.1:2020  true   5",
      "n2  http://127.0.0.1:2021  false  -",
    ]);
  } finally {
    await node.close();
  }
  assert.deepEqual(memberLines(undefined), ["(no members)"]);
  assert.deepEqual(statusLines({ a: 1, long: "x" }), ["a     1", "long  x"]);
});

Deno.test("serve errors become one line and the documented exit code", () => {
  const options = {
    port: 2020,
    host: "127.0.0.1",
    dir: "d",
    electionTimeoutMs: 1000,
    heartbeatIntervalMs: 100,
    requestTimeoutMs: 5000,
    snapshotEntries: 10000,
    logLevel: "info" as const,
    logFormat: "text" as const,
  };
  const inUse = new Deno.errors.AddrInUse("Address already in use (os error 98)");
  assert.equal(
    describeServeError(inUse, options),
    "Cannot listen on 127.0.0.1:2020: address in use",
  );
  assert.equal(serveErrorExitCode(inUse), 1);
  const mismatch = Object.assign(new Error('Cannot start: --dir belongs to node "n2"\nmore'), {
    name: "IdentityMismatchError",
  });
  assert.equal(serveErrorExitCode(mismatch), 2);
  assert.equal(describeServeError(mismatch, options), 'Cannot start: --dir belongs to node "n2"');
  assert.equal(serveErrorExitCode(Object.assign(new Error("x"), { name: "UsageError" })), 2);
  assert.equal(serveErrorExitCode(Object.assign(new Error("x"), { name: "DirLockedError" })), 1);
  assert.equal(serveErrorExitCode(new Error("boom")), 1);
});

const MAIN = `${import.meta.dirname}/../../main.ts`;

async function runProcess(args: string[]): Promise<{ code: number; stderr: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-check", MAIN, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  return { code: output.code, stderr: new TextDecoder().decode(output.stderr) };
}

Deno.test("main.ts --port -5 exits 2 with one line on stderr", async () => {
  const { code, stderr } = await runProcess(["--port", "-5"]);
  assert.equal(code, 2);
  assert.equal(
    stderr,
    'error: Invalid value "-5" for --port: expected an integer from 0 to 65535\n',
  );
});

Deno.test("main.ts get exits 3 when nothing listens on --server", async () => {
  const { code, stderr } = await runProcess(["get", "x", "--server", "http://127.0.0.1:1"]);
  assert.equal(code, 3);
  assert.equal(stderr.trimEnd().split("\n").length, 1, stderr);
  assert.match(stderr, /^error: Cannot reach any raftkv server: http:\/\/127\.0\.0\.1:1 /);
});

Deno.test("main.ts on a port in use exits 1 with one clear line", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const dir = await Deno.makeTempDir();
  try {
    const port = (listener.addr as Deno.NetAddr).port;
    const { code, stderr } = await runProcess(["--port", `${port}`, "--dir", `${dir}/data`]);
    assert.equal(code, 1);
    assert.match(
      stderr,
      new RegExp(`^error: Cannot listen on 127\\.0\\.0\\.1:${port}: address in use$`, "m"),
    );
    assert(!/^\s+at /m.test(stderr), "no stack trace");
  } finally {
    listener.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main.ts serves, says where, and exits 0 after SIGTERM", async () => {
  const dir = await Deno.makeTempDir();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-check", MAIN, "--port", "0", "--dir", `${dir}/data`],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  try {
    const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let stderr = "";
    while (!/serving on http:\/\/127\.0\.0\.1:\d+\n/.test(stderr)) {
      const { value, done } = await reader.read();
      if (done) break;
      stderr += value;
    }
    assert.match(stderr, /^raftkv \S+ serving on http:\/\/127\.0\.0\.1:[1-9]\d*$/m);
    child.kill("SIGTERM");
    while (!(await reader.read()).done) { /* drain */ }
    assert.equal((await child.status).code, 0);
  } finally {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
    await child.status;
    await Deno.remove(dir, { recursive: true });
  }
});
