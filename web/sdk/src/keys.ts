/**
 * The relay's public key as the relay prints it: 43 characters of unpadded base64url
 * (32 bytes). Only the canonical spelling is accepted, so a mistyped key fails here,
 * loudly, rather than as a handshake that never completes.
 */
import { ErrorCode, HavenError } from "./errors.js";

const B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

function badKey(why: string): HavenError {
  return new HavenError(ErrorCode.BAD_KEY, `relay key: ${why}`);
}

/** 32 raw bytes from the relay key's text (or the bytes themselves, checked). */
export function parseRelayKey(key: string | Uint8Array): Uint8Array {
  if (key instanceof Uint8Array) {
    if (key.length !== 32) throw badKey("must be 32 bytes");
    return key;
  }
  const text = key.trim();
  if (text.length !== 43) throw badKey("must be 43 base64url characters");
  const out = new Uint8Array(32);
  let acc = 0;
  let bits = 0;
  let at = 0;
  for (const c of text) {
    const v = B64URL.indexOf(c);
    if (v < 0) throw badKey("not base64url");
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[at++] = (acc >> bits) & 0xff;
    }
  }
  if ((acc & ((1 << bits) - 1)) !== 0) throw badKey("not canonical base64url (wrong last character)");
  return out;
}

/** The relay key's text form (unpadded base64url). */
export function formatRelayKey(raw: Uint8Array): string {
  let out = "";
  let acc = 0;
  let bits = 0;
  for (const byte of parseRelayKey(raw)) {
    acc = (acc << 8) | byte;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += B64URL[(acc >> bits) & 63];
    }
    acc &= (1 << bits) - 1;
  }
  if (bits > 0) out += B64URL[(acc << (6 - bits)) & 63];
  return out;
}
