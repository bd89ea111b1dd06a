import assert from "node:assert/strict";
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

Deno.test("encodeCommand() gives each command bytes of its own, however many share a slab", () => {
  const commands: Command[] = [];
  for (let i = 0; i < 3_000; i++) {
    // Sizes from a few bytes to past the shared-slab limit, so slabs fill and roll over.
    commands.push({ type: "set", key: `k${i}`, value: "v".repeat((i * 37) % 3_000) });
  }
  const encoded = commands.map(encodeCommand);
  encoded.forEach((bytes, i) => assert.deepEqual(decodeCommand(bytes), commands[i]));
  // Writing over one command's bytes leaves every other command as it was.
  encoded[1_500].fill(0);
  encoded.forEach((bytes, i) => {
    if (i !== 1_500) assert.deepEqual(decodeCommand(bytes), commands[i]);
  });
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

/** Command bytes by hand: a type code, flags, and length-prefixed fields (see kv/command.ts). */
function commandBytes(type: number, flags: number, ...fields: (string | Uint8Array)[]): Uint8Array {
  const parts = fields.map((field) =>
    typeof field === "string" ? new TextEncoder().encode(field) : field
  );
  const bytes = new Uint8Array(2 + parts.reduce((sum, part) => sum + 4 + part.length, 0));
  const view = new DataView(bytes.buffer);
  bytes[0] = type;
  bytes[1] = flags;
  let offset = 2;
  for (const part of parts) {
    view.setUint32(offset, part.length, true);
    bytes.set(part, offset + 4);
    offset += 4 + part.length;
  }
  return bytes;
}

Deno.test("decodeCommand() reads bytes written by hand in the documented layout", () => {
  assert.deepEqual(decodeCommand(commandBytes(1, 0, "k", "v")), {
    type: "set",
    key: "k",
    value: "v",
  });
  assert.deepEqual(decodeCommand(commandBytes(2, 3, "k", "old", "new", "id-1")), {
    type: "cas",
    key: "k",
    expected: "old",
    value: "new",
    requestId: "id-1",
  });
  assert.deepEqual(decodeCommand(commandBytes(2, 0, "k", "new")), {
    type: "cas",
    key: "k",
    expected: null,
    value: "new",
  });
  assert.deepEqual(decodeCommand(commandBytes(3, 1, "k", "id")), {
    type: "delete",
    key: "k",
    requestId: "id",
  });
  const set = { type: "set", key: "κλειδί", value: "\ufeffvalue" } as const;
  assert.deepEqual(encodeCommand(set), commandBytes(1, 0, set.key, set.value));
});

Deno.test("decodeCommand() rejects malformed bytes with a clear TypeError", () => {
  const longLength = commandBytes(1, 0, "k", "v");
  new DataView(longLength.buffer).setUint32(2, KEY_BYTES_MAX + 1, true);
  const cases: [Uint8Array, RegExp][] = [
    [new Uint8Array(), /too short/],
    [new Uint8Array([0xc1, 0]), /unknown type code 193/],
    [commandBytes(4, 0, "a"), /unknown type code 4/],
    [commandBytes(1, 2, "a", "x", "y"), /unknown flags 2/],
    [commandBytes(1, 0, "a"), /field "value" is missing/],
    [commandBytes(1, 0, "", "v"), /field "key" is empty/],
    [commandBytes(3, 1, "a", ""), /field "requestId" is empty/],
    [commandBytes(1, 0, "a", new Uint8Array([0xff])), /field "value" is not valid UTF-8/],
    [commandBytes(1, 0, "a", new Uint8Array([0xed, 0xa0, 0x80])), /not valid UTF-8/],
    [longLength, /field "key" is longer than/],
    [commandBytes(1, 0, "a", "v").subarray(0, 11), /field "value" runs past the end/],
    [new Uint8Array([...encodeCommand({ type: "delete", key: "a" }), 0]), /1 bytes after/],
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
