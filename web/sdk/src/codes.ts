/**
 * Room codes as people type them (docs/protocol.md §11.1): 128 random bits written as 28
 * base-32 symbols with a mod-1021 check, grouped by four. Parsing here lets a page catch a
 * typo before anything is sent (the relay checks again: 111 BAD_CODE), and links carry
 * the code in the URL fragment, which browsers never send to any server.
 */
import { ErrorCode, HavenError } from "./errors.js";

const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";
const READ: Record<string, number> = Object.fromEntries(
  [...ALPHABET].map((c, i) => [c, i] as [string, number]).concat([["o", 0], ["i", 1], ["l", 1]]),
);
const DASHES = /[\s\-\u2010\u2011\u2012\u2013\u2014\u2212]/gu;
const P = 1021n;
const TWO_128 = 1n << 128n;

function badCode(): HavenError {
  // Never repeat the input: it may be a secret.
  return new HavenError(ErrorCode.BAD_CODE, "that room code is not valid; check it and try again");
}

function encode(data: bigint): string {
  const n = data * 1024n + ((((-data * 1024n) % P) + P) % P);
  let symbols = "";
  let rest = n;
  for (let i = 0; i < 28; i++) {
    symbols = ALPHABET[Number(rest % 32n)]! + symbols;
    rest /= 32n;
  }
  return symbols.match(/.{4}/g)!.join("-");
}

/** The canonical form of a typed room code; throws HavenError(BAD_CODE) if it is wrong. */
export function parseRoomCode(text: string): string {
  if (text.length > 128) throw badCode();
  const symbols = text.replace(DASHES, "").toLowerCase();
  if (symbols.length !== 28) throw badCode();
  let n = 0n;
  for (const c of symbols) {
    const v = READ[c];
    if (v === undefined) throw badCode();
    n = n * 32n + BigInt(v);
  }
  const data = n / 1024n;
  const check = n % 1024n;
  if (data >= TWO_128 || check !== (((-data * 1024n) % P) + P) % P) throw badCode();
  return encode(data);
}

/** Whether `text` is a valid room code in any accepted spelling. */
export function isRoomCode(text: string): boolean {
  try {
    parseRoomCode(text);
    return true;
  } catch {
    return false;
  }
}

/**
 * A join link: `base` (the group page's address) with the code in the fragment
 * (`#room=<code>`), so the code reaches the page's script but no server or log.
 */
export function roomLink(base: string, code: string): string {
  return `${base.split("#")[0]}#room=${parseRoomCode(code)}`;
}

/** The room code in a link's fragment (`#room=...`, or a bare code after `#`), or null. */
export function codeFromFragment(fragment: string): string | null {
  const raw = fragment.startsWith("#") ? fragment.slice(1) : fragment;
  const value = raw.startsWith("room=") ? raw.slice(5) : raw;
  let decoded: string;
  try {
    decoded = decodeURIComponent(value);
  } catch {
    return null;
  }
  return isRoomCode(decoded) ? parseRoomCode(decoded) : null;
}
