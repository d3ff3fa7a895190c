// Pure parts of the SDK: room codes (against codes made by protocol/codes.py), the relay
// key's text form, the backoff schedule, and a room's early-event buffer.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  EARLY_EVENTS, ErrorCode, HavenError, Room, backoffDelays, codeFromFragment, formatRelayKey,
  isRoomCode, parseRelayKey, parseRoomCode, roomLink,
} from "../dist/index.js";

const CODES = JSON.parse(readFileSync(new URL("./roomcodes.json", import.meta.url), "utf8"));

test("room codes made by the relay parse to themselves, in any spelling", () => {
  assert.equal(parseRoomCode("0004-1061-050r-3gg2-8a1c-60t3-gffk"), "0004-1061-050r-3gg2-8a1c-60t3-gffk");
  for (const { code } of CODES) {
    assert.equal(parseRoomCode(code), code);
    assert.equal(parseRoomCode(code.toUpperCase().replaceAll("-", " ")), code);
    assert.equal(parseRoomCode(code.replaceAll("-", "").replaceAll("0", "o").replaceAll("1", "l")), code);
    assert.equal(parseRoomCode(` ${code.replaceAll("-", "\u2013")} `), code);
  }
});

test("every single-symbol typo and adjacent swap is refused, without echoing the input", () => {
  const alphabet = "0123456789abcdefghjkmnpqrstvwxyz";
  const code = CODES[5].code.replaceAll("-", "");
  for (let i = 0; i < code.length; i++) {
    for (const c of alphabet) {
      if (c === code[i]) continue;
      const typo = code.slice(0, i) + c + code.slice(i + 1);
      assert.equal(isRoomCode(typo), false, typo);
    }
    if (i + 1 < code.length && code[i] !== code[i + 1]) {
      const swapped = code.slice(0, i) + code[i + 1] + code[i] + code.slice(i + 2);
      assert.equal(isRoomCode(swapped), false, swapped);
    }
  }
  assert.throws(() => parseRoomCode(`${code}x`), (e) => e instanceof HavenError && e.code === ErrorCode.BAD_CODE
    && !e.message.includes(code));
  assert.throws(() => parseRoomCode("u".repeat(28)), (e) => e.code === ErrorCode.BAD_CODE);
  assert.throws(() => parseRoomCode("0".repeat(200)), (e) => e.code === ErrorCode.BAD_CODE);
});

test("links carry the code in the fragment only", () => {
  const code = CODES[7].code;
  const link = roomLink("https://pages.example.org/group.html?x#old", code.toUpperCase());
  assert.equal(link, `https://pages.example.org/group.html?x#room=${code}`);
  assert.equal(codeFromFragment(new URL(link).hash), code);
  assert.equal(codeFromFragment(`#${code}`), code);
  assert.equal(codeFromFragment("#room=not-a-code"), null);
  assert.equal(codeFromFragment("#room=%E0%A4%A"), null);
  assert.equal(codeFromFragment(""), null);
});

test("the relay key's text form round-trips and only the canonical spelling is accepted", () => {
  const raw = Uint8Array.from({ length: 32 }, (_, i) => i * 7);
  const text = formatRelayKey(raw);
  assert.equal(text.length, 43);
  assert.equal(text, Buffer.from(raw).toString("base64url"));
  assert.deepEqual(parseRelayKey(text), raw);
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const sibling = text.slice(0, -1) + alphabet[alphabet.indexOf(text.at(-1)) ^ 1]; // a padding bit set
  assert.throws(() => parseRelayKey(sibling), (e) => e.code === ErrorCode.BAD_KEY);
  assert.throws(() => parseRelayKey(`${text}=`), (e) => e.code === ErrorCode.BAD_KEY);
  assert.throws(() => parseRelayKey(new Uint8Array(31)), (e) => e.code === ErrorCode.BAD_KEY);
});

test("backoff: jittered, growing, capped, and never longer than the budget in total", () => {
  const low = [...backoffDelays(60, 0, () => 0)];
  const high = [...backoffDelays(60, 0, () => 0.999999)];
  assert.ok(Math.abs(low.reduce((a, b) => a + b, 0) - 60) < 1e-9);
  assert.ok(Math.abs(high.reduce((a, b) => a + b, 0) - 60) < 1e-9);
  assert.equal(low[0], 0.1);
  assert.ok(low.every((d) => d > 0 && d <= 10));
  for (let i = 1; i < 5; i++) assert.ok(high[i] > high[i - 1]);
  assert.equal([...backoffDelays(10, 5, () => 0)][0], 5, "retry_after bounds the first delay");
});

test("a room buffers events until its first listener, then delivers them in order", () => {
  const seat = { room: CODES[1].code, alias: "calm-otter-12", token: new Uint8Array(32), seq: 1, members: 1, kind: "group" };
  const room = new Room({ call: async () => ({}), forgetRoom() {}, forgetTicket() {} }, seat);
  for (let seq = 2; seq < EARLY_EVENTS + 12; seq++) room.dispatch({ t: "deliver", room: seat.room, seq, sender: "x", body: new Uint8Array() });
  const seen = [];
  room.on("event", (e) => seen.push(e.seq));
  assert.equal(seen.length, EARLY_EVENTS, "the buffer is bounded");
  assert.equal(seen[0], 12);
  room.dispatch({ t: "deliver", room: seat.room, seq: 5000, sender: "x", body: new Uint8Array() });
  assert.equal(seen.at(-1), 5000);
  let ended;
  room.end(null);
  room.on("end", (e) => { ended = e; });
  assert.equal(ended, null, "end fires for a late listener too");
});
