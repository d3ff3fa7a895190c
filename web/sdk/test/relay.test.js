// The TypeScript session against a real Haven relay (a `haven serve` child process on
// loopback): handshake with the pinned key, a room between two SDK clients, a typed
// error, and a wrong pinned key refused.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import WebSocket from "ws";
import { ErrorCode, HavenConnection, HavenError, PROLOGUE, keyPair } from "../dist/index.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const PYTHON = existsSync(join(ROOT, ".venv/bin/python")) ? join(ROOT, ".venv/bin/python") : "python3";
let relay;
let url;
let key;

function b64urlDecode(text) {
  return new Uint8Array(Buffer.from(text.replace(/-/g, "+").replace(/_/g, "/"), "base64"));
}

before(async () => {
  relay = spawn(PYTHON, ["-m", "relay.cli", "serve", "--port", "0", "--metrics-port", "none",
    "--log-level", "ERROR"], { cwd: ROOT, env: { ...process.env, PYTHONPATH: ROOT },
    stdio: ["ignore", "pipe", "inherit"] });
  const banner = await new Promise((resolve, reject) => {
    let out = "";
    relay.stdout.on("data", (chunk) => {
      out += chunk;
      if (out.includes("\n")) resolve(out.split("\n")[0]);
    });
    relay.on("exit", (code) => reject(new Error(`relay exited ${code}`)));
  });
  const match = /^haven relay (ws:\/\/\S+) key=(\S+)$/.exec(banner);
  assert.ok(match, banner);
  url = match[1];
  key = b64urlDecode(match[2]);
});

after(() => relay?.kill("SIGTERM"));

function connect(onEvent) {
  return HavenConnection.connect(url, key, { WebSocket, prologue: PROLOGUE, onEvent });
}

test("two TypeScript clients share a room through a real relay", async () => {
  const events = [];
  let delivered;
  const got = new Promise((resolve) => { delivered = resolve; });
  const a = await connect();
  const b = await connect((e) => {
    events.push(e);
    if (e.t === "deliver") delivered(e);
  });
  try {
    assert.equal(a.welcome.version, 1);
    const joined = await a.request("create_room", { kind: "group" });
    assert.equal(joined.t, "joined");
    const room = joined.seat.room;
    const mine = await b.request("join", { room });
    assert.equal(mine.seat.room, room);
    const sent = await a.request("send", { room, body: new TextEncoder().encode("hello") });
    assert.equal(sent.t, "sent");
    const deliver = await got;
    assert.equal(new TextDecoder().decode(deliver.body), "hello");
    assert.equal(deliver.seq, sent.seq);
    await assert.rejects(b.request("join", { room: "not-a-code" }),
      (e) => e instanceof HavenError && e.code === ErrorCode.BAD_CODE);
  } finally {
    a.close();
    b.close();
  }
});

test("a relay that is not the pinned one is refused", async () => {
  await assert.rejects(
    HavenConnection.connect(url, keyPair().publicKey, { WebSocket, prologue: PROLOGUE }),
    (e) => e instanceof HavenError,
  );
});
