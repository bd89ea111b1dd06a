/** The command line of raftkv: the one FLAGS table, parsing and validation. Pure: no I/O, so
 * that every flag is tested without a process. main.ts runs what this returns. */

import { parseArgs } from "node:util";
import type { ServeOptions } from "./server.ts";

export type FlagMode = "serve" | "client" | "any";

export interface FlagSpec {
  name: string;
  type: "string" | "boolean";
  /** Shown in --help; applied when the flag is absent. */
  default?: string;
  help: string;
  mode: FlagMode;
  /** Repeatable (values are also split on commas). */
  multiple?: boolean;
  short?: string;
  /** The placeholder of the value in --help; default "value". */
  value?: string;
}

/** Every flag of raftkv: parseArgs options and the --help text both come from this table. */
export const FLAGS: readonly FlagSpec[] = [
  {
    name: "port",
    type: "string",
    value: "n",
    default: "2020",
    help: "Port to listen on (0: any)",
    mode: "serve",
  },
  {
    name: "dir",
    type: "string",
    value: "path",
    default: "./data",
    help: "Data directory",
    mode: "serve",
  },
  {
    name: "host",
    type: "string",
    value: "addr",
    default: "127.0.0.1",
    help: "Listen address",
    mode: "serve",
  },
  {
    name: "advertise",
    type: "string",
    value: "url",
    help: "URL others reach this node at (default http://<host>:<port>)",
    mode: "serve",
  },
  {
    name: "peers",
    type: "string",
    value: "list",
    help: "Initial members, URL,URL or ID=URL,ID=URL (may include this node)",
    mode: "serve",
  },
  {
    name: "join",
    type: "string",
    value: "url",
    help: "URL of a running member to join through",
    mode: "serve",
  },
  {
    name: "id",
    type: "string",
    value: "id",
    help: "Node id (default derived from --advertise)",
    mode: "serve",
  },
  {
    name: "election-timeout-ms",
    type: "string",
    value: "ms",
    default: "1000",
    help: "Election timeout (at least 3 heartbeats)",
    mode: "serve",
  },
  {
    name: "heartbeat-ms",
    type: "string",
    value: "ms",
    default: "100",
    help: "Heartbeat interval",
    mode: "serve",
  },
  {
    name: "request-timeout-ms",
    type: "string",
    value: "ms",
    default: "5000",
    help: "Deadline of a client request on the server",
    mode: "serve",
  },
  {
    name: "snapshot-entries",
    type: "string",
    value: "n",
    default: "10000",
    help: "Applied entries between automatic snapshots",
    mode: "serve",
  },
  {
    name: "snapshot-bytes",
    type: "string",
    value: "bytes",
    default: "67108864",
    help: "Applied command bytes between automatic snapshots",
    mode: "serve",
  },
  {
    name: "log-level",
    type: "string",
    value: "level",
    default: "info",
    help: "debug, info, warn or error",
    mode: "serve",
  },
  {
    name: "log-format",
    type: "string",
    value: "format",
    default: "text",
    help: "text or json",
    mode: "serve",
  },
  {
    name: "server",
    type: "string",
    value: "url",
    default: "http://127.0.0.1:2020",
    help: "Node URLs to try in order, comma-separated",
    mode: "client",
    multiple: true,
  },
  { name: "json", type: "boolean", help: "Print the raw JSON answer", mode: "client" },
  {
    name: "consistency",
    type: "string",
    value: "level",
    default: "linearizable",
    help: "get: linearizable or stale",
    mode: "client",
  },
  {
    name: "min-index",
    type: "string",
    value: "n",
    help: "get: serve a stale read once this index is applied",
    mode: "client",
  },
  { name: "absent", type: "boolean", help: "cas: the key must not exist", mode: "client" },
  {
    name: "timeout-ms",
    type: "string",
    value: "ms",
    default: "10000",
    help: "Deadline of one HTTP attempt of the client",
    mode: "client",
  },
  { name: "help", type: "boolean", help: "Show this help", mode: "any", short: "h" },
];

/** A bad command line: main.ts prints the message on one line and exits with code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

export type ClientCommand =
  | { type: "get"; key: string; consistency?: "linearizable" | "stale"; minIndex?: number }
  | { type: "set"; key: string; value: string }
  | { type: "cas"; key: string; expected: string | null; value: string }
  | { type: "delete"; key: string }
  | { type: "status" }
  | { type: "members" }
  | { type: "membersAdd"; url: string }
  | { type: "membersRemove"; id: string }
  | { type: "leaderTransfer"; id: string }
  | { type: "snapshot" };

export interface ClientInvocation {
  command: ClientCommand;
  servers: string[];
  json: boolean;
  timeoutMs: number;
}

export type CommandLine =
  | { kind: "help" }
  | { kind: "serve"; options: ServeOptions }
  | { kind: "client"; invocation: ClientInvocation };

export const CLIENT_COMMANDS = [
  "get",
  "set",
  "cas",
  "delete",
  "status",
  "members",
  "leader",
  "snapshot",
] as const;

const COMMAND_USAGE: Record<string, string> = {
  get: "raftkv get KEY [--consistency stale] [--min-index N]",
  set: "raftkv set KEY VALUE",
  cas: "raftkv cas KEY EXPECTED VALUE | raftkv cas KEY VALUE --absent",
  delete: "raftkv delete KEY",
  status: "raftkv status",
  members: "raftkv members [add URL | remove ID]",
  leader: "raftkv leader transfer ID",
  snapshot: "raftkv snapshot",
};

type Values = Record<string, string | boolean | string[] | undefined>;

/** Parses raftkv's arguments (without the program name). Throws UsageError. */
export function parseCommandLine(args: string[]): CommandLine {
  const { values, positionals } = parseFlags(joinNegativeValues(args));
  if (values.help === true || positionals[0] === "help") return { kind: "help" };
  const command = positionals[0] ?? "serve";
  if (command === "serve") {
    checkFlagModes(values, "serve", "serve");
    if (positionals.length > 1) {
      throw new UsageError(`Unexpected argument "${positionals[1]}": serve takes only flags`);
    }
    return { kind: "serve", options: serveOptions(values) };
  }
  if (!(CLIENT_COMMANDS as readonly string[]).includes(command)) {
    throw new UsageError(
      `Unknown command "${command}": expected serve, ${CLIENT_COMMANDS.join(", ")} or help`,
    );
  }
  checkFlagModes(values, "client", command);
  const invocation: ClientInvocation = {
    command: clientCommand(command, positionals.slice(1), values),
    servers: serverList(values.server),
    json: values.json === true,
    timeoutMs: positiveInteger(values, "timeout-ms"),
  };
  return { kind: "client", invocation };
}

/** The --help text: usage, then every flag of FLAGS with its default. */
export function helpText(): string {
  const lines = [
    "raftkv: a strongly consistent Raft key-value store",
    "",
    "Usage:",
    "  raftkv [serve] [--port 2020] [--dir ./data] [--peers URL,URL,...] [--join URL]",
    ...Object.values(COMMAND_USAGE).map((usage) => `  ${usage}`),
    "",
  ];
  const sections: [string, FlagMode][] = [
    ["Serve flags:", "serve"],
    ["Client flags:", "client"],
    ["Other flags:", "any"],
  ];
  for (const [title, mode] of sections) {
    lines.push(title);
    const flags = FLAGS.filter((flag) => flag.mode === mode);
    const names = flags.map(flagSynopsis);
    const width = Math.max(...names.map((name) => name.length));
    flags.forEach((flag, i) => {
      const suffix = flag.default === undefined ? "" : ` (default ${flag.default})`;
      lines.push(`  ${names[i].padEnd(width)}  ${flag.help}${suffix}`);
    });
    lines.push("");
  }
  lines.push("Exit codes: 0 ok, 1 key not found or compare failed, 2 usage, 3 unavailable");
  return lines.join("\n");
}

function flagSynopsis(flag: FlagSpec): string {
  const short = flag.short === undefined ? "" : `-${flag.short}, `;
  const value = flag.type === "string" ? ` <${flag.value ?? "value"}>` : "";
  return `${short}--${flag.name}${value}`;
}

function flagSpec(name: string): FlagSpec {
  const spec = FLAGS.find((flag) => flag.name === name);
  if (spec === undefined) throw new Error(`Unknown flag in FLAGS lookup: "${name}"`);
  return spec;
}

/** `--port -5` would be refused by parseArgs as ambiguous; read it as `--port=-5` so that the
 * value check below gives the clearer message. */
function joinNegativeValues(args: string[]): string[] {
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const name = args[i].startsWith("--") ? args[i].slice(2) : undefined;
    const spec = FLAGS.find((flag) => flag.name === name);
    if (spec?.type === "string" && /^-\d/.test(args[i + 1] ?? "")) {
      joined.push(`${args[i]}=${args[i + 1]}`);
      i++;
    } else {
      joined.push(args[i]);
    }
  }
  return joined;
}

function parseFlags(args: string[]): { values: Values; positionals: string[] } {
  const options: Record<
    string,
    { type: "string" | "boolean"; multiple?: boolean; short?: string }
  > = {};
  for (const flag of FLAGS) {
    options[flag.name] = { type: flag.type };
    if (flag.multiple === true) options[flag.name].multiple = true;
    if (flag.short !== undefined) options[flag.name].short = flag.short;
  }
  try {
    const parsed = parseArgs({ args, options, strict: true, allowPositionals: true });
    return { values: parsed.values as Values, positionals: parsed.positionals };
  } catch (error) {
    throw new UsageError(describeParseError(error));
  }
}

function describeParseError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: unknown }).code;
  const option = /'(-[^' ]+)/.exec(message)?.[1];
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" && option !== undefined) {
    return `Unknown flag "${option}": see "raftkv --help"`;
  }
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" && option !== undefined) {
    return /does not take an argument/.test(message)
      ? `Flag "${option}" takes no value`
      : `Flag "${option}" needs a value`;
  }
  return message.split("\n")[0];
}

function checkFlagModes(values: Values, mode: "serve" | "client", command: string): void {
  for (const [name, value] of Object.entries(values)) {
    if (value === undefined) continue;
    const spec = flagSpec(name);
    if (spec.mode !== "any" && spec.mode !== mode) {
      throw new UsageError(`Flag "--${name}" does not apply to "${command}"`);
    }
  }
}

function stringValue(values: Values, name: string): string {
  const value = values[name];
  if (typeof value === "string") return value;
  const fallback = flagSpec(name).default;
  if (fallback === undefined) throw new Error(`Flag "--${name}" has no default`);
  return fallback;
}

function optionalString(values: Values, name: string): string | undefined {
  const value = values[name];
  if (value === undefined) return undefined;
  if (typeof value !== "string" || value.trim() === "") {
    throw new UsageError(`Invalid value for --${name}: expected a non-empty value`);
  }
  return value.trim();
}

function integer(values: Values, name: string, min: number, max: number): number {
  const text = stringValue(values, name).trim();
  const value = Number(text);
  if (!/^-?\d+$/.test(text) || !Number.isSafeInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER
      ? min === 0 ? "a non-negative integer" : `an integer of at least ${min}`
      : `an integer from ${min} to ${max}`;
    throw new UsageError(`Invalid value "${text}" for --${name}: expected ${range}`);
  }
  return value;
}

function positiveInteger(values: Values, name: string): number {
  return integer(values, name, 1, Number.MAX_SAFE_INTEGER);
}

function oneOf<T extends string>(values: Values, name: string, allowed: readonly T[]): T {
  const text = stringValue(values, name);
  if (!(allowed as readonly string[]).includes(text)) {
    throw new UsageError(
      `Invalid value "${text}" for --${name}: expected ${allowed.map((a) => `"${a}"`).join(", ")}`,
    );
  }
  return text as T;
}

/** Checks an http(s) URL and returns it without a trailing slash. */
export function httpUrl(text: string, what: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`Invalid URL "${text}" for ${what}: expected http://host:port`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UsageError(`Invalid URL "${text}" for ${what}: expected an http or https URL`);
  }
  if (url.hostname === "") throw new UsageError(`Invalid URL "${text}" for ${what}: no host`);
  return text.replace(/\/+$/, "");
}

const ID_PATTERN = /^[A-Za-z0-9._:-]+$/;

function checkId(id: string, what: string): void {
  if (!ID_PATTERN.test(id) || id.length > 128) {
    throw new UsageError(
      `Invalid node id "${id}" in ${what}: expected 1 to 128 letters, digits, ".", "_", ":" or "-"`,
    );
  }
}

/** Checks --peers: "URL,URL" or "ID=URL,ID=URL"; returns it normalized. */
function peerList(text: string): string {
  const items = text.split(",").map((item) => item.trim()).filter((item) => item !== "");
  if (items.length === 0) throw new UsageError("Invalid value for --peers: no peer listed");
  const normalized = items.map((item) => {
    const equals = item.indexOf("=");
    if (equals < 0 || /^https?:\/\//.test(item)) return httpUrl(item, "--peers");
    const id = item.slice(0, equals);
    checkId(id, "--peers");
    return `${id}=${httpUrl(item.slice(equals + 1), "--peers")}`;
  });
  return normalized.join(",");
}

function serveOptions(values: Values): ServeOptions {
  const options: ServeOptions = {
    port: integer(values, "port", 0, 65535),
    host: stringValue(values, "host").trim(),
    dir: stringValue(values, "dir"),
    electionTimeoutMs: positiveInteger(values, "election-timeout-ms"),
    heartbeatIntervalMs: positiveInteger(values, "heartbeat-ms"),
    requestTimeoutMs: positiveInteger(values, "request-timeout-ms"),
    snapshotEntries: positiveInteger(values, "snapshot-entries"),
    snapshotBytes: positiveInteger(values, "snapshot-bytes"),
    logLevel: oneOf(values, "log-level", ["debug", "info", "warn", "error"] as const),
    logFormat: oneOf(values, "log-format", ["text", "json"] as const),
  };
  if (options.host === "") throw new UsageError("Invalid value for --host: expected an address");
  if (options.dir.trim() === "") throw new UsageError("Invalid value for --dir: expected a path");
  // Followers must hear several heartbeats per election timeout, or they campaign while the
  // leader is healthy (Raft paper §5.6: broadcastTime << electionTimeout).
  if (options.heartbeatIntervalMs * 3 > options.electionTimeoutMs) {
    throw new UsageError(
      `Invalid timing: --election-timeout-ms (${options.electionTimeoutMs}) must be at least 3 ` +
        `times --heartbeat-ms (${options.heartbeatIntervalMs})`,
    );
  }
  const advertise = optionalString(values, "advertise");
  if (advertise !== undefined) options.advertise = httpUrl(advertise, "--advertise");
  const peers = optionalString(values, "peers");
  if (peers !== undefined) options.peers = peerList(peers);
  const join = optionalString(values, "join");
  if (join !== undefined) options.join = httpUrl(join, "--join");
  if (options.peers !== undefined && options.join !== undefined) {
    throw new UsageError("Flags --peers and --join cannot be used together");
  }
  const id = optionalString(values, "id");
  if (id !== undefined) {
    checkId(id, "--id");
    options.id = id;
  }
  return options;
}

function serverList(value: string | boolean | string[] | undefined): string[] {
  const items = Array.isArray(value) ? value : [flagSpec("server").default ?? ""];
  const servers = items.flatMap((item) => item.split(",")).map((item) => item.trim())
    .filter((item) => item !== "");
  if (servers.length === 0) throw new UsageError("Invalid value for --server: no URL given");
  return servers.map((server) => httpUrl(server, "--server"));
}

function expectArgs(command: string, args: string[], count: number): void {
  if (args.length !== count) {
    const problem = args.length < count
      ? "missing argument"
      : `unexpected argument "${args[count]}"`;
    throw new UsageError(`Invalid use of ${command}: ${problem}; usage: ${COMMAND_USAGE[command]}`);
  }
}

function onlyFor(values: Values, name: string, command: string, allowed: string): void {
  if (values[name] !== undefined && command !== allowed) {
    throw new UsageError(`Flag "--${name}" applies only to "${allowed}"`);
  }
}

function clientCommand(command: string, args: string[], values: Values): ClientCommand {
  onlyFor(values, "consistency", command, "get");
  onlyFor(values, "min-index", command, "get");
  onlyFor(values, "absent", command, "cas");
  for (const key of command === "members" || command === "leader" ? [] : args.slice(0, 1)) {
    if (key === "") throw new UsageError(`Invalid use of ${command}: the key is empty`);
  }
  switch (command) {
    case "get": {
      expectArgs(command, args, 1);
      const minIndex = values["min-index"] === undefined
        ? undefined
        : integer(values, "min-index", 0, Number.MAX_SAFE_INTEGER);
      // A minimum index only means something for a local (stale) read.
      const consistency = values.consistency === undefined && minIndex !== undefined
        ? "stale"
        : oneOf(values, "consistency", ["linearizable", "stale"] as const);
      return { type: "get", key: args[0], consistency, minIndex };
    }
    case "set":
      expectArgs(command, args, 2);
      return { type: "set", key: args[0], value: args[1] };
    case "cas":
      if (values.absent === true) {
        expectArgs(command, args, 2);
        return { type: "cas", key: args[0], expected: null, value: args[1] };
      }
      expectArgs(command, args, 3);
      return { type: "cas", key: args[0], expected: args[1], value: args[2] };
    case "delete":
      expectArgs(command, args, 1);
      return { type: "delete", key: args[0] };
    case "status":
    case "snapshot":
      expectArgs(command, args, 0);
      return { type: command };
    case "members":
      return membersCommand(args);
    case "leader":
      if (args[0] !== "transfer") {
        throw new UsageError(`Invalid use of leader: usage: ${COMMAND_USAGE.leader}`);
      }
      expectArgs(command, args, 2);
      return { type: "leaderTransfer", id: args[1] };
    default:
      throw new UsageError(`Unknown command "${command}"`);
  }
}

function membersCommand(args: string[]): ClientCommand {
  if (args.length === 0) return { type: "members" };
  if (args[0] === "add" && args.length === 2) {
    return { type: "membersAdd", url: httpUrl(args[1], "members add") };
  }
  if (args[0] === "remove" && args.length === 2) return { type: "membersRemove", id: args[1] };
  throw new UsageError(`Invalid use of members: usage: ${COMMAND_USAGE.members}`);
}
