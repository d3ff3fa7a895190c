/**
 * Hashcash proof of work (docs/protocol.md §10): a nonce of at most 64 bytes such that
 * SHA-256("haven-pow/1" || seed || request id as 8 bytes big-endian || nonce) starts with
 * `difficulty` zero bits. The same search as protocol/pow.py: 8-byte big-endian counters
 * from 0, so both find the same nonce. Browsers run the search in a Web Worker
 * (powworker.ts); `inlineSolver` runs it in slices on the calling thread.
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

/**
 * Try counters `from` .. `from + count - 1`; the first nonce that solves, or null. The
 * unit of work that solvers run in slices (so a page stays responsive) or in a worker.
 */
export function search(seed: Uint8Array, requestId: number, difficulty: number,
                       from: number, count: number): Uint8Array | null {
  const nonce = new Uint8Array(8);
  const view = new DataView(nonce.buffer);
  const msg = message(seed, requestId, nonce);
  const at = msg.length - 8;
  const msgView = new DataView(msg.buffer);
  for (let n = from; n < from + count; n++) {
    msgView.setUint32(at, Math.floor(n / 0x100000000), false);
    msgView.setUint32(at + 4, n >>> 0, false);
    if (leadingZeroBits(sha256(msg)) >= difficulty) {
      view.setUint32(0, Math.floor(n / 0x100000000), false);
      view.setUint32(4, n >>> 0, false);
      return nonce;
    }
  }
  return null;
}

/** Find a nonce (null when no work is needed); counters as 8-byte big-endian, from 0. */
export function solve(seed: Uint8Array, requestId: number, difficulty: number): Uint8Array | null {
  if (difficulty <= 0) return null;
  if (difficulty > MAX_DIFFICULTY) throw new RangeError("difficulty above 32");
  for (let from = 0; ; from += 1 << 20) {
    const nonce = search(seed, requestId, difficulty, from, 1 << 20);
    if (nonce !== null) return nonce;
  }
}

/**
 * How the SDK gets a proof of work solved: resolves with the nonce for `requestId`
 * (null when `difficulty` is 0). Browsers use a Web Worker (powworker.ts) so the page
 * never freezes; elsewhere `inlineSolver` runs the search in slices.
 */
export type PowSolver = (seed: Uint8Array, requestId: number, difficulty: number) => Promise<Uint8Array | null>;

/** Solve on the calling thread in slices of `slice` hashes, yielding between slices. */
export function inlineSolver(slice = 4096): PowSolver {
  return async (seed, requestId, difficulty) => {
    if (difficulty <= 0) return null;
    if (difficulty > MAX_DIFFICULTY) throw new RangeError("difficulty above 32");
    for (let from = 0; ; from += slice) {
      const nonce = search(seed, requestId, difficulty, from, slice);
      if (nonce !== null) return nonce;
      await new Promise<void>((resolve) => setTimeout(() => resolve(), 0));
    }
  };
}
