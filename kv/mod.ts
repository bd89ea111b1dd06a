/** The public surface of kv/. Other directories import kv/ only through this file. */
export * from "./limits.ts";
export type { Command } from "./command.ts";
export { decodeCommand, encodeCommand } from "./command.ts";
export type { ApplyResult, KvStateMachineOptions } from "./state_machine.ts";
export { KvStateMachine } from "./state_machine.ts";
export type { DenoKvStorageOptions } from "./deno_kv_storage.ts";
export { DenoKvStorage } from "./deno_kv_storage.ts";
export type { NodeIdentity, NodeStore } from "./node_identity.ts";
export { checkIdentity, IdentityMismatchError, openNodeStore } from "./node_identity.ts";
export { DirLockedError } from "./dir_lock.ts";
export { fitsUtf8, utf8ByteLength } from "./_validate.ts";
