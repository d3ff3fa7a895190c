/**
 * The client side of one Haven connection, sans-IO: bytes in, events and bytes out.
 * It owns the NK handshake (hello/welcome and version refusal), request ids and reply
 * matching, and sealing/opening transport frames; the shell that owns the WebSocket
 * (client.ts, or an application's own) only moves bytes.
 */
import { decodeEnvelope, encodeEnvelope, type Envelope } from "./codec.js";
import { ErrorCode, HavenError } from "./errors.js";
import { Transport, pad, unpad } from "./frames.js";
import { NKInitiator } from "./noise.js";

/** Protocol versions this SDK speaks. */
export const VERSIONS = [1];

export type SessionEvent =
  | { kind: "welcome"; welcome: Envelope }
  | { kind: "reply"; id: number; envelope: Envelope }
  | { kind: "event"; envelope: Envelope };

export class ClientSession {
  private readonly handshake: NKInitiator;
  private transport: Transport | null = null;
  private lastId = 0;
  /** The relay's `welcome` (limits, proof-of-work challenge) once the handshake is done. */
  welcome: Envelope | null = null;

  constructor(relayKey: Uint8Array, prologue: Uint8Array, ephemeral?: Uint8Array) {
    this.handshake = new NKInitiator(relayKey, prologue, ephemeral);
  }

  /** Noise message 1, carrying `hello`: the first binary WebSocket message to send. */
  start(): Uint8Array {
    return this.handshake.writeMessage1(pad(encodeEnvelope({ t: "hello", versions: VERSIONS })));
  }

  /** Take one binary WebSocket message from the relay; what it meant. */
  receive(message: Uint8Array): SessionEvent {
    if (this.transport === null) {
      const { payload, result } = this.handshake.readMessage2(message);
      const envelope = decodeEnvelope(unpad(payload));
      if (envelope.t === "error") {
        throw new HavenError(Number(envelope["code"]) as ErrorCode, String(envelope["message"] ?? ""));
      }
      if (envelope.t !== "welcome") {
        throw new HavenError(ErrorCode.HANDSHAKE_FAILED, "the relay did not answer with welcome");
      }
      this.transport = new Transport(result.send, result.recv);
      this.welcome = envelope;
      return { kind: "welcome", welcome: envelope };
    }
    const envelope = decodeEnvelope(this.transport.open(message));
    const id = envelope["id"];
    if (typeof id === "number" && id > 0) return { kind: "reply", id, envelope };
    return { kind: "event", envelope };
  }

  /** The id the next request will get unless another is reserved. */
  get nextId(): number {
    return this.lastId + 1;
  }

  /** Seal a request: it gets the next id (ids strictly increase); returns id and bytes. */
  request(t: string, fields: Record<string, unknown> = {}): { id: number; frame: Uint8Array } {
    const id = this.lastId + 1;
    return { id, frame: this.seal(t, id, fields) };
  }

  /**
   * Seal a request under a chosen `id`, which must be above every id used so far: a
   * proof of work is solved for an id reserved ahead (docs/protocol.md §10), while other
   * requests go out with lower ids meanwhile.
   */
  seal(t: string, id: number, fields: Record<string, unknown> = {}): Uint8Array {
    if (this.transport === null) {
      throw new HavenError(ErrorCode.UNEXPECTED_MESSAGE, "the handshake is not finished");
    }
    if (!Number.isSafeInteger(id) || id <= this.lastId) {
      throw new RangeError("request ids must strictly increase");
    }
    const frame = this.transport.seal(encodeEnvelope({ t, id, ...fields }));
    this.lastId = id;
    return frame;
  }
}
