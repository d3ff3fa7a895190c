/**
 * The Noise Protocol Framework (revision 34), just what Haven uses: the NK pattern with
 * the 25519, ChaChaPoly and SHA256 functions. Written from the specification and checked
 * against the public cacophony vectors and the worked example of docs/protocol.md §16.
 * Primitives come from the audited @noble libraries; nothing here is a cipher of our own.
 *
 * NK:  <- s   (pre-message: the client knows the relay's static key)
 *      ...
 *      -> e, es
 *      <- e, ee
 *
 * Pure: no I/O, no clock. Randomness is used only to make an ephemeral key, and a test
 * may inject a fixed one.
 */
import { x25519 } from "@noble/curves/ed25519.js";
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { hmac } from "@noble/hashes/hmac.js";
import { ErrorCode, HavenError } from "./errors.js";

export const PROTOCOL_NAME = "Noise_NK_25519_ChaChaPoly_SHA256";
export const DHLEN = 32;
export const HASHLEN = 32;
export const TAGLEN = 16;
/** Noise's limit on any message. */
export const MAX_MESSAGE = 65535;
/** 2^64 - 1 is reserved: a cipher state that reaches it is exhausted. */
const MAX_NONCE = (1n << 64n) - 1n;

const EMPTY = new Uint8Array(0);

/** X25519 public keys of small order (the top bit is ignored, so it is masked first). */
const LOW_ORDER = [
  "0000000000000000000000000000000000000000000000000000000000000000",
  "0100000000000000000000000000000000000000000000000000000000000000",
  "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
  "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
];

export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function fromHex(hex: string): Uint8Array {
  if (hex.length % 2 !== 0 || /[^0-9a-f]/i.test(hex)) throw new Error("not hex");
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** The bytes of an ASCII string (protocol names, prologues): no TextEncoder needed. */
export function ascii(text: string): Uint8Array {
  return Uint8Array.from(text, (ch) => {
    const code = ch.charCodeAt(0);
    if (code > 0x7f) throw new Error("not ASCII");
    return code;
  });
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Refuse a public key that is not 32 bytes or is a low-order point (BAD_KEY). */
export function checkPublicKey(key: Uint8Array): void {
  if (key.length !== DHLEN) throw new HavenError(ErrorCode.BAD_KEY, "public key is not 32 bytes");
  const masked = Uint8Array.from(key);
  masked[31] = masked[31]! & 0x7f;
  if (LOW_ORDER.includes(toHex(masked))) {
    throw new HavenError(ErrorCode.BAD_KEY, "public key of low order");
  }
}

/** DH(private, public); an all-zero result (a small-order point) is BAD_KEY. */
function dh(priv: Uint8Array, pub: Uint8Array): Uint8Array {
  let shared: Uint8Array;
  try {
    shared = x25519.getSharedSecret(priv, pub);
  } catch {
    throw new HavenError(ErrorCode.BAD_KEY, "Diffie-Hellman failed");
  }
  if (shared.every((b) => b === 0)) throw new HavenError(ErrorCode.BAD_KEY, "all-zero DH output");
  return shared;
}

/** HKDF as Noise defines it (section 4.3): two or three 32-byte outputs. */
function hkdf(ck: Uint8Array, ikm: Uint8Array): [Uint8Array, Uint8Array] {
  const temp = hmac(sha256, ck, ikm);
  const out1 = hmac(sha256, temp, Uint8Array.of(1));
  const out2 = hmac(sha256, temp, concat(out1, Uint8Array.of(2)));
  return [out1, out2];
}

/** The 96-bit ChaChaPoly nonce: 4 zero bytes, then n as 8 bytes little-endian. */
function nonceBytes(n: bigint): Uint8Array {
  const out = new Uint8Array(12);
  new DataView(out.buffer).setBigUint64(4, n, true);
  return out;
}

/** A CipherState (section 5.1): a key, or none, and a 64-bit nonce. */
export class CipherState {
  private k: Uint8Array | null = null;
  private n = 0n;

  initializeKey(key: Uint8Array | null): void {
    this.k = key;
    this.n = 0n;
  }

  hasKey(): boolean {
    return this.k !== null;
  }

  /** The next nonce to be used (tests; resume-free sessions never need it). */
  get nonce(): bigint {
    return this.n;
  }

  encryptWithAd(ad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    if (this.k === null) return plaintext;
    if (this.n >= MAX_NONCE) throw new HavenError(ErrorCode.NONCE_EXHAUSTED);
    const out = chacha20poly1305(this.k, nonceBytes(this.n), ad).encrypt(plaintext);
    this.n += 1n;
    return out;
  }

  /** Decrypt; a failed tag leaves the nonce unchanged and raises DECRYPT_FAILED. */
  decryptWithAd(ad: Uint8Array, ciphertext: Uint8Array): Uint8Array {
    if (this.k === null) return ciphertext;
    if (this.n >= MAX_NONCE) throw new HavenError(ErrorCode.NONCE_EXHAUSTED);
    let out: Uint8Array;
    try {
      out = chacha20poly1305(this.k, nonceBytes(this.n), ad).decrypt(ciphertext);
    } catch {
      throw new HavenError(ErrorCode.DECRYPT_FAILED, "authentication failed");
    }
    this.n += 1n;
    return out;
  }
}

/** A SymmetricState (section 5.2). */
class SymmetricState {
  ck: Uint8Array;
  h: Uint8Array;
  readonly cipher = new CipherState();

  constructor(protocolName: string) {
    const name = ascii(protocolName);
    if (name.length <= HASHLEN) {
      this.h = new Uint8Array(HASHLEN);
      this.h.set(name);
    } else {
      this.h = sha256(name);
    }
    this.ck = this.h;
  }

  mixKey(ikm: Uint8Array): void {
    const [ck, temp] = hkdf(this.ck, ikm);
    this.ck = ck;
    this.cipher.initializeKey(temp);
  }

  mixHash(data: Uint8Array): void {
    this.h = sha256(concat(this.h, data));
  }

  encryptAndHash(plaintext: Uint8Array): Uint8Array {
    const c = this.cipher.encryptWithAd(this.h, plaintext);
    this.mixHash(c);
    return c;
  }

  decryptAndHash(ciphertext: Uint8Array): Uint8Array {
    const p = this.cipher.decryptWithAd(this.h, ciphertext);
    this.mixHash(ciphertext);
    return p;
  }

  split(): [CipherState, CipherState] {
    const [k1, k2] = hkdf(this.ck, EMPTY);
    const c1 = new CipherState();
    const c2 = new CipherState();
    c1.initializeKey(k1);
    c2.initializeKey(k2);
    return [c1, c2];
  }
}

export interface KeyPair {
  privateKey: Uint8Array;
  publicKey: Uint8Array;
}

export function keyPair(privateKey?: Uint8Array): KeyPair {
  const priv = privateKey ?? x25519.utils.randomSecretKey();
  return { privateKey: priv, publicKey: x25519.getPublicKey(priv) };
}

/** What a completed handshake yields: the two transport ciphers and the handshake hash. */
export interface HandshakeResult {
  send: CipherState;
  recv: CipherState;
  handshakeHash: Uint8Array;
}

/**
 * The NK initiator (the client): `writeMessage1`, then `readMessage2`, which returns the
 * transport ciphers. Any failure is a typed HavenError; the object is then unusable.
 */
export class NKInitiator {
  private readonly ss: SymmetricState;
  private readonly e: KeyPair;
  private readonly rs: Uint8Array;
  private step = 0;

  constructor(relayStaticKey: Uint8Array, prologue: Uint8Array, ephemeral?: Uint8Array) {
    checkPublicKey(relayStaticKey);
    this.rs = relayStaticKey;
    this.ss = new SymmetricState(PROTOCOL_NAME);
    this.ss.mixHash(prologue);
    this.ss.mixHash(relayStaticKey); // the pre-message: <- s
    this.e = keyPair(ephemeral);
  }

  /** -> e, es, payload */
  writeMessage1(payload: Uint8Array): Uint8Array {
    if (this.step !== 0) throw new HavenError(ErrorCode.HANDSHAKE_FAILED, "out of order");
    this.step = 1;
    this.ss.mixHash(this.e.publicKey);
    this.ss.mixKey(dh(this.e.privateKey, this.rs));
    return concat(this.e.publicKey, this.ss.encryptAndHash(payload));
  }

  /** <- e, ee, payload: returns the payload and the transport ciphers. */
  readMessage2(message: Uint8Array): { payload: Uint8Array; result: HandshakeResult } {
    if (this.step !== 1) throw new HavenError(ErrorCode.HANDSHAKE_FAILED, "out of order");
    this.step = 2;
    if (message.length < DHLEN + TAGLEN || message.length > MAX_MESSAGE) {
      throw new HavenError(ErrorCode.HANDSHAKE_FAILED, "message 2 has a wrong length");
    }
    const re = message.subarray(0, DHLEN);
    checkPublicKey(re);
    this.ss.mixHash(re);
    this.ss.mixKey(dh(this.e.privateKey, re));
    let payload: Uint8Array;
    try {
      payload = this.ss.decryptAndHash(message.subarray(DHLEN));
    } catch (err) {
      if (err instanceof HavenError && err.code === ErrorCode.DECRYPT_FAILED) {
        throw new HavenError(ErrorCode.HANDSHAKE_FAILED, "message 2 did not authenticate");
      }
      throw err;
    }
    const [send, recv] = this.ss.split();
    return { payload, result: { send, recv, handshakeHash: this.ss.h } };
  }
}

/**
 * The NK responder (what a relay does). The SDK never plays it in production; it exists
 * so the SDK's Noise can be checked against the vectors from both sides.
 */
export class NKResponder {
  private readonly ss: SymmetricState;
  private readonly s: KeyPair;
  private readonly e: KeyPair;
  private re: Uint8Array | null = null;

  constructor(staticPrivateKey: Uint8Array, prologue: Uint8Array, ephemeral?: Uint8Array) {
    this.s = keyPair(staticPrivateKey);
    this.ss = new SymmetricState(PROTOCOL_NAME);
    this.ss.mixHash(prologue);
    this.ss.mixHash(this.s.publicKey);
    this.e = keyPair(ephemeral);
  }

  readMessage1(message: Uint8Array): Uint8Array {
    if (message.length < DHLEN + TAGLEN || message.length > MAX_MESSAGE) {
      throw new HavenError(ErrorCode.HANDSHAKE_FAILED, "message 1 has a wrong length");
    }
    const re = message.subarray(0, DHLEN);
    checkPublicKey(re);
    this.re = re;
    this.ss.mixHash(re);
    this.ss.mixKey(dh(this.s.privateKey, re));
    return this.ss.decryptAndHash(message.subarray(DHLEN));
  }

  writeMessage2(payload: Uint8Array): { message: Uint8Array; result: HandshakeResult } {
    if (this.re === null) throw new HavenError(ErrorCode.HANDSHAKE_FAILED, "out of order");
    this.ss.mixHash(this.e.publicKey);
    this.ss.mixKey(dh(this.e.privateKey, this.re));
    const message = concat(this.e.publicKey, this.ss.encryptAndHash(payload));
    const [c1, c2] = this.ss.split();
    return { message, result: { send: c2, recv: c1, handshakeHash: this.ss.h } };
  }
}
