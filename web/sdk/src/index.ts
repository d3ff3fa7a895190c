/**
 * Haven's TypeScript SDK. This first part is the protocol core (Noise NK, framing, typed
 * errors), pure and portable: no Node-only or DOM-only API, so it runs in browsers,
 * Node >= 20 and React Native (with a `crypto.getRandomValues` polyfill such as
 * react-native-get-random-values, which @noble uses for key generation).
 */
export { ErrorCode, HINTS } from "./errorcodes.js";
export { HavenError } from "./errors.js";
export {
  CipherState, NKInitiator, NKResponder, PROTOCOL_NAME, ascii, checkPublicKey, fromHex,
  keyPair, toHex,
} from "./noise.js";
import { ascii } from "./noise.js";
export type { HandshakeResult, KeyPair } from "./noise.js";
export { BUCKETS, MAX_ENVELOPE, Transport, WIRE_SIZES, pad, unpad } from "./frames.js";
export {
  MAX_ARRAY_LEN, MAX_DEPTH, MAX_ITEMS, MAX_MAP_LEN, decodeEnvelope, encodeEnvelope, scan,
} from "./codec.js";
export type { Envelope } from "./codec.js";

/** The prologue naming protocol version 1 (docs/protocol.md §3). */
export const PROLOGUE = ascii("haven.v1");
export { ClientSession, VERSIONS } from "./session.js";
export type { SessionEvent } from "./session.js";
export { HavenConnection, SUBPROTOCOL } from "./client.js";
export type { ConnectOptions, WebSocketConstructor, WebSocketLike } from "./client.js";
export { MAX_DIFFICULTY, leadingZeroBits, solve as solvePow, verify as verifyPow } from "./pow.js";
