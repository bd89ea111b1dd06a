/** raftkv's command line: `raftkv [serve]` runs a node; get, set, cas, delete, status, members,
 * leader and snapshot talk to one. Every failure is one line on stderr and an exit code:
 * 0 ok, 1 key not found / compare failed / other error, 2 usage, 3 unavailable. */

import {
  type ClientInvocation,
  helpText,
  parseCommandLine,
  RaftkvClient,
  type RaftkvResponse,
  type RunningServer,
  serve,
  type ServeOptions,
  UnavailableError,
} from "./http/mod.ts";

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
export const EXIT_UNAVAILABLE = 3;

/** Where main writes; tests capture it. */
export interface Io {
  out(line: string): void;
  err(line: string): void;
}

const encoder = new TextEncoder();

/** Writes whole lines synchronously, so that a line is out before Deno.exit. */
export const processIo: Io = {
  out: (line) => void Deno.stdout.writeSync(encoder.encode(line + "\n")),
  err: (line) => void Deno.stderr.writeSync(encoder.encode(line + "\n")),
};

/** Runs raftkv with `args` (without the program name) and returns the exit code. */
export async function main(args: string[], io: Io = processIo): Promise<number> {
  let commandLine;
  try {
    commandLine = parseCommandLine(args);
  } catch (error) {
    io.err(`error: ${oneLine(error)}`);
    return EXIT_USAGE;
  }
  switch (commandLine.kind) {
    case "help":
      io.out(helpText());
      return EXIT_OK;
    case "serve":
      return await runServe(commandLine.options, io);
    case "client":
      return await runClient(commandLine.invocation, io);
  }
}

// ---------------------------------------------------------------------------------------------
// serve

async function runServe(options: ServeOptions, io: Io): Promise<number> {
  let server: RunningServer;
  try {
    server = await serve(options);
  } catch (error) {
    io.err(`error: ${describeServeError(error, options)}`);
    if (options.logLevel === "debug" && error instanceof Error && error.stack) io.err(error.stack);
    return serveErrorExitCode(error);
  }
  let stopping: Promise<void> | undefined;
  let firstSignal: Deno.Signal | undefined;
  const onSignal = (signal: Deno.Signal) => {
    if (stopping === undefined) {
      firstSignal = signal;
      stopping = server.stop();
    } else if (signal === firstSignal) {
      // The same signal twice (Ctrl-C, Ctrl-C): the user insists, stop waiting. A different
      // one (SIGINT from the terminal, then SIGTERM from a supervisor) is the same request.
      io.err(`error: Stopping was interrupted by a second ${signal}`);
      Deno.exit(EXIT_FAILED);
    }
  };
  const signals: Deno.Signal[] = Deno.build.os === "windows"
    ? ["SIGINT", "SIGBREAK"]
    : ["SIGINT", "SIGTERM"];
  const listeners = signals.map((signal) => [signal, () => onSignal(signal)] as const);
  for (const [signal, listener] of listeners) Deno.addSignalListener(signal, listener);
  // Said only once a signal can stop the node cleanly: whoever waits for this line may signal.
  io.err(`raftkv ${server.id} serving on ${server.url}`);
  try {
    await server.finished;
    if (stopping !== undefined) await stopping;
    return EXIT_OK;
  } catch (error) {
    io.err(`error: ${oneLine(error)}`);
    if (options.logLevel === "debug" && error instanceof Error && error.stack) io.err(error.stack);
    return EXIT_FAILED;
  } finally {
    for (const [signal, listener] of listeners) Deno.removeSignalListener(signal, listener);
  }
}

/** One line saying why the node could not start. */
export function describeServeError(error: unknown, options: ServeOptions): string {
  if (error instanceof Deno.errors.AddrInUse) {
    return `Cannot listen on ${options.host}:${options.port}: address in use`;
  }
  if (error instanceof Deno.errors.AddrNotAvailable) {
    return `Cannot listen on ${options.host}:${options.port}: address not available`;
  }
  if (error instanceof Deno.errors.PermissionDenied && /listen|bind/i.test(String(error))) {
    return `Cannot listen on ${options.host}:${options.port}: permission denied`;
  }
  return oneLine(error);
}

/** 2 for a usage or identity error (a restart with someone else's --dir), 1 otherwise. */
export function serveErrorExitCode(error: unknown): number {
  const name = error instanceof Error ? error.name : "";
  return name === "IdentityMismatchError" || name === "UsageError" ? EXIT_USAGE : EXIT_FAILED;
}

// ---------------------------------------------------------------------------------------------
// client subcommands

/** Runs one client subcommand against the servers of `invocation`. */
export async function runClient(
  invocation: ClientInvocation,
  io: Io,
  fetchImpl?: typeof fetch,
): Promise<number> {
  const client = new RaftkvClient({
    servers: invocation.servers,
    timeoutMs: invocation.timeoutMs,
    fetch: fetchImpl,
  });
  let response: RaftkvResponse;
  try {
    response = await callServer(client, invocation);
  } catch (error) {
    io.err(`error: ${oneLine(error)}`);
    return error instanceof UnavailableError ? EXIT_UNAVAILABLE : EXIT_FAILED;
  }
  const code = exitCodeFor(response.status);
  if (invocation.json) {
    io.out(JSON.stringify(response.body));
    if (code !== EXIT_OK) io.err(`error: ${describeFailure(invocation, response)}`);
    return code;
  }
  if (code !== EXIT_OK) {
    io.err(`error: ${describeFailure(invocation, response)}`);
    return code;
  }
  for (const line of humanOutput(invocation, response)) io.out(line);
  return EXIT_OK;
}

function callServer(client: RaftkvClient, invocation: ClientInvocation): Promise<RaftkvResponse> {
  const command = invocation.command;
  switch (command.type) {
    case "get":
      return client.get(command.key, {
        consistency: command.consistency,
        minIndex: command.minIndex,
      });
    case "set":
      return client.set(command.key, command.value);
    case "cas":
      return client.cas(command.key, command.expected, command.value);
    case "delete":
      return client.delete(command.key);
    case "status":
    case "members":
      return client.status();
    case "membersAdd":
      return client.addMember(command.url);
    case "membersRemove":
      return client.removeMember(command.id);
    case "leaderTransfer":
      return client.transferLeader(command.id);
    case "snapshot":
      return client.snapshot();
  }
}

/** The exit code for an HTTP status: 404 (key not found) and 409 (compare failed) are 1,
 * other 4xx are usage errors (2), 503 and 504 mean unavailable (3). */
export function exitCodeFor(status: number): number {
  if (status >= 200 && status < 300) return EXIT_OK;
  if (status === 404 || status === 409) return EXIT_FAILED;
  if (status === 503 || status === 504) return EXIT_UNAVAILABLE;
  if (status >= 400 && status < 500) return EXIT_USAGE;
  return EXIT_FAILED;
}

function describeFailure(invocation: ClientInvocation, response: RaftkvResponse): string {
  const command = invocation.command;
  const body = response.body;
  const message = typeof body.error === "string" ? body.error : `HTTP ${response.status}`;
  if (command.type === "get" && response.status === 404 && body.error === "key not found") {
    return `Key "${command.key}" not found`;
  }
  if (command.type === "cas" && response.status === 409) {
    return body.current === null || body.current === undefined
      ? `Compare failed: key "${command.key}" does not exist`
      : `Compare failed: current value is ${JSON.stringify(body.current)}`;
  }
  const outcome = body.outcome === "unknown" ? " (outcome unknown)" : "";
  const leader = response.leader === null ? "" : `, leader ${response.leader}`;
  return `${
    capitalize(message)
  }${outcome}: HTTP ${response.status} from ${response.server}${leader}`;
}

function humanOutput(invocation: ClientInvocation, response: RaftkvResponse): string[] {
  const body = response.body;
  switch (invocation.command.type) {
    case "get":
      return [typeof body.value === "string" ? body.value : JSON.stringify(body.value)];
    case "set":
    case "cas":
      return [typeof body.index === "number" ? `OK (index ${body.index})` : "OK"];
    case "delete":
      return [body.deleted === false ? "OK (key did not exist)" : "OK (deleted)"];
    case "status":
      return statusLines(body);
    case "members":
      return memberLines(body.members);
    default: {
      // Operating calls: show what the node said beyond "ok" (a new member's id, say).
      const { ok: _ok, ...rest } = body;
      return [Object.keys(rest).length > 0 ? `OK ${JSON.stringify(rest)}` : "OK"];
    }
  }
}

/** Scalar fields as aligned "name  value" lines, then the members as a table. */
export function statusLines(body: Record<string, unknown>): string[] {
  const scalars = Object.entries(body).filter(([, value]) => !isStructured(value));
  const width = Math.max(0, ...scalars.map(([name]) => name.length));
  const lines = scalars.map(([name, value]) => `${name.padEnd(width)}  ${cell(value)}`);
  if (body.members !== undefined) lines.push("", ...memberLines(body.members));
  return lines;
}

/** Members as a table whose columns are the fields the server sent, in its order. */
export function memberLines(members: unknown): string[] {
  const rows = Array.isArray(members)
    ? members.filter((member): member is Record<string, unknown> =>
      typeof member === "object" && member !== null && !Array.isArray(member)
    )
    : [];
  if (rows.length === 0) return ["(no members)"];
  const columns: string[] = [];
  for (const row of rows) {
    for (const name of Object.keys(row)) if (!columns.includes(name)) columns.push(name);
  }
  const cells = rows.map((row) => columns.map((name) => cell(row[name])));
  const widths = columns.map((name, i) =>
    Math.max(name.length, ...cells.map((rowCells) => rowCells[i].length))
  );
  const format = (values: string[]) =>
    values.map((value, i) => value.padEnd(widths[i])).join("  ").trimEnd();
  const titles = columns.map((name) => name.replace(/([a-z0-9])([A-Z])/g, "$1 $2").toUpperCase());
  return [format(titles), ...cells.map(format)];
}

function isStructured(value: unknown): boolean {
  return typeof value === "object" && value !== null;
}

function cell(value: unknown): string {
  if (value === undefined || value === null) return "-";
  return typeof value === "string" ? value : JSON.stringify(value);
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** The first line of an error's message: never a stack trace. */
export function oneLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const line = message.split("\n").map((part) => part.trim()).find((part) => part !== "");
  return line ?? (error instanceof Error ? error.name : "Unknown error");
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
