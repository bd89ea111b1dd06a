/** Temporary stand-in for kv/mod.ts (the "kv/ contract" of the brief) until kv/ lands. */
import { decode, encode } from "@msgpack/msgpack";

export const KEY_BYTES_MAX = 1024;
export const VALUE_BYTES_MAX = 524_288;
export type Command =
  | { type: "set"; key: string; value: string; requestId?: string }
  | { type: "cas"; key: string; expected: string | null; value: string; requestId?: string }
  | { type: "delete"; key: string; requestId?: string };
export type ApplyResult =
  | { type: "set"; ok: true; index: number }
  | { type: "cas"; ok: true; index: number }
  | { type: "cas"; ok: false; current: string | null; index: number }
  | { type: "delete"; deleted: boolean; index: number };

export function encodeCommand(command: Command): Uint8Array {
  return encode(command);
}

export function decodeCommand(bytes: Uint8Array): Command {
  return decode(bytes) as Command;
}

export class KvStateMachine {
  #map = new Map<string, { value: string; index: number }>();
  #seen = new Map<string, ApplyResult>();
  apply(index: number, data: Uint8Array): ApplyResult | { type: "invalid"; index: number } {
    let command: Command;
    try {
      command = decodeCommand(data);
    } catch {
      return { type: "invalid", index };
    }
    const first = command.requestId === undefined ? undefined : this.#seen.get(command.requestId);
    if (first !== undefined) return first;
    const result = this.#run(index, command);
    if (command.requestId !== undefined) this.#seen.set(command.requestId, result);
    return result;
  }
  #run(index: number, command: Command): ApplyResult {
    if (command.type === "set") {
      this.#map.set(command.key, { value: command.value, index });
      return { type: "set", ok: true, index };
    }
    if (command.type === "cas") {
      const current = this.#map.get(command.key)?.value ?? null;
      if (current !== command.expected) return { type: "cas", ok: false, current, index };
      this.#map.set(command.key, { value: command.value, index });
      return { type: "cas", ok: true, index };
    }
    return { type: "delete", deleted: this.#map.delete(command.key), index };
  }
  get(key: string): { value: string; index: number } | undefined {
    return this.#map.get(key);
  }
  keyCount(): number {
    return this.#map.size;
  }
  snapshot(): Uint8Array {
    return encode([...this.#map]);
  }
  restore(data: Uint8Array): void {
    this.#map = new Map(decode(data) as [string, { value: string; index: number }][]);
  }
}
