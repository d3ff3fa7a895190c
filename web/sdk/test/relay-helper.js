// A real Haven relay for the SDK tests: `python -m relay.cli serve` on loopback with free
// ports, its banner (URL and key) and, in demo mode, the tokens it prints.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { Haven } from "../dist/index.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const PYTHON = existsSync(join(ROOT, ".venv/bin/python")) ? join(ROOT, ".venv/bin/python") : "python3";

/** Start a relay; resolves with {url, key, tokens, proc, stop()}. */
export function startRelay({ demo = false, args = [] } = {}) {
  const argv = ["-m", "relay.cli", "serve", "--port", "0", "--metrics-port", "none", "--log-level", "ERROR"];
  if (demo) {
    argv.push("--demo", "--pages-port", "0", "--pages-dir", mkdtempSync(join(tmpdir(), "haven-pages-")));
  }
  argv.push(...args);
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("HAVEN_")));
  const proc = spawn(PYTHON, argv, {
    cwd: ROOT, env: { ...env, PYTHONPATH: ROOT }, stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    let out = "";
    const relay = { proc, url: "", key: "", tokens: {} };
    relay.stop = () => new Promise((done) => {
      if (proc.exitCode !== null) return done();
      proc.once("exit", () => done());
      proc.kill("SIGTERM");
    });
    proc.on("exit", (code) => reject(new Error(`relay exited ${code}`)));
    proc.stdout.on("data", (chunk) => {
      out += chunk;
      const lines = out.split("\n");
      const banner = /^haven relay (ws:\/\/\S+) key=(\S+)$/.exec(lines[0]);
      if (!banner || (lines.length < 2)) return;
      relay.url = banner[1];
      relay.key = banner[2];
      if (!demo) return resolve(relay);
      for (const line of lines) {
        const token = /^token (\w+) (\S+)$/.exec(line);
        if (token) relay.tokens[token[1]] = token[2];
        if (line.startsWith("demo mode:")) return resolve(relay);
      }
    });
  });
}

/** A connected SDK client for `relay` (Node's WebSocket from `ws`). */
export function connect(relay, options = {}) {
  return Haven.connect({ url: relay.url, relayKey: relay.key, WebSocket, keepalive: 0, ...options });
}

/** Resolve with the first value `subscribe` reports that `predicate` accepts. */
export function next(subscribe, predicate = () => true, ms = 10000) {
  return new Promise((resolve, reject) => {
    let done = false;
    let off = () => undefined;
    const timer = setTimeout(() => { done = true; off(); reject(new Error("timed out waiting for an event")); }, ms);
    off = subscribe((value) => {
      if (done || !predicate(value)) return;
      done = true;
      clearTimeout(timer);
      queueMicrotask(() => off());
      resolve(value);
    });
  });
}

export const text = (body) => new TextDecoder().decode(body);
