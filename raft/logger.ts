/** Facts as key/value pairs. Implemented at the edge (http/server.ts); tests record. */
export type LogFields = Record<string, unknown>;

export type LogLevel = "debug" | "info" | "warn" | "error";

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

function ignore(): void {}

export const noopLogger: Logger = { debug: ignore, info: ignore, warn: ignore, error: ignore };
