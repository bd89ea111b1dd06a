import assert from "node:assert/strict";
import { FLAGS, helpText, parseCommandLine, UsageError } from "../../http/cli_args.ts";
import type { ServeOptions } from "../../http/mod.ts";

function serveOptions(args: string[]): ServeOptions {
  const parsed = parseCommandLine(args);
  assert.equal(parsed.kind, "serve");
  return parsed.options;
}

function usageError(args: string[]): string {
  try {
    parseCommandLine(args);
  } catch (error) {
    assert(error instanceof UsageError, `expected a UsageError for ${JSON.stringify(args)}`);
    assert(!error.message.includes("\n"), "a usage error is one line");
    return error.message;
  }
  throw new assert.AssertionError({ message: `no error for ${JSON.stringify(args)}` });
}

Deno.test("parseCommandLine() fills every serve default", () => {
  assert.deepEqual(serveOptions([]), {
    port: 2020,
    host: "127.0.0.1",
    dir: "./data",
    electionTimeoutMs: 1000,
    heartbeatIntervalMs: 100,
    requestTimeoutMs: 5000,
    snapshotEntries: 10000,
    snapshotBytes: 67108864,
    logLevel: "info",
    logFormat: "text",
  });
  assert.equal(parseCommandLine(["serve"]).kind, "serve");
});

Deno.test("parseCommandLine() reads every serve flag", () => {
  const options = serveOptions([
    "serve",
    "--port=0",
    "--dir",
    "data1",
    "--host",
    "0.0.0.0",
    "--advertise",
    "http://node1.local:2020/",
    "--peers",
    "n1=http://127.0.0.1:2020, n2=http://127.0.0.1:2021,n3=https://10.0.0.3:2022",
    "--id",
    "n1",
    "--election-timeout-ms",
    "300",
    "--heartbeat-ms",
    "100",
    "--request-timeout-ms",
    "2000",
    "--snapshot-entries",
    "50",
    "--log-level",
    "debug",
    "--log-format",
    "json",
    "--snapshot-bytes",
    "4096",
  ]);
  assert.deepEqual(options, {
    port: 0,
    host: "0.0.0.0",
    dir: "data1",
    advertise: "http://node1.local:2020",
    peers: "n1=http://127.0.0.1:2020,n2=http://127.0.0.1:2021,n3=https://10.0.0.3:2022",
    id: "n1",
    electionTimeoutMs: 300,
    heartbeatIntervalMs: 100,
    requestTimeoutMs: 2000,
    snapshotEntries: 50,
    snapshotBytes: 4096,
    logLevel: "debug",
    logFormat: "json",
  });
  assert.equal(serveOptions(["--join", "http://127.0.0.1:2020"]).join, "http://127.0.0.1:2020");
  assert.equal(
    serveOptions(["--peers", "http://127.0.0.1:2020,http://127.0.0.1:2021"]).peers,
    "http://127.0.0.1:2020,http://127.0.0.1:2021",
  );
});

Deno.test("parseCommandLine() refuses every bad serve flag with a clear UsageError", () => {
  const cases: [string[], RegExp][] = [
    [["--port", "-5"], /Invalid value "-5" for --port: expected an integer from 0 to 65535/],
    [["--port", "65536"], /--port/],
    [["--port", "abc"], /Invalid value "abc" for --port/],
    [["--port", "20.5"], /--port/],
    [["--port"], /Flag "--port" needs a value/],
    [["--election-timeout-ms", "0"], /--election-timeout-ms: expected an integer of at least 1/],
    [["--heartbeat-ms", "-1"], /--heartbeat-ms/],
    [["--request-timeout-ms", "soon"], /--request-timeout-ms/],
    [["--snapshot-entries", "0"], /--snapshot-entries/],
    [["--heartbeat-ms", "400"], /--election-timeout-ms \(1000\) must be at least 3 times/],
    [["--log-level", "loud"], /Invalid value "loud" for --log-level/],
    [["--log-format", "xml"], /--log-format/],
    [["--advertise", "127.0.0.1:2020"], /Invalid URL "127.0.0.1:2020" for --advertise/],
    [["--advertise", "ftp://x"], /expected an http or https URL/],
    [["--join", "nope"], /--join/],
    [["--peers", "http://a:1,ftp://b:2"], /Invalid URL "ftp:\/\/b:2" for --peers/],
    [["--peers", "bad id=http://a:1"], /Invalid node id "bad id"/],
    [["--peers", ","], /no peer listed/],
    [["--peers", "http://a:1", "--join", "http://b:1"], /cannot be used together/],
    [["--id", "a b"], /Invalid node id "a b" in --id/],
    [["--dir", ""], /--dir/],
    [["--bogus"], /Unknown flag "--bogus"/],
    [["--server", "http://x:1"], /Flag "--server" does not apply to "serve"/],
    [["--json"], /Flag "--json" does not apply/],
    [["serve", "extra"], /Unexpected argument "extra"/],
    [["frobnicate"], /Unknown command "frobnicate"/],
  ];
  for (const [args, expected] of cases) {
    assert.match(usageError(args), expected, JSON.stringify(args));
  }
});

Deno.test("parseCommandLine() reads client subcommands", () => {
  const client = (args: string[]) => {
    const parsed = parseCommandLine(args);
    assert.equal(parsed.kind, "client");
    return parsed.invocation;
  };
  assert.deepEqual(client(["get", "x"]), {
    command: { type: "get", key: "x", consistency: "linearizable", minIndex: undefined },
    servers: ["http://127.0.0.1:2020"],
    json: false,
    timeoutMs: 10000,
  });
  assert.deepEqual(client(["get", "x", "--min-index", "7"]).command, {
    type: "get",
    key: "x",
    consistency: "stale",
    minIndex: 7,
  });
  assert.deepEqual(client(["get", "x", "--consistency", "stale"]).command, {
    type: "get",
    key: "x",
    consistency: "stale",
    minIndex: undefined,
  });
  assert.deepEqual(
    client(["set", "k", "v", "--server", "http://a:1,http://b:2/", "--server", "https://c:3"])
      .servers,
    ["http://a:1", "http://b:2", "https://c:3"],
  );
  assert.deepEqual(client(["set", "k", "--", "-1"]).command, {
    type: "set",
    key: "k",
    value: "-1",
  });
  assert.deepEqual(client(["cas", "k", "old", "new"]).command, {
    type: "cas",
    key: "k",
    expected: "old",
    value: "new",
  });
  assert.deepEqual(client(["cas", "k", "new", "--absent"]).command, {
    type: "cas",
    key: "k",
    expected: null,
    value: "new",
  });
  assert.deepEqual(client(["delete", "k", "--json"]).json, true);
  assert.deepEqual(client(["status"]).command, { type: "status" });
  assert.deepEqual(client(["members"]).command, { type: "members" });
  assert.deepEqual(client(["members", "add", "http://127.0.0.1:2023"]).command, {
    type: "membersAdd",
    url: "http://127.0.0.1:2023",
  });
  assert.deepEqual(client(["members", "remove", "n4"]).command, {
    type: "membersRemove",
    id: "n4",
  });
  assert.deepEqual(client(["leader", "transfer", "n2"]).command, {
    type: "leaderTransfer",
    id: "n2",
  });
  assert.deepEqual(client(["snapshot", "--timeout-ms", "500"]).timeoutMs, 500);
});

Deno.test("parseCommandLine() refuses bad client command lines with a clear UsageError", () => {
  const cases: [string[], RegExp][] = [
    [["get"], /Invalid use of get: missing argument; usage: raftkv get KEY/],
    [["get", "a", "b"], /unexpected argument "b"/],
    [["get", ""], /the key is empty/],
    [["set", "k"], /Invalid use of set: missing argument/],
    [["cas", "k", "v"], /Invalid use of cas: missing argument/],
    [["cas", "k", "a", "b", "--absent"], /unexpected argument "b"/],
    [["get", "k", "--consistency", "eventual"], /Invalid value "eventual" for --consistency/],
    [["get", "k", "--min-index", "-1"], /--min-index: expected a non-negative integer/],
    [["set", "k", "v", "--consistency", "stale"], /"--consistency" applies only to "get"/],
    [["set", "k", "v", "--absent"], /"--absent" applies only to "cas"/],
    [["get", "k", "--server", "localhost:2020"], /Invalid URL "localhost:2020" for --server/],
    [["get", "k", "--server", ","], /no URL given/],
    [["get", "k", "--timeout-ms", "0"], /--timeout-ms/],
    [["members", "add"], /Invalid use of members/],
    [["members", "add", "not a url"], /Invalid URL "not a url" for members add/],
    [["leader", "n2"], /Invalid use of leader/],
    [["status", "extra"], /unexpected argument "extra"/],
    [["get", "k", "--dir", "x"], /Flag "--dir" does not apply to "get"/],
  ];
  for (const [args, expected] of cases) {
    assert.match(usageError(args), expected, JSON.stringify(args));
  }
});

Deno.test("--help lists every flag of FLAGS with its default", () => {
  assert.deepEqual(parseCommandLine(["--help"]), { kind: "help" });
  assert.deepEqual(parseCommandLine(["-h"]), { kind: "help" });
  assert.deepEqual(parseCommandLine(["help"]), { kind: "help" });
  assert.deepEqual(parseCommandLine(["get", "--help"]), { kind: "help" });
  const text = helpText();
  for (const flag of FLAGS) {
    assert(text.includes(`--${flag.name}`), `--help lists --${flag.name}`);
    if (flag.default !== undefined) {
      assert(
        text.includes(`(default ${flag.default})`),
        `--help shows the default of ${flag.name}`,
      );
    }
  }
  for (
    const command of ["get", "set", "cas", "delete", "status", "members", "leader", "snapshot"]
  ) {
    assert(text.includes(`raftkv ${command}`), `--help shows how to use ${command}`);
  }
});
