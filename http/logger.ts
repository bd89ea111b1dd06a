import type { LogFields, Logger, LogLevel } from "../raft/mod.ts";

const LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];
const encoder = new TextEncoder();

/** One line per record on stderr: `text` for people, `json` for log shippers. */
export function consoleLogger(options: { level: LogLevel; format: "text" | "json" }): Logger {
  const threshold = LEVELS.indexOf(options.level);
  const write = (level: LogLevel, message: string, fields: LogFields = {}) => {
    if (LEVELS.indexOf(level) < threshold) return;
    const time = new Date().toISOString();
    const line = options.format === "json"
      ? JSON.stringify({ time, level, msg: message, ...fields })
      : `${time} ${level.toUpperCase().padEnd(5)} ${message}${formatFields(fields)}`;
    try {
      Deno.stderr.writeSync(encoder.encode(line + "\n"));
    } catch {
      // stderr is gone (a closed pipe): logging must never take the node down.
    }
  };
  return {
    debug: (message, fields) => write("debug", message, fields),
    info: (message, fields) => write("info", message, fields),
    warn: (message, fields) => write("warn", message, fields),
    error: (message, fields) => write("error", message, fields),
  };
}

function formatFields(fields: LogFields): string {
  let text = "";
  for (const [key, value] of Object.entries(fields)) {
    const shown = typeof value === "string" ? value : JSON.stringify(value);
    text += ` ${key}=${/[\s"]/.test(shown ?? "") ? JSON.stringify(shown) : shown}`;
  }
  return text;
}
