// Noise NK against the public cacophony vectors and docs/protocol.md §16, byte for byte,
// from both sides (the SDK's initiator and the test-only responder).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import {
  ErrorCode, HavenError, NKInitiator, NKResponder, PROLOGUE, Transport, checkPublicKey,
  fromHex, keyPair, pad, toHex, unpad,
} from "../dist/index.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const vectors = JSON.parse(
  readFileSync(join(ROOT, "tests/protocol/vectors/noise/cacophony_25519_ChaChaPoly_SHA256.json")),
).vectors.filter((v) => v.protocol_name === "Noise_NK_25519_ChaChaPoly_SHA256");

test("there are NK vectors to check", () => {
  assert.ok(vectors.length >= 1);
});

for (const [k, v] of vectors.entries()) {
  test(`cacophony NK vector ${k}: handshake and transport, byte for byte`, () => {
    const init = new NKInitiator(fromHex(v.init_remote_static), fromHex(v.init_prologue),
      fromHex(v.init_ephemeral));
    const resp = new NKResponder(fromHex(v.resp_static), fromHex(v.resp_prologue),
      fromHex(v.resp_ephemeral));
    const [m1, m2, ...transport] = v.messages;
    const c1 = init.writeMessage1(fromHex(m1.payload));
    assert.equal(toHex(c1), m1.ciphertext);
    assert.equal(toHex(resp.readMessage1(c1)), m1.payload);
    const { message: c2, result: r } = resp.writeMessage2(fromHex(m2.payload));
    assert.equal(toHex(c2), m2.ciphertext);
    const { payload, result: i } = init.readMessage2(c2);
    assert.equal(toHex(payload), m2.payload);
    assert.equal(toHex(i.handshakeHash), v.handshake_hash);
    assert.equal(toHex(r.handshakeHash), v.handshake_hash);
    for (const [n, msg] of transport.entries()) {
      const [from, to] = n % 2 === 0 ? [i, r] : [r, i];
      const c = from.send.encryptWithAd(new Uint8Array(0), fromHex(msg.payload));
      assert.equal(toHex(c), msg.ciphertext);
      assert.equal(toHex(to.recv.decryptWithAd(new Uint8Array(0), c)), msg.payload);
    }
  });
}

/** The hex values of the §16 worked example, by label. */
function workedExample() {
  const doc = readFileSync(join(ROOT, "docs/protocol.md"), "utf8");
  const block = doc.split("<!-- worked-example:begin -->")[1].split("<!-- worked-example:end -->")[0];
  const values = {};
  let label = null;
  for (const line of block.split("\n")) {
    if (/^\S.*:$/.test(line)) {
      label = line.slice(0, -1).replace(/ \(\d+ bytes\)$/, "");
      values[label] = "";
    } else if (label && /^ {2}\S/.test(line)) {
      values[label] += line.trim();
    }
  }
  return values;
}

test("the worked example of docs/protocol.md §16, byte for byte", () => {
  const w = workedExample();
  const relayPub = fromHex(w["relay static public key"]);
  assert.equal(toHex(keyPair(fromHex(w["relay static private key"])).publicKey), toHex(relayPub));
  assert.equal(w["prologue"], toHex(PROLOGUE));
  const init = new NKInitiator(relayPub, PROLOGUE, fromHex(w["client ephemeral private key"]));
  const hello = fromHex(w["hello envelope"]);
  const m1 = init.writeMessage1(pad(hello));
  assert.equal(toHex(m1), w["message 1 (client to relay)"]);
  const { payload, result } = init.readMessage2(fromHex(w["message 2 (relay to client)"]));
  assert.equal(toHex(unpad(payload)), w["welcome envelope"]);
  assert.equal(toHex(result.handshakeHash), w["handshake hash"]);
  const transport = new Transport(result.send, result.recv);
  const sealed = transport.seal(fromHex(w["send envelope"]));
  assert.equal(toHex(sealed), w["transport message 1 (client to relay, nonce 0)"]);
  const sent = transport.open(fromHex(w["transport message 2 (relay to client, nonce 0)"]));
  assert.equal(toHex(sent), w["sent envelope"]);
});

test("low-order and malformed keys are refused with BAD_KEY", () => {
  for (const hex of ["00".repeat(32), "01" + "00".repeat(31), "ec" + "ff".repeat(30) + "7f",
    "ed" + "ff".repeat(30) + "ff", "aa".repeat(31)]) {
    assert.throws(() => checkPublicKey(fromHex(hex)),
      (e) => e instanceof HavenError && e.code === ErrorCode.BAD_KEY, hex);
  }
});

test("a tampered message 2 is HANDSHAKE_FAILED; a tampered frame DECRYPT_FAILED", () => {
  const relay = keyPair();
  const init = new NKInitiator(relay.publicKey, PROLOGUE);
  const resp = new NKResponder(relay.privateKey, PROLOGUE);
  resp.readMessage1(init.writeMessage1(pad(new Uint8Array([1]))));
  const { message } = resp.writeMessage2(pad(new Uint8Array([2])));
  const bad = Uint8Array.from(message);
  bad[40] ^= 1;
  assert.throws(() => init.readMessage2(bad),
    (e) => e instanceof HavenError && e.code === ErrorCode.HANDSHAKE_FAILED);

  const relay2 = keyPair();
  const a = new NKInitiator(relay2.publicKey, PROLOGUE);
  const b = new NKResponder(relay2.privateKey, PROLOGUE);
  b.readMessage1(a.writeMessage1(pad(new Uint8Array(0))));
  const { message: m2, result: rb } = b.writeMessage2(pad(new Uint8Array(0)));
  const ra = a.readMessage2(m2).result;
  const client = new Transport(ra.send, ra.recv);
  const relayside = new Transport(rb.send, rb.recv);
  const frame = client.seal(new Uint8Array([1, 2, 3]));
  const flipped = Uint8Array.from(frame);
  flipped[5] ^= 0x80;
  assert.throws(() => relayside.open(flipped), (e) => e.code === ErrorCode.DECRYPT_FAILED);
  assert.deepEqual([...relayside.open(frame)], [1, 2, 3]); // the nonce did not move
  assert.throws(() => relayside.open(new Uint8Array(100)), (e) => e.code === ErrorCode.BAD_PADDING);
});

test("padding: buckets, exact prefix, zero padding only", () => {
  assert.equal(pad(new Uint8Array(254)).length, 256);
  assert.equal(pad(new Uint8Array(255)).length, 1024);
  assert.equal(pad(new Uint8Array(65517)).length, 65519);
  assert.throws(() => pad(new Uint8Array(65518)), (e) => e.code === ErrorCode.TOO_LARGE);
  const p = pad(new Uint8Array([7, 8, 9]));
  assert.deepEqual([...unpad(p)], [7, 8, 9]);
  const dirty = Uint8Array.from(p);
  dirty[200] = 1;
  assert.throws(() => unpad(dirty), (e) => e.code === ErrorCode.BAD_PADDING);
  assert.throws(() => unpad(new Uint8Array(300)), (e) => e.code === ErrorCode.BAD_PADDING);
});
