/**
 * Typed errors: every failure the SDK reports carries a wire `ErrorCode` (the same numbers
 * as the relay's, generated from protocol/errors.py into errorcodes.ts).
 */
import { ErrorCode } from "./errorcodes.js";

export { ErrorCode };

/** An error with the protocol's code; `message` never contains a key, token or body. */
export class HavenError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message?: string) {
    super(message ?? ErrorCode[code] ?? `error ${code}`);
    this.name = "HavenError";
    this.code = code;
  }
}
