/**
 * One WebSocket to the relay with its `ClientSession`: the unit that drops and is
 * replaced when the SDK reconnects. It moves bytes, matches replies to waiters and
 * reports the drop; deciding what messages mean (rooms, queues, resume) is haven.ts's job.
 */
import type { Envelope } from "./codec.js";
import { ConnectionLost, ErrorCode, HavenError, closeError, fromEnvelope } from "./errors.js";
import type { Challenge, Welcome } from "./messages.js";
import { ClientSession } from "./session.js";

/** The part of the WebSocket interface the SDK uses (browser, React Native, `ws`). */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** The WebSocket subprotocol naming protocol version 1 (docs/protocol.md §2). */
export const SUBPROTOCOL = "haven.v1";
const PROLOGUE = new TextEncoder().encode("haven.v1");

/** A request waiting for its reply; `value` is what haven.ts attached (a Room, say). */
interface Waiter {
  resolve: (reply: { envelope: Envelope; value: unknown }) => void;
  reject: (error: Error) => void;
}

export class Link {
  /** The current proof-of-work challenge (welcome's, then `challenge` events). */
  challenge: Challenge;
  /** Seconds the relay asked us to wait before reconnecting (`draining`). */
  retryAfter = 0;
  /** Why the link ended, once it has (null while it is up). */
  lost: ConnectionLost | null = null;
  /** Called once per message after the handshake (replies included). */
  onEnvelope: (envelope: Envelope) => void = () => undefined;
  /** Called once when the link ends, for whatever reason. */
  onDown: (link: Link) => void = () => undefined;
  /** Milliseconds timestamp of the last frame sent (for keepalive pings). */
  lastSent = Date.now();
  private readonly waiters = new Map<number, Waiter>();

  private constructor(
    private readonly ws: WebSocketLike,
    private readonly session: ClientSession,
    readonly welcome: Welcome,
  ) {
    this.challenge = welcome.challenge;
  }

  /** Open a WebSocket, run the handshake; resolves once `welcome` has arrived. */
  static open(url: string, relayKey: Uint8Array, Ctor: WebSocketConstructor,
              timeoutMs: number): Promise<Link> {
    return new Promise((resolve, reject) => {
      const session = new ClientSession(relayKey, PROLOGUE);
      let ws: WebSocketLike;
      try {
        ws = new Ctor(url, [SUBPROTOCOL]);
      } catch (error) {
        reject(new ConnectionLost(`cannot open ${url}: ${(error as Error).message}`));
        return;
      }
      ws.binaryType = "arraybuffer";
      let link: Link | null = null;
      let settled = false;
      const fail = (error: HavenError) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(error);
        try {
          ws.close(1000);
        } catch {
          // Closing a socket that never opened may throw; it is gone either way.
        }
      };
      const timer = setTimeout(() => fail(new ConnectionLost("timed out connecting to the relay")), timeoutMs);
      ws.onopen = () => ws.send(session.start());
      ws.onerror = () => undefined; // onclose follows with the code
      ws.onclose = (ev) => {
        if (link !== null) link.down(closeError(ev.code, ev.reason));
        else if (ev.code >= 4000 && ev.code < 5000) fail(closeError(ev.code, ev.reason));
        else fail(new ConnectionLost(`could not connect to the relay (${ev.code})`, ev.code));
      };
      ws.onmessage = (ev) => {
        if (!(ev.data instanceof ArrayBuffer)) {
          // The protocol is binary only: a text frame means this is not a Haven relay.
          const error = new ConnectionLost("the relay sent a text frame", 1003);
          if (link !== null) link.fail(error);
          else fail(new HavenError(ErrorCode.HANDSHAKE_FAILED, "the relay sent a text frame"));
          return;
        }
        const data = new Uint8Array(ev.data);
        if (link !== null) {
          link.receive(data);
          return;
        }
        try {
          const out = session.receive(data);
          if (out.kind !== "welcome") throw new HavenError(ErrorCode.HANDSHAKE_FAILED, "no welcome");
          settled = true;
          clearTimeout(timer);
          link = new Link(ws, session, out.welcome as unknown as Welcome);
          resolve(link);
        } catch (error) {
          fail(error instanceof HavenError ? error
            : new HavenError(ErrorCode.HANDSHAKE_FAILED, "the handshake failed: is the relay key right?"));
        }
      };
    });
  }

  get broken(): boolean {
    return this.lost !== null;
  }

  /** The id the next request gets unless one is reserved further ahead. */
  get nextId(): number {
    return this.session.nextId;
  }

  /**
   * Send request `t` and wait for its reply. `id` (above every id used so far) is for a
   * request whose proof of work was solved for that id. Rejects with a HavenError for an
   * `error` reply, ConnectionLost if the link drops first.
   */
  request(t: string, fields: Record<string, unknown> = {}, id?: number):
      Promise<{ envelope: Envelope; value: unknown }> {
    if (this.lost !== null) return Promise.reject(this.lost);
    const rid = id ?? this.session.nextId;
    let frame: Uint8Array;
    try {
      frame = this.session.seal(t, rid, fields);
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise((resolve, reject) => {
      this.waiters.set(rid, { resolve, reject });
      this.lastSent = Date.now();
      try {
        this.ws.send(frame);
      } catch {
        this.fail(new ConnectionLost("the WebSocket refused to send"));
      }
    });
  }

  /** Resolve request `id` with its reply (and what it created), or reject it. */
  settle(id: number, envelope: Envelope, value: unknown = undefined): void {
    const waiter = this.waiters.get(id);
    if (waiter === undefined) return;
    this.waiters.delete(id);
    if (envelope.t === "error") waiter.reject(fromEnvelope(envelope));
    else waiter.resolve({ envelope, value });
  }

  /** End the link now (a broken frame, `draining`, the application closing). */
  fail(error: ConnectionLost, code = 1000): void {
    if (this.lost !== null) return;
    try {
      this.ws.close(code);
    } catch {
      // Already closing.
    }
    this.down(error);
  }

  private receive(data: Uint8Array): void {
    if (this.lost !== null) return;
    let envelope: Envelope;
    try {
      const out = this.session.receive(data);
      if (out.kind === "welcome") throw new HavenError(ErrorCode.UNEXPECTED_MESSAGE, "a second welcome");
      envelope = out.envelope;
    } catch (error) {
      // A frame that fails authentication or framing breaks the connection for good;
      // an envelope we cannot decode (a newer relay?) fails only its own request.
      if (error instanceof HavenError && (error.code === ErrorCode.MALFORMED
          || error.code === ErrorCode.BAD_FIELD)) {
        return;
      }
      this.fail(new ConnectionLost(`a broken frame from the relay: ${(error as Error).message}`));
      return;
    }
    this.onEnvelope(envelope);
  }

  private down(error: ConnectionLost): void {
    if (this.lost !== null) return;
    this.lost = error;
    for (const [, waiter] of this.waiters) waiter.reject(error);
    this.waiters.clear();
    this.onDown(this);
  }
}
