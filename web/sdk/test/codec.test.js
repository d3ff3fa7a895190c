// The TypeScript codec against envelopes written by the Python codec (golden.json, made by
// web/sdk/scripts/gen_golden.py): each decodes and re-encodes byte for byte, and each
// refused case is refused with the same code, before anything is built.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { ErrorCode, HavenError, decodeEnvelope, encodeEnvelope, fromHex, scan, solvePow, toHex,
  verifyPow }
  from "../dist/index.js";

const golden = JSON.parse(readFileSync(join(dirname(fileURLToPath(import.meta.url)), "golden.json")));

for (const { type, hex } of golden.envelopes) {
  test(`golden ${type} (${hex.length / 2} bytes) decodes and re-encodes byte for byte`, () => {
    const envelope = decodeEnvelope(fromHex(hex));
    assert.equal(envelope.t, type);
    assert.equal(toHex(encodeEnvelope(envelope)), hex);
  });
}

for (const { hex, code, why } of golden.refused) {
  test(`refused like the relay refuses it: ${why}`, () => {
    assert.throws(() => decodeEnvelope(fromHex(hex)),
      (e) => e instanceof HavenError && e.code === code);
  });
}

test("the depth limit counts the top-level map as depth 1 (depth 4 is allowed)", () => {
  scan(fromHex("81a1789191" + "90")); // {"x": [[[]]]}: depth 4
  assert.throws(() => scan(fromHex("81a178919191" + "90")), (e) => e.code === ErrorCode.MALFORMED);
});

test("an envelope over 65,517 bytes is TOO_LARGE before it is looked at", () => {
  assert.throws(() => scan(new Uint8Array(65518)), (e) => e.code === ErrorCode.TOO_LARGE);
});

test("a container bomb is refused without building it", () => {
  const bomb = new Uint8Array(60000).fill(0x91);
  assert.throws(() => decodeEnvelope(bomb), (e) => e.code === ErrorCode.MALFORMED);
});

test("proof of work: Python's solutions verify, and the TS search finds the same nonce", () => {
  for (const { seed, id, difficulty, nonce } of golden.proofs) {
    assert.ok(verifyPow(fromHex(seed), id, difficulty, fromHex(nonce)), `${difficulty} bits`);
    assert.equal(toHex(solvePow(fromHex(seed), id, difficulty)), nonce);
    // The same nonce for another request id is (almost surely) not a solution at 16 bits.
    if (difficulty >= 16) assert.ok(!verifyPow(fromHex(seed), id + 1, difficulty, fromHex(nonce)));
  }
  assert.equal(solvePow(new Uint8Array(32), 1, 0), null);
  assert.ok(!verifyPow(new Uint8Array(32), 1, 8, null));
});
