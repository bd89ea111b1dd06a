/** Small checks shared by the gateways of kv/ (command, state machine snapshot, stored records). */

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) &&
    !(value instanceof Uint8Array);
}

export function isIndex(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

/** UTF-8 length of well-formed `text`, counted without encoding it. */
export function utf8ByteLength(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) bytes += 1;
    else if (unit < 0x800) bytes += 2;
    else if (unit >= 0xd800 && unit <= 0xdbff) {
      bytes += 4; // a surrogate pair: one code point of 4 bytes for 2 units
      i++;
    } else bytes += 3;
  }
  return bytes;
}

/** Whether `text` is well-formed UTF-16 (no lone surrogate) and within `bytesMax` UTF-8 bytes. */
export function fitsUtf8(text: string, bytesMax: number): boolean {
  if (text.length > bytesMax) return false;
  if (!text.isWellFormed()) return false;
  if (text.length * 3 <= bytesMax) return true;
  return utf8ByteLength(text) <= bytesMax;
}

/** Throws `TypeError` naming the fields of `record` outside `allowed`. */
export function rejectUnknownFields(
  record: Record<string, unknown>,
  allowed: readonly string[],
  context: string,
): void {
  for (const field of Object.keys(record)) {
    if (!allowed.includes(field)) {
      throw new TypeError(`${context}: unknown field "${field}"`);
    }
  }
}

/** The message of an unknown thrown value, for wrapping it in our own error. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
