// The TypeScript SDK's own checks, run inside Chromium (tests/web/test_sdk_in_chromium.py
// bundles this page with esbuild): the cacophony NK vectors, the worked example of
// docs/protocol.md §16, every golden envelope written by the Python codec, and proofs of
// work solved in the Web Worker. bench/web_sdk.py uses `havenBench` for timings.
import {
  Haven, NKInitiator, NKResponder, PROLOGUE, Transport, decodeEnvelope, encodeEnvelope, fromHex,
  keyPair, pad, toHex, unpad, verifyPow, workerSolver,
} from "../../../web/sdk/src/index.js";

interface Vector {
  init_remote_static: string; init_prologue: string; init_ephemeral: string;
  resp_static: string; resp_prologue: string; resp_ephemeral: string; handshake_hash: string;
  messages: Array<{ payload: string; ciphertext: string }>;
}
interface Inputs {
  vectors: Vector[];
  worked: Record<string, string>;
  golden: { envelopes: Array<{ type: string; hex: string }>; proofs: Array<{ seed: string; id: number; difficulty: number; nonce: string }> };
}

function check(failures: string[], name: string, ok: boolean): void {
  if (!ok) failures.push(name);
}

async function selfTest(inputs: Inputs): Promise<{ ran: Record<string, number>; failures: string[] }> {
  const failures: string[] = [];
  const ran = { vectors: 0, worked: 0, golden: 0, proofs: 0 };
  const empty = new Uint8Array(0);
  for (const [k, v] of inputs.vectors.entries()) {
    const init = new NKInitiator(fromHex(v.init_remote_static), fromHex(v.init_prologue), fromHex(v.init_ephemeral));
    const resp = new NKResponder(fromHex(v.resp_static), fromHex(v.resp_prologue), fromHex(v.resp_ephemeral));
    const [m1, m2, ...transport] = v.messages;
    const c1 = init.writeMessage1(fromHex(m1!.payload));
    check(failures, `vector ${k} message 1`, toHex(c1) === m1!.ciphertext && toHex(resp.readMessage1(c1)) === m1!.payload);
    const { message: c2, result: r } = resp.writeMessage2(fromHex(m2!.payload));
    check(failures, `vector ${k} message 2`, toHex(c2) === m2!.ciphertext);
    const { payload, result: i } = init.readMessage2(c2);
    check(failures, `vector ${k} payload 2`, toHex(payload) === m2!.payload);
    check(failures, `vector ${k} handshake hash`, toHex(i.handshakeHash) === v.handshake_hash && toHex(r.handshakeHash) === v.handshake_hash);
    for (const [n, msg] of transport.entries()) {
      const [from, to] = n % 2 === 0 ? [i, r] : [r, i];
      const c = from.send.encryptWithAd(empty, fromHex(msg.payload));
      check(failures, `vector ${k} transport ${n}`, toHex(c) === msg.ciphertext && toHex(to.recv.decryptWithAd(empty, c)) === msg.payload);
    }
    ran.vectors += 1;
  }
  const w = inputs.worked;
  const relayPub = fromHex(w["relay static public key"]!);
  check(failures, "worked: relay key", toHex(keyPair(fromHex(w["relay static private key"]!)).publicKey) === toHex(relayPub));
  const init = new NKInitiator(relayPub, PROLOGUE, fromHex(w["client ephemeral private key"]!));
  check(failures, "worked: message 1", toHex(init.writeMessage1(pad(fromHex(w["hello envelope"]!)))) === w["message 1 (client to relay)"]);
  const { payload, result } = init.readMessage2(fromHex(w["message 2 (relay to client)"]!));
  check(failures, "worked: welcome", toHex(unpad(payload)) === w["welcome envelope"]);
  check(failures, "worked: handshake hash", toHex(result.handshakeHash) === w["handshake hash"]);
  const transport = new Transport(result.send, result.recv);
  check(failures, "worked: transport 1", toHex(transport.seal(fromHex(w["send envelope"]!))) === w["transport message 1 (client to relay, nonce 0)"]);
  check(failures, "worked: transport 2", toHex(transport.open(fromHex(w["transport message 2 (relay to client, nonce 0)"]!))) === w["sent envelope"]);
  ran.worked = 1;
  for (const { type, hex } of inputs.golden.envelopes) {
    check(failures, `golden ${type}`, toHex(encodeEnvelope(decodeEnvelope(fromHex(hex)))) === hex);
    ran.golden += 1;
  }
  const solver = workerSolver(new URL("pow-worker.js", location.href).href);
  for (const { seed, id, difficulty, nonce } of inputs.golden.proofs) {
    const found = await solver(fromHex(seed), id, difficulty);
    check(failures, `proof ${id}/${difficulty} same nonce as Python`, found !== null && toHex(found) === nonce);
    check(failures, `proof ${id}/${difficulty} verifies`, verifyPow(fromHex(seed), id, difficulty, found));
    ran.proofs += 1;
  }
  return { ran, failures };
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** Timings for docs/benchmarks.md: full connects to a real relay, PoW-16 in the worker. */
async function havenBench(config: { url: string; key: string; connects: number; proofs: number; difficulty: number }) {
  const connect: number[] = [];
  for (let n = 0; n < config.connects; n++) {
    const t0 = performance.now();
    const haven = await Haven.connect({ url: config.url, relayKey: config.key, keepalive: 0 });
    connect.push(performance.now() - t0);
    await haven.close();
  }
  const solver = workerSolver(new URL("pow-worker.js", location.href).href);
  const seed = crypto.getRandomValues(new Uint8Array(32));
  const pow: number[] = [];
  let hashes = 0;
  for (let id = 1; id <= config.proofs; id++) {
    const t0 = performance.now();
    const nonce = await solver(seed, id, config.difficulty);
    pow.push(performance.now() - t0);
    const view = new DataView(nonce!.buffer, nonce!.byteOffset);
    hashes += Number(view.getBigUint64(0)) + 1;
  }
  const sortedConnect = [...connect].sort((a, b) => a - b);
  const sortedPow = [...pow].sort((a, b) => a - b);
  const total = pow.reduce((a, b) => a + b, 0);
  return {
    connect_ms: { median: quantile(sortedConnect, 0.5), p95: quantile(sortedConnect, 0.95), n: connect.length },
    pow_ms: { median: quantile(sortedPow, 0.5), p95: quantile(sortedPow, 0.95), n: pow.length },
    hashes_per_s: hashes / (total / 1000),
    user_agent: navigator.userAgent,
  };
}

Object.assign(window, { havenSelfTest: selfTest, havenBench });
document.body.dataset["ready"] = "1";
