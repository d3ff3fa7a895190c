/**
 * Haven's TypeScript SDK: `Haven.connect(...)` for the connection, rooms and queues (with
 * transparent reconnect and exactly-once resume), and the protocol core under it (Noise
 * NK, framing, codec, typed errors). Pure and portable: no Node-only or DOM-only API, so
 * it runs in browsers, Node >= 20 and React Native (with a `crypto.getRandomValues`
 * polyfill such as react-native-get-random-values, which @noble uses for key generation).
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
export { SUBPROTOCOL } from "./link.js";
export type { WebSocketConstructor, WebSocketLike } from "./link.js";
export {
  MAX_DIFFICULTY, inlineSolver, leadingZeroBits, search as searchPow, solve as solvePow,
  verify as verifyPow,
} from "./pow.js";
export type { PowSolver } from "./pow.js";
export { Haven, POW_ID_GAP, RESUME_RATE_RETRIES, SYNC_POW_MAX } from "./haven.js";
export type { ConnectionState, HavenEvents, HavenOptions } from "./haven.js";
export { EARLY_EVENTS, QueueTicket, Room, toBody } from "./room.js";
export type { RoomEvents, TicketEvents } from "./room.js";
export { ConnectionLost, closeError, isFatal } from "./errors.js";
export { backoffDelays } from "./backoff.js";
export { codeFromFragment, isRoomCode, parseRoomCode, roomLink } from "./codes.js";
export { formatRelayKey, parseRelayKey } from "./keys.js";
export { Emitter } from "./emitter.js";
export type * from "./messages.js";
export { defaultSolver, workerSolver } from "./powworker.js";
