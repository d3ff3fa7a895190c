// The SDK's flows against a real demo relay (`haven serve --demo`: a `helpline` queue, a
// pre-moderated scheduled room, staff / responder / moderator tokens): intake queue with
// live positions, staff duty and take-next, spoken handoff, moderation, proof of work.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { ErrorCode, HavenError, QueueTicket, Room } from "../dist/index.js";
import { connect, next, startRelay, text } from "./relay-helper.js";

let relay;
before(async () => { relay = await startRelay({ demo: true }); });
after(() => relay?.stop());

test("visitor waits with live positions; staff sees counts, takes them; chat; handoff", async () => {
  const staff = await connect(relay);
  const v1 = await connect(relay);
  const v2 = await connect(relay);
  const responder = await connect(relay);
  try {
    const authed = await staff.auth(relay.tokens.staff);
    assert.equal(authed.role, "staff");
    assert.deepEqual(authed.queues, ["helpline"]);
    await staff.duty("helpline");
    assert.equal(await v1.staffCount("helpline"), 1);
    const t1 = await v1.requestHelp("helpline");
    const t2 = await v2.requestHelp("helpline");
    assert.ok(t1 instanceof QueueTicket);
    assert.equal(t1.position, 1);
    assert.equal(t2.position, 2);
    const counts = await staff.request("staff_count", { queue: "helpline" });
    assert.deepEqual([counts.count, counts.waiting, counts.priority], [1, 2, 0]);
    const moved = next((f) => t2.on("position", f));
    const room = await staff.takeNext("helpline");
    assert.ok(room instanceof Room);
    assert.equal(room.seat.kind, "direct");
    const visitorRoom = await t1.room();
    assert.equal(visitorRoom.code, room.code);
    assert.equal((await moved).position, 1);
    assert.equal(t2.position, 1);
    const got = next((f) => visitorRoom.on("event", f), (e) => e.t === "deliver");
    await room.send("hello, I'm here for you");
    assert.equal(text((await got).body), "hello, I'm here for you");
    // Handoff: a spoken code; a wrong one is refused; the right one seats the responder.
    const invite = await room.handoffInvite();
    assert.match(invite.code, /^\d{1,2}-[a-z]+-[a-z]+-[a-z]+$/);
    assert.equal(invite.expires_in, 300);
    await responder.auth(relay.tokens.responder);
    const wrong = invite.code.replace(/^\d+/, (n) => String((Number(n) % 99) + 1));
    await assert.rejects(responder.handoffAccept(wrong),
      (e) => e instanceof HavenError && e.code === ErrorCode.HANDOFF_CODE_INVALID);
    const seat = await responder.handoffAccept(invite.code.toUpperCase().replaceAll("-", " "));
    assert.equal(seat.code, room.code);
    await t2.cancel();
    assert.ok(t2.ended);
    await assert.rejects(t2.room(), (e) => e.code === ErrorCode.NOT_QUEUED);
  } finally {
    await Promise.all([staff, v1, v2, responder].map((c) => c.close()));
  }
});

test("a queue place survives a drop and staff on duty is restored", async () => {
  const staff = await connect(relay);
  const visitor = await connect(relay);
  try {
    await staff.auth(relay.tokens.staff);
    await staff.duty("helpline");
    const ticket = await visitor.requestHelp("helpline");
    const token = ticket.token;
    const back = next((f) => visitor.on("state", f), (s) => s.state === "resumed");
    visitor.interrupt();
    await back;
    assert.notDeepEqual(ticket.token, token, "the ticket token rotates on resume");
    const staffBack = next((f) => staff.on("state", f), (s) => s.state === "resumed");
    staff.interrupt();
    await staffBack;
    assert.equal(await visitor.staffCount("helpline"), 1, "duty is restored after a resume");
    const room = await staff.takeNext("helpline");
    assert.equal((await ticket.room()).code, room.code);
  } finally {
    await Promise.all([staff.close(), visitor.close()]);
  }
});

test("pre-moderated room: held, edited, approved, denied; mute, lock, announce, crisis", async () => {
  const mod = await connect(relay);
  const author = await connect(relay);
  const reader = await connect(relay);
  try {
    await mod.auth(relay.tokens.moderator);
    const listing = await author.directory();
    const open = listing.find((r) => r.open && r.premoderated);
    assert.ok(open && open.room, "the demo lists an open pre-moderated room");
    assert.ok(listing.some((r) => !r.open && r.opens_in > 0 && r.room === undefined));
    const modRoom = await mod.join(open.room);
    assert.ok(modRoom.moderator);
    const mine = await author.join(open.room);
    assert.ok(mine.seat.premoderated);
    assert.ok(mine.seat.rules.length > 0);
    const theirs = await reader.join(open.room);
    const delivered = [];
    theirs.on("event", (e) => { if (e.t === "deliver") delivered.push(e); });
    const held = next((f) => modRoom.on("event", f), (e) => e.t === "pending");
    const sent = await mine.send("my name is Alice and I live at 12 Elm St");
    assert.equal(sent.seq, undefined);
    const pending = await held;
    assert.equal(pending.item.item, sent.item);
    assert.equal(pending.item.alias, mine.alias);
    const edited = next((f) => theirs.on("event", f), (e) => e.t === "deliver");
    await modRoom.edit(pending.item, "[a message was edited to remove identifying details]");
    const out = await edited;
    assert.equal(out.edited, true);
    assert.equal(out.sender, mine.alias);
    const denied = next((f) => mine.on("event", f), (e) => e.t === "denied");
    const second = await mine.send("something hurtful");
    const list = await modRoom.pendingList();
    assert.deepEqual(list.items.map((i) => i.item), [second.item]);
    await modRoom.deny(second.item, "please be kind");
    assert.equal((await denied).reason, "please be kind");
    const third = await mine.send("thank you all");
    const approved = next((f) => theirs.on("event", f), (e) => e.t === "deliver" && text(e.body) === "thank you all");
    await modRoom.approve(third.item);
    await approved;
    assert.deepEqual(delivered.map((e) => text(e.body)),
      ["[a message was edited to remove identifying details]", "thank you all"]);
    // Crisis flag to moderators; mute and lock as visible moderation events.
    const alert = next((f) => modRoom.on("event", f), (e) => e.t === "crisis_alert");
    await theirs.crisis();
    assert.equal((await alert).alias, theirs.alias);
    const muted = next((f) => theirs.on("event", f), (e) => e.t === "moderation");
    await modRoom.mute(mine.alias);
    assert.deepEqual([(await muted).action, (await muted).alias], ["muted", mine.alias]);
    await assert.rejects(mine.send("x"), (e) => e.code === ErrorCode.MUTED);
    await modRoom.mute(mine.alias, false);
    const said = next((f) => theirs.on("event", f), (e) => e.t === "announcement");
    await modRoom.announce("we take a break at nine");
    assert.equal(text((await said).body), "we take a break at nine");
    const removed = next((f) => mine.on("event", f), (e) => e.t === "removed");
    await modRoom.remove(mine.alias);
    await removed;
    assert.ok(mine.ended);
    await assert.rejects(author.join("0004-1061-050r-3gg2-8a1c-60t3-gffk"), (e) => e.code === ErrorCode.ROOM_NOT_FOUND);
  } finally {
    await Promise.all([mod, author, reader].map((c) => c.close()));
  }
});

test("escalation puts a peer in the priority lane; staff sees it flagged", async () => {
  const mod = await connect(relay);
  const peer = await connect(relay);
  const staff = await connect(relay);
  try {
    await mod.auth(relay.tokens.moderator);
    await staff.auth(relay.tokens.staff);
    const room = await mod.createRoom({ listed: true, topic: "peer support" });
    const mine = await peer.join(room.code);
    const ticketed = next((f) => peer.on("ticket", f));
    await room.escalate(mine.alias, "helpline");
    const ticket = await ticketed;
    assert.equal(ticket.priority, true);
    const counts = await staff.request("staff_count", { queue: "helpline" });
    assert.equal(counts.priority, 1);
    const taken = await staff.takeNext("helpline");
    assert.equal(taken.priority, true);
    assert.equal((await ticket.room()).code, taken.code);
  } finally {
    await Promise.all([mod, peer, staff].map((c) => c.close()));
  }
});

test("proof of work: solved for the request's id when the relay asks for it", async () => {
  const hard = await startRelay({ args: ["--pow-start-load", "0.0001", "--max-connections", "100", "--pow-min-difficulty", "14",
    "--pow-max-difficulty", "14"] });
  const c = await connect(hard);
  try {
    // The relay's admission controller raises the difficulty within a second of load.
    if (c.welcome.challenge.difficulty === 0) {
      const raised = await next((f) => c.on("event", f), (e) => e.t === "challenge");
      assert.equal(raised.challenge.difficulty, 14);
    }
    await assert.rejects(c.request("create_room", { kind: "group" }),
      (e) => e.code === ErrorCode.POW_REQUIRED);
    const [a, b] = await Promise.all([c.createRoom(), c.ping().then(() => c.createRoom())]);
    assert.notEqual(a.code, b.code);
  } finally {
    await c.close();
    await hard.stop();
  }
});

test("draining: the SDK leaves at once and gives up when the relay does not come back", async () => {
  const going = await startRelay();
  const c = await connect(going, { resumeTimeout: 1 });
  const room = await c.createRoom();
  const events = [];
  c.on("event", (e) => events.push(e.t));
  const closed = next((f) => c.on("state", f), (s) => s.state === "closed", 20000);
  const ended = next((f) => room.on("end", f), () => true, 20000);
  going.proc.kill("SIGTERM");
  const final = await closed;
  assert.ok(events.includes("draining"));
  assert.ok(final.error instanceof HavenError);
  assert.ok((await ended) instanceof HavenError);
  await going.stop();
});
