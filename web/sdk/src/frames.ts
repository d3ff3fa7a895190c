/**
 * Haven's transport framing (docs/protocol.md §4): every plaintext is
 * `L (2 bytes, big-endian) || envelope || zero bytes` up to one of five bucket sizes, so
 * message lengths leak little; on the wire each is one Noise transport message.
 */
import { ErrorCode, HavenError } from "./errors.js";
import { CipherState, MAX_MESSAGE, TAGLEN } from "./noise.js";

export const BUCKETS: readonly number[] = [256, 1024, 4096, 16384, MAX_MESSAGE - TAGLEN];
export const WIRE_SIZES: readonly number[] = BUCKETS.map((b) => b + TAGLEN);
export const MAX_ENVELOPE = BUCKETS[BUCKETS.length - 1]! - 2;
const EMPTY = new Uint8Array(0);

/** Length-prefix the envelope and zero-pad it to the smallest bucket that fits. */
export function pad(envelope: Uint8Array): Uint8Array {
  const size = envelope.length;
  if (size > MAX_ENVELOPE) {
    throw new HavenError(ErrorCode.TOO_LARGE, "envelope larger than the largest frame");
  }
  const bucket = BUCKETS.find((b) => size + 2 <= b)!;
  const out = new Uint8Array(bucket);
  out[0] = size >> 8;
  out[1] = size & 0xff;
  out.set(envelope, 2);
  return out;
}

/** Undo `pad`; anything but a bucket-sized, zero-padded plaintext is BAD_PADDING. */
export function unpad(plaintext: Uint8Array): Uint8Array {
  const total = plaintext.length;
  if (!BUCKETS.includes(total)) {
    throw new HavenError(ErrorCode.BAD_PADDING, "plaintext is not a bucket size");
  }
  const end = 2 + ((plaintext[0]! << 8) | plaintext[1]!);
  if (end > total) throw new HavenError(ErrorCode.BAD_PADDING, "length prefix beyond the frame");
  for (let i = end; i < total; i++) {
    if (plaintext[i] !== 0) throw new HavenError(ErrorCode.BAD_PADDING, "nonzero padding");
  }
  return plaintext.subarray(2, end);
}

/** Both directions of a connection's encrypted transport, from a completed handshake. */
export class Transport {
  constructor(
    private readonly send: CipherState,
    private readonly recv: CipherState,
  ) {
    if (!send.hasKey() || !recv.hasKey()) {
      throw new HavenError(ErrorCode.HANDSHAKE_FAILED, "transport needs a completed handshake");
    }
  }

  /** Pad and encrypt one envelope into one wire message. */
  seal(envelope: Uint8Array): Uint8Array {
    return this.send.encryptWithAd(EMPTY, pad(envelope));
  }

  /** Check the size, authenticate, decrypt and unpad one wire message. */
  open(message: Uint8Array): Uint8Array {
    if (!WIRE_SIZES.includes(message.length)) {
      if (message.length > MAX_MESSAGE) {
        throw new HavenError(ErrorCode.TOO_LARGE, "frame over 65535 bytes");
      }
      throw new HavenError(ErrorCode.BAD_PADDING, "frame is not a wire size");
    }
    return unpad(this.recv.decryptWithAd(EMPTY, message));
  }
}
