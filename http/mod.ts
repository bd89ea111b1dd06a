/** The public surface of http/. Only main.ts, scripts/ and tests/ import it. */
export { serve } from "./server.ts";
export type { RunningServer, ServeOptions } from "./server.ts";
export { RaftkvClient, UnavailableError } from "./client.ts";
export type {
  CasResponse,
  Consistency,
  DeleteResponse,
  GetOptions,
  GetResponse,
  RaftkvClientOptions,
  RaftkvResponse,
  RequestOptions,
  WriteOptions,
  WriteResponse,
} from "./client.ts";
export { FLAGS, helpText, parseCommandLine } from "./cli_args.ts";
export type { ClientCommand, ClientInvocation, CommandLine, FlagSpec } from "./cli_args.ts";
export {
  chunkedBodyEnd,
  Http1Client,
  HttpConnection,
  parseResponseHead,
  ProtocolError,
} from "./http1_client.ts";
export type { HttpAnswer, ResponseHead } from "./http1_client.ts";
