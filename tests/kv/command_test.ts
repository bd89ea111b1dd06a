import assert from "node:assert/strict";
import { encode } from "@msgpack/msgpack";
import {
  type Command,
  COMMAND_BYTES_MAX,
  decodeCommand,
  encodeCommand,
  KEY_BYTES_MAX,
  VALUE_BYTES_MAX,
} from "../../kv/mod.ts";

Deno.test("encodeCommand() and decodeCommand() round-trip every command type", () => {
  const commands: Command[] = [
    { type: "set", key: "a", value: "1" },
    { type: "set", key: "ключ", value: "", requestId: "r-1" },
    { type: "cas", key: "a", expected: null, value: "2" },
    { type: "cas", key: "a", expected: "1", value: "2", requestId: "r-2" },
    { type: "delete", key: "a" },
    { type: "delete", key: "😀", requestId: "r-3" },
  ];
  for (const command of commands) {
    assert.deepEqual(decodeCommand(encodeCommand(command)), command);
  }
});

Deno.test("encodeCommand() gives equal bytes for equal commands", () => {
  const a = encodeCommand({ type: "cas", key: "k", expected: "x", value: "y", requestId: "id" });
  const b = encodeCommand({ requestId: "id", value: "y", expected: "x", key: "k", type: "cas" });
  assert.deepEqual(a, b);
});

Deno.test("encodeCommand() accepts a key and a value at their limits", () => {
  const command: Command = {
    type: "set",
    key: "k".repeat(KEY_BYTES_MAX),
    value: "v".repeat(VALUE_BYTES_MAX),
  };
  assert.deepEqual(decodeCommand(encodeCommand(command)), command);
});

Deno.test("encodeCommand() refuses an oversized key, value or command with RangeError", () => {
  assert.throws(
    () => encodeCommand({ type: "set", key: "k".repeat(KEY_BYTES_MAX + 1), value: "" }),
    RangeError,
  );
  // Multi-byte characters count in UTF-8 bytes, not in UTF-16 units.
  assert.throws(
    () => encodeCommand({ type: "set", key: "é".repeat(KEY_BYTES_MAX / 2 + 1), value: "" }),
    RangeError,
  );
  assert.throws(
    () => encodeCommand({ type: "set", key: "k", value: "v".repeat(VALUE_BYTES_MAX + 1) }),
    RangeError,
  );
  const half = "v".repeat(Math.ceil(COMMAND_BYTES_MAX / 2));
  assert.throws(
    () => encodeCommand({ type: "cas", key: "k", expected: half, value: half }),
    /more than 655360/,
  );
});

Deno.test("encodeCommand() refuses malformed commands with TypeError", () => {
  const bad: unknown[] = [
    null,
    { type: "put", key: "a", value: "b" },
    { type: "set", key: "", value: "b" },
    { type: "set", key: "a" },
    { type: "set", key: 1, value: "b" },
    { type: "set", key: "a", value: "b", extra: 1 },
    { type: "cas", key: "a", value: "b" },
    { type: "delete", key: "a", requestId: "" },
    { type: "set", key: "\ud800", value: "b" },
  ];
  for (const command of bad) {
    assert.throws(() => encodeCommand(command as Command), TypeError, JSON.stringify(command));
  }
});

Deno.test("decodeCommand() rejects malformed bytes with a clear TypeError", () => {
  const cases: [Uint8Array, RegExp][] = [
    [new Uint8Array(), /invalid MessagePack/],
    [new Uint8Array([0xc1]), /invalid MessagePack/],
    [encode([1, 2]), /expected an object/],
    [encode({ type: "set", key: "a", value: 3 }), /field "value" must be a string/],
    [encode({ type: "drop", key: "a" }), /field "type" must be "set", "cas" or "delete"/],
    [encode({ type: "delete", key: "a", value: "x" }), /unknown field "value"/],
    [encode({ type: "cas", key: "a", value: "x" }), /field "expected" is missing/],
    [encode({ type: "set", key: "k".repeat(KEY_BYTES_MAX + 1), value: "" }), /longer than/],
    [new Uint8Array([...encodeCommand({ type: "delete", key: "a" }), 0]), /invalid MessagePack/],
  ];
  for (const [bytes, message] of cases) {
    assert.throws(() => decodeCommand(bytes), (error: unknown) => {
      assert(error instanceof TypeError, `${message}: ${error}`);
      assert.match(error.message, /^Cannot decode command: /);
      assert.match(error.message, message);
      return true;
    });
  }
});
