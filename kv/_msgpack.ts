import { Decoder, Encoder } from "@msgpack/msgpack";

// One encoder and one decoder for the process: the library's encode() and decode() build a new
// one per call, and that (a 2 KiB buffer each time) cost more than the encoding itself.
const encoder = new Encoder();
const decoder = new Decoder();

/** MessagePack bytes of `value`, in a buffer of their own. */
export function encode(value: unknown): Uint8Array {
  return encoder.encode(value);
}

/** The value in `bytes`; throws on malformed MessagePack. */
export function decode(bytes: Uint8Array): unknown {
  return decoder.decode(bytes);
}
