/**
 * Typed errors: every failure the SDK reports carries a wire `ErrorCode` (the same numbers
 * as the relay's, generated from protocol/errors.py into errorcodes.ts), so applications
 * branch on `error.code` and show `HINTS[code]`; nothing is parsed out of messages.
 */
import { ErrorCode } from "./errorcodes.js";

export { ErrorCode };

/** An error with the protocol's code; `message` never contains a key, token or body. */
export class HavenError extends Error {
  readonly code: ErrorCode;
  /** Seconds after which a retry makes sense, when the relay said so. */
  readonly retryAfter: number | undefined;

  constructor(code: ErrorCode, message?: string, retryAfter?: number) {
    super(message ?? ErrorCode[code] ?? `error ${code}`);
    this.name = "HavenError";
    this.code = code;
    this.retryAfter = retryAfter;
  }

  /** The code's range (docs/protocol.md §15): protocol, rooms, auth, limits or relay. */
  get category(): "protocol" | "rooms" | "auth" | "limits" | "relay" | "unknown" {
    const range = Math.floor(this.code / 100);
    return (["unknown", "protocol", "rooms", "auth", "limits", "relay"] as const)[range] ?? "unknown";
  }
}

/**
 * The connection dropped (or was closed) before a reply came. For a request in flight the
 * outcome is unknown: a `send` may or may not have been delivered. `closeCode` is the
 * WebSocket close code; `code` the ErrorCode behind a 4xxx close (else INTERNAL).
 */
export class ConnectionLost extends HavenError {
  readonly closeCode: number | undefined;

  constructor(message: string, closeCode?: number) {
    const typed = closeCode !== undefined && closeCode >= 4000 && closeCode < 5000;
    super(typed ? (closeCode - 4000) as ErrorCode : ErrorCode.INTERNAL, message);
    this.name = "ConnectionLost";
    this.closeCode = closeCode;
  }

  /** Whether the relay closed with a typed code (4000 + ErrorCode). */
  get typed(): boolean {
    return this.closeCode !== undefined && this.closeCode >= 4000 && this.closeCode < 5000;
  }
}

/** The WebSocket close codes that mean "dropped" without a reason from the relay. */
const PLAIN_CLOSES = new Set([1000, 1005, 1006]);

/** The error describing a WebSocket close with `code` (close-code mapping, one place). */
export function closeError(code: number | undefined, reason: string): ConnectionLost {
  if (code === undefined || PLAIN_CLOSES.has(code)) {
    return new ConnectionLost(reason || "connection lost", code);
  }
  if (code === 1001) return new ConnectionLost(reason || "the relay is going away", code);
  return new ConnectionLost(reason || `the relay closed the connection (${code})`, code);
}

/** The error an `error` envelope stands for. */
export function fromEnvelope(envelope: Record<string, unknown>): HavenError {
  const retry = envelope["retry_after"];
  return new HavenError(
    Number(envelope["code"]) as ErrorCode,
    String(envelope["message"] ?? ""),
    typeof retry === "number" ? retry : undefined,
  );
}

/** Failures a reconnect cannot fix: the wrong pinned key, an unsupported version. */
export function isFatal(error: unknown): boolean {
  if (!(error instanceof HavenError)) return false;
  if (error instanceof ConnectionLost && !error.typed) return false;
  return error.code === ErrorCode.HANDSHAKE_FAILED || error.code === ErrorCode.UNSUPPORTED_VERSION
    || error.code === ErrorCode.BAD_KEY;
}
