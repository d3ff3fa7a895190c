/**
 * Envelopes: msgpack maps with the same strict limits as protocol/codec.py. The bytes are
 * scanned (sizes, depth, lengths, item count, no ext types, no trailing bytes) before any
 * object is built, so a hostile envelope costs no memory; then @msgpack/msgpack decodes
 * it. Encoding writes `t` first and omits absent fields, exactly like the Python relay, so
 * envelopes are byte-identical across both (golden tests).
 */
import { Decoder, Encoder } from "@msgpack/msgpack";
import { ErrorCode, HavenError } from "./errors.js";

export const MAX_ENVELOPE = 65517;
/** Deepest nesting; the top-level map is depth 1. */
export const MAX_DEPTH = 4;
/** Most values in one envelope (a map entry counts twice: key and value). */
export const MAX_ITEMS = 2048;
export const MAX_MAP_LEN = 32;
export const MAX_ARRAY_LEN = 256;

const SCALAR_LEN: Record<number, number> = {
  0xc0: 0, 0xc2: 0, 0xc3: 0, 0xca: 4, 0xcb: 8,
  0xcc: 1, 0xcd: 2, 0xce: 4, 0xcf: 8, 0xd0: 1, 0xd1: 2, 0xd2: 4, 0xd3: 8,
};
const SIZED: Record<number, number> = { 0xd9: 1, 0xda: 2, 0xdb: 4, 0xc4: 1, 0xc5: 2, 0xc6: 4 };
const ARRAY_N: Record<number, number> = { 0xdc: 2, 0xdd: 4 };
const MAP_N: Record<number, number> = { 0xde: 2, 0xdf: 4 };

function malformed(why: string): HavenError {
  return new HavenError(ErrorCode.MALFORMED, `malformed envelope: ${why}`);
}

function readUint(data: Uint8Array, at: number, width: number): number {
  let n = 0;
  for (let i = 0; i < width; i++) n = n * 256 + data[at + i]!;
  return n;
}

/** Check the msgpack structure without building anything (MALFORMED or TOO_LARGE). */
export function scan(data: Uint8Array): void {
  if (data.length > MAX_ENVELOPE) throw new HavenError(ErrorCode.TOO_LARGE, "envelope too large");
  const end = data.length;
  let pos = 0;
  // Items still expected at each open level; the virtual root expects one value.
  const pending = [1];
  let budget = MAX_ITEMS;
  while (pending.length > 0) {
    if (pending[pending.length - 1] === 0) {
      pending.pop();
      continue;
    }
    pending[pending.length - 1]! -= 1;
    if (pos >= end) throw malformed("truncated");
    if (--budget < 0) throw malformed("too many items");
    const b = data[pos++]!;
    if (b <= 0x7f || b >= 0xe0) continue;
    let n = -1;
    let isMap = false;
    if (b >= 0x80 && b <= 0x8f) {
      n = b & 0x0f;
      isMap = true;
    } else if (b >= 0x90 && b <= 0x9f) {
      n = b & 0x0f;
    } else if (b >= 0xa0 && b <= 0xbf) {
      pos += b & 0x1f;
    } else if (b in SCALAR_LEN) {
      pos += SCALAR_LEN[b]!;
    } else if (b in SIZED) {
      const w = SIZED[b]!;
      if (pos + w > end) throw malformed("truncated");
      pos += w + readUint(data, pos, w);
    } else if (b in ARRAY_N || b in MAP_N) {
      isMap = b in MAP_N;
      const w = isMap ? MAP_N[b]! : ARRAY_N[b]!;
      if (pos + w > end) throw malformed("truncated");
      n = readUint(data, pos, w);
      pos += w;
    } else {
      throw malformed("ext types and reserved bytes are not allowed");
    }
    if (pos > end) throw malformed("truncated");
    if (n >= 0) {
      if (n > (isMap ? MAX_MAP_LEN : MAX_ARRAY_LEN)) throw malformed("container too long");
      if (pending.length > MAX_DEPTH) throw malformed("nested too deeply");
      pending.push(isMap ? 2 * n : n);
    }
  }
  if (pos !== end) throw malformed("trailing bytes");
}

/** A decoded envelope: a plain map whose `t` names the message. */
export type Envelope = { t: string } & Record<string, unknown>;

const decoder = new Decoder({ useBigInt64: false });
const encoder = new Encoder({ ignoreUndefined: true, forceIntegerToFloat: false });

/** Scan, then decode one envelope; anything but a map with a string `t` is MALFORMED. */
export function decodeEnvelope(data: Uint8Array): Envelope {
  scan(data);
  let obj: unknown;
  try {
    obj = decoder.decode(data);
  } catch {
    throw malformed("undecodable");
  }
  if (obj === null || typeof obj !== "object" || Array.isArray(obj) || obj instanceof Uint8Array) {
    throw malformed("an envelope must be a map");
  }
  const map = obj as Record<string, unknown>;
  if (typeof map["t"] !== "string") throw new HavenError(ErrorCode.BAD_FIELD, "t: missing");
  return map as Envelope;
}

/**
 * Encode an envelope: `t` first, then the fields in the order given, absent (`undefined`
 * or `null`) fields omitted, as the relay does.
 */
export function encodeEnvelope(envelope: Envelope): Uint8Array {
  const ordered: Record<string, unknown> = { t: envelope.t };
  for (const [key, value] of Object.entries(envelope)) {
    if (key !== "t" && value !== undefined && value !== null) ordered[key] = value;
  }
  const data = encoder.encode(ordered);
  if (data.length > MAX_ENVELOPE) throw new HavenError(ErrorCode.TOO_LARGE, "envelope too large");
  return data;
}
