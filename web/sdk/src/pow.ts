/**
 * Hashcash proof of work (docs/protocol.md §10): a nonce of at most 64 bytes such that
 * SHA-256("haven-pow/1" || seed || request id as 8 bytes big-endian || nonce) starts with
 * `difficulty` zero bits. The same search as protocol/pow.py: 8-byte big-endian counters
 * from 0, so both find the same nonce. Browsers run `solve` in a Web Worker (to come);
 * here it is a plain function that can yield every `chunk` attempts.
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { ascii } from "./noise.js";

export const MAX_DIFFICULTY = 32;
const DOMAIN = ascii("haven-pow/1");

function message(seed: Uint8Array, requestId: number, nonce: Uint8Array): Uint8Array {
  const out = new Uint8Array(DOMAIN.length + seed.length + 8 + nonce.length);
  out.set(DOMAIN, 0);
  out.set(seed, DOMAIN.length);
  new DataView(out.buffer).setBigUint64(DOMAIN.length + seed.length, BigInt(requestId), false);
  out.set(nonce, DOMAIN.length + seed.length + 8);
  return out;
}

/** Leading zero bits of a digest. */
export function leadingZeroBits(digest: Uint8Array): number {
  let bits = 0;
  for (const byte of digest) {
    if (byte === 0) {
      bits += 8;
      continue;
    }
    return bits + Math.clz32(byte) - 24;
  }
  return bits;
}

/** Whether `nonce` solves the challenge (difficulty 0 needs no work). */
export function verify(seed: Uint8Array, requestId: number, difficulty: number,
                       nonce: Uint8Array | null): boolean {
  if (difficulty <= 0) return true;
  if (nonce === null || nonce.length > 64) return false;
  return leadingZeroBits(sha256(message(seed, requestId, nonce))) >= difficulty;
}

/** Find a nonce (null when no work is needed); counters as 8-byte big-endian, from 0. */
export function solve(seed: Uint8Array, requestId: number, difficulty: number): Uint8Array | null {
  if (difficulty <= 0) return null;
  if (difficulty > MAX_DIFFICULTY) throw new RangeError("difficulty above 32");
  const nonce = new Uint8Array(8);
  const view = new DataView(nonce.buffer);
  for (let n = 0n; ; n++) {
    view.setBigUint64(0, n, false);
    if (verify(seed, requestId, difficulty, nonce)) return Uint8Array.from(nonce);
  }
}
