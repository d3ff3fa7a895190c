// The SDK against a relay cluster: three `haven serve --cluster` processes on a real
// nats-server (Debian's package, which ./scripts/test installs), one room with a member
// on each of two processes, and a seat resumed on a third process (neither the one it
// left nor the room's own).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { connect, next, startRelay, text } from "./relay-helper.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const PYTHON = existsSync(join(ROOT, ".venv/bin/python")) ? join(ROOT, ".venv/bin/python") : "python3";
const NATS = ["/usr/sbin/nats-server", "/usr/bin/nats-server"].find((p) => existsSync(p));

function freePort() {
  return new Promise((resolve) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function ready(metricsPort) {
  for (let i = 0; i < 200; i++) {
    try {
      const reply = await fetch(`http://127.0.0.1:${metricsPort}/readyz`);
      if (reply.status === 200) return;
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("the relay never became ready");
}

let nats;
const relays = [];

before(async () => {
  assert.ok(NATS, "nats-server is not installed: run ./scripts/test, which installs it");
  const dir = mkdtempSync(join(tmpdir(), "haven-cluster-"));
  const natsPort = await freePort();
  writeFileSync(join(dir, "nats.conf"), `listen: 127.0.0.1:${natsPort}\n`);
  nats = spawn(NATS, ["-c", join(dir, "nats.conf")], { stdio: "ignore" });
  const env = { ...process.env, PYTHONPATH: ROOT };
  const haven = (...args) => execFileSync(PYTHON, ["-m", "haven", ...args], { cwd: ROOT, env });
  haven("keygen", "--out", join(dir, "relay.key"));
  haven("keygen", "--cluster", "--out", join(dir, "cluster.key"));
  for (let i = 0; i < 3; i++) {
    const metrics = await freePort();
    const relay = await startRelay({ args: [
      "--key", join(dir, "relay.key"), "--cluster", `nats://127.0.0.1:${natsPort}`,
      "--cluster-key", join(dir, "cluster.key"), "--metrics-port", String(metrics),
    ] });
    relays.push(relay);
    await ready(metrics);
  }
});

after(async () => {
  for (const relay of relays) await relay.stop();
  nats?.kill("SIGTERM");
});

test("a room with a member on each process of a cluster", async () => {
  const [a, b] = relays;
  assert.equal(a.key, b.key); // one relay key for the whole cluster
  const alice = await connect(a);
  const bob = await connect(b);
  try {
    const room = await alice.createRoom({ topic: "across" });
    const presence = next((f) => room.on("event", f), (e) => e.t === "presence");
    const theirs = await bob.join(room.code);
    assert.equal((await presence).alias, theirs.alias);
    const got = next((f) => room.on("event", f), (e) => e.t === "deliver");
    const sent = await theirs.send("from B");
    const deliver = await got;
    assert.equal(text(deliver.body), "from B");
    assert.equal(deliver.seq, sent.seq);
    const back = next((f) => theirs.on("event", f), (e) => e.t === "deliver");
    await room.send("from A");
    assert.equal(text((await back).body), "from A");
  } finally {
    await alice.close();
    await bob.close();
  }
});

test("a seat left on one process is resumed on a third, missing nothing", async () => {
  const [a, b, c] = relays;
  const alice = await connect(a);
  try {
    const room = await alice.createRoom();
    const bob = await connect(b);
    const theirs = await bob.join(room.code);
    const first = await room.send("m1");
    const token = theirs.seat.token;
    await bob.close(); // bob's app restarts; the seat is held on A
    await room.send("m2");
    await room.send("m3");
    const again = await connect(c); // the resume travels to A, where the room lives
    try {
      const resumed = await again.resume(token, first.seq);
      const bodies = [];
      await next((f) => resumed.on("event", f), (e) => {
        if (e.t === "deliver") bodies.push(text(e.body));
        return bodies.length === 2;
      });
      assert.deepEqual(bodies, ["m2", "m3"]);
      assert.notDeepEqual(resumed.seat.token, token);
    } finally {
      await again.close();
    }
  } finally {
    await alice.close();
  }
});
