// The SDK against a real Haven relay (a `haven serve` child on loopback): rooms between
// SDK clients, typed errors, the pinned key, and surviving drops with exactly-once resume.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { ConnectionLost, ErrorCode, Haven, HavenError, formatRelayKey, keyPair } from "../dist/index.js";
import WebSocket from "ws";
import { connect, next, startRelay, text } from "./relay-helper.js";

let relay;
before(async () => { relay = await startRelay(); });
after(() => relay?.stop());

test("two clients share a room: presence, deliver, typing, sent seq", async () => {
  const a = await connect(relay);
  const b = await connect(relay);
  try {
    assert.equal(a.welcome.version, 1);
    assert.equal(a.state, "connected");
    const room = await a.createRoom({ topic: "evening check-in", rules: "be kind" });
    assert.equal(room.seat.kind, "group");
    assert.equal(room.seat.rules, "be kind");
    const presence = next((f) => room.on("event", f), (e) => e.t === "presence");
    const theirs = await b.join(room.code.toUpperCase().replaceAll("-", " "));
    assert.equal(theirs.code, room.code);
    assert.notEqual(theirs.alias, room.alias);
    const joined = await presence;
    assert.equal(joined.alias, theirs.alias);
    assert.equal(joined.event, "joined");
    const got = next((f) => theirs.on("event", f), (e) => e.t === "deliver");
    const sent = await room.send("hello");
    const deliver = await got;
    assert.equal(text(deliver.body), "hello");
    assert.equal(deliver.seq, sent.seq);
    assert.equal(deliver.sender, room.alias);
    const typing = next((f) => room.on("event", f), (e) => e.t === "typing_event");
    await theirs.typing();
    assert.equal((await typing).alias, theirs.alias);
    await theirs.leave();
    assert.ok(theirs.ended);
    assert.equal(b.rooms.size, 0);
  } finally {
    await a.close();
    await b.close();
  }
});

test("errors are typed: bad code, unknown room, not a member", async () => {
  const a = await connect(relay);
  try {
    await assert.rejects(a.join("not-a-code"), (e) => e instanceof HavenError && e.code === ErrorCode.BAD_CODE);
    await assert.rejects(a.join("0004-1061-050r-3gg2-8a1c-60t3-gffk"),
      (e) => e.code === ErrorCode.ROOM_NOT_FOUND && e.category === "rooms");
    await assert.rejects(a.request("send", { room: "0004-1061-050r-3gg2-8a1c-60t3-gffk", body: new Uint8Array(1) }),
      (e) => e.code === ErrorCode.NOT_A_MEMBER);
    await a.ping(); // the connection is undisturbed
  } finally {
    await a.close();
  }
});

test("a relay that is not the pinned one is refused, and not retried", async () => {
  await assert.rejects(
    Haven.connect({ url: relay.url, relayKey: formatRelayKey(keyPair().publicKey), WebSocket }),
    (e) => e instanceof HavenError && e.code === ErrorCode.HANDSHAKE_FAILED,
  );
  await assert.rejects(Haven.connect({ url: relay.url, relayKey: "short", WebSocket }),
    (e) => e.code === ErrorCode.BAD_KEY);
  await assert.rejects(Haven.connect({ url: relay.url, relayKey: "x".repeat(42) + "!", WebSocket }),
    (e) => e.code === ErrorCode.BAD_KEY);
});

test("a drop is survived: reconnect, resume, every message exactly once and in order", async () => {
  const a = await connect(relay);
  const b = await connect(relay, { random: () => 0 });
  try {
    const room = await a.createRoom();
    const theirs = await b.join(room.code);
    const bodies = [];
    let resumed = 0;
    theirs.on("event", (e) => { if (e.t === "deliver") bodies.push(text(e.body)); });
    theirs.on("resumed", () => { resumed += 1; });
    const states = [];
    b.on("state", ({ state }) => states.push(state));
    const oldToken = theirs.seat.token;
    const seen = next((f) => theirs.on("event", f), (e) => e.t === "deliver" && text(e.body) === "before 4");
    for (let i = 0; i < 5; i++) await room.send(`before ${i}`);
    await seen;
    const back = next((f) => b.on("state", f), (s) => s.state === "resumed");
    b.interrupt();
    // Sent while b is away: the relay holds them in the room's ring for b's seat.
    for (let i = 0; i < 20; i++) await room.send(`during ${i}`);
    await back;
    // A request made right after the resume goes out on the new link.
    const done = next((f) => theirs.on("event", f), (e) => e.t === "deliver" && text(e.body) === "after 4");
    for (let i = 0; i < 5; i++) await room.send(`after ${i}`);
    await done;
    const want = [...[0, 1, 2, 3, 4].map((i) => `before ${i}`),
      ...Array.from({ length: 20 }, (_, i) => `during ${i}`), ...[0, 1, 2, 3, 4].map((i) => `after ${i}`)];
    assert.deepEqual(bodies, want);
    assert.deepEqual(states, ["reconnecting", "resumed"]);
    assert.equal(resumed, 1);
    assert.equal(b.resumes, 1);
    assert.notDeepEqual(theirs.seat.token, oldToken, "the resume token rotates");
    await theirs.send("still here");
  } finally {
    await a.close();
    await b.close();
  }
});

test("requests made while reconnecting wait and go out on the new link", async () => {
  const a = await connect(relay);
  try {
    const room = await a.createRoom();
    a.interrupt();
    assert.equal(a.connected, false);
    const sent = await room.send("queued while down");
    assert.ok(sent.seq > 0);
    assert.equal(a.state, "resumed");
  } finally {
    await a.close();
  }
});

test("in-flight requests fail with ConnectionLost; close ends rooms cleanly", async () => {
  const a = await connect(relay);
  const room = await a.createRoom();
  const ended = next((f) => room.on("end", f), () => true);
  const pending = a.ping();
  a.interrupt();
  await assert.rejects(pending, (e) => e instanceof ConnectionLost);
  await a.close();
  assert.equal(await ended, null);
  assert.equal(a.state, "closed");
  await assert.rejects(a.ping(), (e) => e instanceof ConnectionLost);
});

test("a seat taken over by its token elsewhere ends here with taken_over", async () => {
  const a = await connect(relay);
  const b = await connect(relay);
  const c = await connect(relay);
  try {
    const room = await a.createRoom();
    const mine = await b.join(room.code);
    const closed = next((f) => mine.on("event", f), (e) => e.t === "room_closed");
    const other = await c.resume(mine.seat.token, mine.seat.seq);
    assert.equal(other.code, room.code);
    assert.equal(other.alias, mine.alias);
    assert.equal((await closed).reason, "taken_over");
    assert.ok(mine.ended);
  } finally {
    await Promise.all([a.close(), b.close(), c.close()]);
  }
});

test("a seat that cannot be resumed ends its room with RESUME_FAILED; the rest carries on", async () => {
  // A ring of 8 events: 20 messages while away no longer reach back to the seat's seq.
  const small = await startRelay({ args: ["--resume-buffer", "8"] });
  const a = await connect(small);
  // b's network stays down (new sockets refused) until the test opens the gate.
  let gate = true;
  class Gated extends WebSocket {
    constructor(...args) {
      if (!gate) throw new Error("network down");
      super(...args);
    }
  }
  const b = await connect(small, { WebSocket: Gated });
  try {
    const gone = await a.createRoom();
    const kept = await a.createRoom();
    const mineGone = await b.join(gone.code);
    const mineKept = await b.join(kept.code);
    const ended = next((f) => mineGone.on("end", f), () => true);
    // The relay must notice the drop before the messages, so they miss the seat.
    const away = next((f) => gone.on("event", f), (e) => e.t === "presence" && e.event === "away");
    const back = next((f) => b.on("state", f), (s) => s.state === "resumed");
    gate = false;
    b.interrupt();
    await away;
    for (let i = 0; i < 20; i++) await gone.send(`missed ${i}`);
    gate = true;
    b.retryNow();
    await back;
    const error = await ended;
    assert.ok(error instanceof HavenError);
    assert.equal(error.code, ErrorCode.RESUME_FAILED);
    assert.equal(b.rooms.has(gone.code), false);
    assert.equal(b.rooms.get(kept.code), mineKept);
    const got = next((f) => mineKept.on("event", f), (e) => e.t === "deliver");
    await kept.send("still here");
    assert.equal(text((await got).body), "still here");
  } finally {
    await a.close();
    await b.close();
    await small.stop();
  }
});
