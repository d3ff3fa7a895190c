/**
 * A minimal promise-based shell over `ClientSession` and a WebSocket. It works with any
 * WebSocket constructor (browsers' and React Native's global one; in Node 20, `ws`), so
 * the core stays free of platform APIs. Reconnect, resume and the room-level API are
 * still to come; this is the base they will stand on.
 */
import type { Envelope } from "./codec.js";
import { ErrorCode, HavenError } from "./errors.js";
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

export const SUBPROTOCOL = "haven.v1";

export interface ConnectOptions {
  WebSocket?: WebSocketConstructor;
  prologue: Uint8Array;
  onEvent?: (event: Envelope) => void;
  onClose?: (code: number) => void;
}

export class HavenConnection {
  private readonly pending = new Map<number, { resolve: (e: Envelope) => void; reject: (e: Error) => void }>();

  private constructor(
    private readonly ws: WebSocketLike,
    private readonly session: ClientSession,
    readonly welcome: Envelope,
  ) {}

  static connect(url: string, relayKey: Uint8Array, options: ConnectOptions): Promise<HavenConnection> {
    const Ctor =
      options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (Ctor === undefined) {
      return Promise.reject(new Error("no WebSocket: pass options.WebSocket (e.g. from 'ws')"));
    }
    const session = new ClientSession(relayKey, options.prologue);
    const ws = new Ctor(url, [SUBPROTOCOL]);
    ws.binaryType = "arraybuffer";
    return new Promise((resolve, reject) => {
      let conn: HavenConnection | null = null;
      ws.onopen = () => ws.send(session.start());
      ws.onerror = () => {
        if (conn === null) reject(new HavenError(ErrorCode.HANDSHAKE_FAILED, "cannot connect"));
      };
      ws.onclose = (ev) => {
        if (conn === null) reject(new HavenError(ErrorCode.HANDSHAKE_FAILED, `closed ${ev.code}`));
        else conn.closed(ev.code);
        options.onClose?.(ev.code);
      };
      ws.onmessage = (ev) => {
        const data = new Uint8Array(ev.data as ArrayBuffer);
        try {
          const out = session.receive(data);
          if (out.kind === "welcome") {
            conn = new HavenConnection(ws, session, out.welcome);
            resolve(conn);
          } else if (out.kind === "reply") {
            conn?.settle(out.id, out.envelope);
          } else {
            options.onEvent?.(out.envelope);
          }
        } catch (err) {
          // A frame that fails authentication ends the connection (it is broken).
          ws.close(1000);
          if (conn === null) reject(err as Error);
        }
      };
    });
  }

  /** Send a request; resolves with its reply, rejects with a typed HavenError. */
  request(t: string, fields: Record<string, unknown> = {}): Promise<Envelope> {
    const { id, frame } = this.session.request(t, fields);
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(frame);
    });
  }

  close(): void {
    this.ws.close(1000);
  }

  private settle(id: number, envelope: Envelope): void {
    const waiter = this.pending.get(id);
    if (waiter === undefined) return;
    this.pending.delete(id);
    if (envelope.t === "error") {
      waiter.reject(new HavenError(Number(envelope["code"]) as ErrorCode,
        String(envelope["message"] ?? "")));
    } else {
      waiter.resolve(envelope);
    }
  }

  private closed(code: number): void {
    for (const [, waiter] of this.pending) {
      waiter.reject(new HavenError(ErrorCode.INTERNAL, `connection closed (${code})`));
    }
    this.pending.clear();
  }
}
