/**
 * `Haven`: one logical connection to a relay that survives network drops.
 *
 * The guarantees, the same as the Python SDK's (client/connection.py):
 * - requests resolve with their reply or reject with a typed `HavenError`;
 * - each room's listeners see every room event exactly once and in room order, across
 *   reconnects: when a link drops without the application closing it (including the
 *   relay's `draining`), the SDK reconnects with jittered exponential backoff for at most
 *   the relay's `resume_grace`, re-presents auth tokens, resumes every seat
 *   (`after` = the last seq seen) and queue place, puts staff back on duty, and drops the
 *   replayed events already seen (tracked per room by seq);
 * - requests made while reconnecting wait and then go out on the new link; requests in
 *   flight when the link dropped reject with `ConnectionLost` (outcome unknown);
 * - connection-state events: connecting, connected, reconnecting, resumed, closed.
 *
 * Nothing is stored anywhere but in memory: tokens and codes live in these objects only.
 */
import type { Envelope } from "./codec.js";
import { backoffDelays, DEFAULT_BUDGET } from "./backoff.js";
import { Emitter } from "./emitter.js";
import { ConnectionLost, ErrorCode, HavenError, isFatal } from "./errors.js";
import { parseRelayKey } from "./keys.js";
import { Link, type WebSocketConstructor } from "./link.js";
import {
  ENDING, SEQUENCED, UNSEQUENCED,
  type Authed, type ConnEvent, type Matched, type QueuePosition, type RoomEvent, type RoomInfo,
  type RoomKind, type Seat, type Welcome,
} from "./messages.js";
import { inlineSolver, solve, type PowSolver } from "./pow.js";
import { QueueTicket, Room } from "./room.js";

/** Up to this difficulty a proof of work is solved inline (~4096 hashes, a few ms). */
export const SYNC_POW_MAX = 12;
/** Ids reserved ahead for a request whose proof of work is solved asynchronously. */
export const POW_ID_GAP = 1 << 16;
/** Times a rate-limited resume is retried before the seat is given up. */
export const RESUME_RATE_RETRIES = 5;

export type ConnectionState = "connecting" | "connected" | "reconnecting" | "resumed" | "closed";

export interface HavenOptions {
  /** The relay's WebSocket URL (ws:// on loopback, wss:// anywhere else). */
  url: string;
  /** The relay's public key, pinned: 43 base64url characters or 32 bytes. */
  relayKey: string | Uint8Array;
  /** A WebSocket constructor; default `globalThis.WebSocket` (browsers, React Native). */
  WebSocket?: WebSocketConstructor;
  /** How proofs of work are solved; default: inline in slices (see powworker.ts). */
  solver?: PowSolver;
  /** Reconnect and resume after drops (default true). */
  autoResume?: boolean;
  /** Seconds to keep trying to resume; default the relay's `resume_grace`. */
  resumeTimeout?: number;
  /** Seconds allowed for one connect (WebSocket + handshake); default 10. */
  connectTimeout?: number;
  /** Send a `ping` after this many seconds without sending anything; default a third
   * of the relay's `idle_timeout` (so an idle page is not closed as silent). 0: never. */
  keepalive?: number;
  /** Random numbers in [0, 1) for backoff jitter (tests pass a fixed one). */
  random?: () => number;
}

export interface HavenEvents {
  [name: string]: unknown;
  state: { state: ConnectionState; error?: Error };
  /** Connection-level events: challenges, `draining`, errors with id 0, queue events
   * that belong to no ticket, `matched` without a ticket. */
  event: ConnEvent;
  /** A room the application did not ask for right then (a `matched` without a ticket). */
  room: Room;
  /** A queue place a moderator created by escalating this peer. */
  ticket: QueueTicket;
}

type Reply = { envelope: Envelope; value: unknown };

function sleep(seconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(() => resolve(), Math.max(0, seconds * 1000)));
}

export class Haven {
  /** Completed reconnect-and-resume cycles. */
  resumes = 0;
  /** Replayed room events dropped because they had been seen (resume overlap). */
  duplicates = 0;
  state: ConnectionState = "connecting";
  readonly rooms = new Map<string, Room>();
  readonly tickets = new Map<string, QueueTicket>();
  private readonly emitter = new Emitter<HavenEvents>();
  private readonly key: Uint8Array;
  private readonly Ctor: WebSocketConstructor;
  private readonly solver: PowSolver;
  private link: Link | null = null;
  private current: Welcome | null = null;
  /** Highest seq passed on per room: the `after` of its next resume. */
  private readonly lastSeq = new Map<string, number>();
  private ready = true;
  private readyWaiters: Array<() => void> = [];
  private final: ConnectionLost | null = null;
  private reconnecting = false;
  private readonly authTokens: Uint8Array[] = [];
  private readonly duties = new Set<string>();
  private powLock: Promise<void> = Promise.resolve();
  private keepaliveTimer: ReturnType<typeof setTimeout> | undefined = undefined;
  private wake: (() => void) | null = null;

  private constructor(private readonly options: HavenOptions) {
    this.key = parseRelayKey(options.relayKey);
    const Ctor = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (Ctor === undefined) throw new TypeError("no WebSocket: pass options.WebSocket (e.g. from 'ws')");
    this.Ctor = Ctor;
    this.solver = options.solver ?? inlineSolver();
  }

  /** Connect (WebSocket, Noise NK with the pinned key, hello/welcome). */
  static async connect(options: HavenOptions): Promise<Haven> {
    const haven = new Haven(options);
    haven.install(await haven.open());
    haven.setState("connected");
    haven.scheduleKeepalive();
    return haven;
  }

  /** The relay's latest `welcome` (limits, proof-of-work challenge). */
  get welcome(): Welcome {
    return this.current!;
  }

  /** Whether a link is up and usable right now. */
  get connected(): boolean {
    return this.link !== null && !this.link.broken && this.ready;
  }

  get closed(): boolean {
    return this.final !== null;
  }

  on<K extends keyof HavenEvents>(name: K, listener: (value: HavenEvents[K]) => void): () => void {
    return this.emitter.on(name, listener);
  }

  // -------------------------------------------------------------- public API

  async ping(): Promise<void> {
    await this.call("ping", {});
  }

  /** Create a room and take its first seat (with proof of work when required). */
  async createRoom(options: {
    kind?: RoomKind; topic?: string; listed?: boolean; premoderated?: boolean;
    maxMembers?: number; idleTtl?: number; hardTtl?: number; rules?: string;
  } = {}): Promise<Room> {
    const reply = await this.callPow("create_room", {
      kind: options.kind ?? "group", topic: options.topic, listed: options.listed ?? false,
      premoderated: options.premoderated ?? false, max_members: options.maxMembers,
      idle_ttl: options.idleTtl, hard_ttl: options.hardTtl, rules: options.rules,
    });
    return roomOf(reply);
  }

  /** Join a room by its code (any spelling the relay accepts). */
  async join(code: string): Promise<Room> {
    return roomOf(await this.call("join", { room: code.trim() }));
  }

  /** Present a staff, moderator or responder token (re-presented after every resume). */
  async auth(token: string | Uint8Array): Promise<Authed> {
    const raw = typeof token === "string" ? new TextEncoder().encode(token.trim()) : token;
    const reply = (await this.call("auth", { token: raw })).envelope as unknown as Authed;
    if (!this.authTokens.some((t) => equal(t, raw))) this.authTokens.push(raw);
    return reply;
  }

  /** Open and scheduled group rooms. */
  async directory(): Promise<RoomInfo[]> {
    return ((await this.call("directory", {})).envelope["rooms"] as RoomInfo[]) ?? [];
  }

  /** Wait in intake queue `queue` for staff (with proof of work when required). */
  async requestHelp(queue: string): Promise<QueueTicket> {
    const reply = await this.callPow("request_help", { queue });
    if (!(reply.value instanceof QueueTicket)) {
      throw new HavenError(ErrorCode.UNEXPECTED_MESSAGE, `request_help was answered by ${reply.envelope.t}`);
    }
    return reply.value;
  }

  /** Leave intake queue `queue`. */
  async cancelHelp(queue: string): Promise<void> {
    await this.call("cancel_help", { queue });
    this.forgetTicket(queue, null);
  }

  /** How many staff are on duty for `queue` (an aggregate count only). */
  async staffCount(queue: string): Promise<number> {
    return Number((await this.call("staff_count", { queue })).envelope["count"]);
  }

  /** Staff: go on (or off) duty for `queue` (restored after a resume). */
  async duty(queue: string, on = true): Promise<void> {
    await this.call("duty", { queue, on });
    if (on) this.duties.add(queue);
    else this.duties.delete(queue);
  }

  /** Staff: take the next visitor from `queue` into a new direct room. */
  async takeNext(queue: string): Promise<Room> {
    return roomOf(await this.call("take_next", { queue }));
  }

  /** Responder: join a direct room with a spoken one-time code. */
  async handoffAccept(code: string): Promise<Room> {
    return roomOf(await this.callPow("handoff_accept", { code: code.trim() }));
  }

  /**
   * Take back a seat or a queue place from a token saved earlier (an app restart, say):
   * `after` is the last room seq the application processed (0 for a queue place, or to
   * get everything the relay still holds). Resolves with the Room or QueueTicket.
   */
  async resume(token: Uint8Array, after = 0): Promise<Room | QueueTicket> {
    const reply = await this.call("resume", { token, after });
    if (reply.value instanceof Room || reply.value instanceof QueueTicket) return reply.value;
    throw new HavenError(ErrorCode.UNEXPECTED_MESSAGE, `resume was answered by ${reply.envelope.t}`);
  }

  /** Escape hatch: any request by its wire name; resolves with the reply envelope. */
  async request(t: string, fields: Record<string, unknown> = {}): Promise<Envelope> {
    return (await this.call(t, fields)).envelope;
  }

  /**
   * Drop the current network link now, as a flaky mobile network would: the SDK then
   * reconnects and resumes like after any drop. For demonstrations and tests.
   */
  interrupt(): void {
    this.link?.fail(new ConnectionLost("interrupted by the application"));
  }

  /**
   * While reconnecting, try again now instead of waiting out the backoff delay: call it
   * when the platform says the network is back (a browser's `online` event, React
   * Native's NetInfo). Does nothing otherwise.
   */
  retryNow(): void {
    if (this.reconnecting) this.wake?.();
  }

  /**
   * Close the connection. With `leave`, every seat is given up first (others see "left"
   * at once); without, the relay holds the seats for its grace window, as after a drop.
   */
  async close(options: { leave?: boolean } = {}): Promise<void> {
    if (this.final !== null) return;
    if (options.leave === true && this.connected) {
      await Promise.allSettled([...this.rooms.values()].map((room) => room.leave()));
    }
    const link = this.link;
    this.finish(new ConnectionLost("the application closed the connection"), true);
    link?.fail(new ConnectionLost("the application closed the connection"));
  }

  // ---------------------------------------------------------- requests

  /** @internal Send a request once a usable link is up; the reply with what it created. */
  async call(t: string, fields: Record<string, unknown>): Promise<Reply> {
    const link = await this.usableLink();
    return link.request(t, fields);
  }

  /**
   * A request with a proof of work, re-solved and retried once if the relay says the
   * work is missing or wrong (the difficulty may just have gone up).
   */
  private async callPow(t: string, fields: Record<string, unknown>): Promise<Reply> {
    for (let attempt = 0; ; attempt++) {
      const link = await this.usableLink();
      const sending = this.powLock.then(async () => {
        const { id, nonce } = await this.solve(link);
        // Wrapped, so `sending` settles once the request is sent, not when it is answered.
        return { reply: link.request(t, { ...fields, pow: nonce ?? undefined }, id) };
      });
      // Hold the lock until the request is sent: one id reservation at a time.
      this.powLock = sending.then(() => undefined, () => undefined);
      try {
        return await (await sending).reply;
      } catch (error) {
        const again = error instanceof HavenError
          && (error.code === ErrorCode.POW_REQUIRED || error.code === ErrorCode.POW_INVALID);
        if (!again || attempt > 0) throw error;
      }
    }
  }

  /** A request id and its proof of work at the current difficulty (docs/protocol.md §10). */
  private async solve(link: Link): Promise<{ id: number; nonce: Uint8Array | null }> {
    for (;;) {
      const challenge = link.challenge;
      if (challenge.difficulty <= SYNC_POW_MAX) {
        const id = link.nextId;
        return { id, nonce: solve(challenge.seed, id, challenge.difficulty) };
      }
      // Reserve an id far enough ahead that requests sent meanwhile keep lower ids.
      const id = link.nextId + POW_ID_GAP;
      const nonce = await this.solver(challenge.seed, id, challenge.difficulty);
      if (link.broken) throw link.lost!;
      const now = link.challenge;
      if (link.nextId <= id && equal(now.seed, challenge.seed) && now.difficulty <= challenge.difficulty) {
        return { id, nonce };
      }
    }
  }

  private async usableLink(): Promise<Link> {
    for (;;) {
      if (this.final !== null) throw this.final;
      const link = this.link;
      if (link !== null && !link.broken && this.ready) return link;
      await new Promise<void>((resolve) => this.readyWaiters.push(resolve));
    }
  }

  private setReady(ready: boolean): void {
    this.ready = ready;
    if (ready || this.final !== null) {
      for (const wake of this.readyWaiters.splice(0)) wake();
    }
  }

  // --------------------------------------------------------------- routing

  private onEnvelope(link: Link, envelope: Envelope): void {
    const t = envelope.t;
    const id = envelope["id"];
    if (typeof id === "number" && id > 0) {
      link.settle(id, envelope, this.onReply(envelope));
      return;
    }
    const room = typeof envelope["room"] === "string" ? envelope["room"] : "";
    if (SEQUENCED.has(t)) {
      const last = this.lastSeq.get(room);
      if (last === undefined) return; // a room this connection holds no seat in
      const seq = Number(envelope["seq"]);
      if (seq <= last) {
        this.duplicates += 1;
        return;
      }
      this.lastSeq.set(room, seq);
      this.rooms.get(room)?.dispatch(envelope as unknown as RoomEvent);
    } else if (UNSEQUENCED.has(t)) {
      if (this.lastSeq.has(room)) this.rooms.get(room)?.dispatch(envelope as unknown as RoomEvent);
    } else if (ENDING.has(t)) {
      if (!this.lastSeq.has(room)) return;
      const target = this.rooms.get(room);
      this.lastSeq.delete(room);
      this.rooms.delete(room);
      target?.dispatch(envelope as unknown as RoomEvent);
      target?.end(null);
    } else if (t === "queue_position") {
      this.onQueuePosition(envelope as unknown as QueuePosition);
    } else if (t === "matched") {
      this.onMatched(envelope as unknown as Matched);
    } else {
      if (t === "challenge") {
        link.challenge = (envelope as unknown as { challenge: Welcome["challenge"] }).challenge;
      } else if (t === "draining") {
        // Leave at once rather than wait to be closed: the relay's drain ends as soon as
        // its clients have gone; we come back after retry_after and resume.
        link.retryAfter = Number(envelope["retry_after"] ?? 5);
        link.fail(new ConnectionLost("the relay is draining", 1001));
      }
      this.emitter.emit("event", envelope as unknown as ConnEvent);
    }
  }

  /** What a reply created (a Room for `joined`, a ticket for `queued`), before anyone runs. */
  private onReply(envelope: Envelope): unknown {
    switch (envelope.t) {
      case "joined": {
        const room = this.granted(envelope["seat"] as Seat);
        if (envelope["priority"] === true) room.priority = true;
        return room;
      }
      case "queued":
        return this.queued(envelope);
      case "left":
        this.forgetRoom(String(envelope["room"]), null);
        return undefined;
      default:
        return undefined;
    }
  }

  private onQueuePosition(event: QueuePosition): void {
    let ticket = this.tickets.get(event.queue);
    if (ticket === undefined && event.token !== undefined) {
      // A moderator escalated us into a queue we never asked for: it is a ticket now.
      ticket = new QueueTicket(this, event.queue, event.position, event.priority === true, event.token);
      this.tickets.set(event.queue, ticket);
      ticket.update(event);
      this.emitter.emit("ticket", ticket);
    } else if (ticket !== undefined) {
      ticket.update(event);
      return;
    }
    this.emitter.emit("event", event);
  }

  private onMatched(event: Matched): void {
    const room = this.granted(event.seat);
    const ticket = this.tickets.get(event.queue);
    if (ticket !== undefined) {
      this.tickets.delete(event.queue);
      ticket.matchedInto(room, event);
      return;
    }
    this.emitter.emit("event", event);
    this.emitter.emit("room", room);
  }

  private granted(seat: Seat): Room {
    // A fresh seat starts at seat.seq; a resumed one keeps the seq already seen, so the
    // replay that follows is passed on from there.
    if (!(seat.resumed === true && this.lastSeq.has(seat.room))) this.lastSeq.set(seat.room, seat.seq);
    let room = this.rooms.get(seat.room);
    if (room === undefined || room.ended) {
      room = new Room(this, seat);
      this.rooms.set(seat.room, room);
    } else {
      room.reseat(seat);
    }
    return room;
  }

  private queued(envelope: Envelope): QueueTicket {
    const queue = String(envelope["queue"]);
    const position = Number(envelope["position"]);
    const priority = envelope["priority"] === true;
    const token = envelope["token"] as Uint8Array;
    let ticket = this.tickets.get(queue);
    if (ticket === undefined || ticket.ended) {
      ticket = new QueueTicket(this, queue, position, priority, token);
      this.tickets.set(queue, ticket);
    } else {
      ticket.position = position;
      ticket.priority = priority;
      ticket.token = token;
    }
    return ticket;
  }

  /** @internal */
  forgetRoom(code: string, error: Error | null): void {
    this.lastSeq.delete(code);
    const room = this.rooms.get(code);
    this.rooms.delete(code);
    room?.end(error);
  }

  /** @internal */
  forgetTicket(queue: string, error: Error | null): void {
    const ticket = this.tickets.get(queue);
    this.tickets.delete(queue);
    ticket?.end(error);
  }

  // ------------------------------------------------------ links and resume

  private open(timeoutSeconds?: number): Promise<Link> {
    const seconds = Math.min(this.options.connectTimeout ?? 10, timeoutSeconds ?? Infinity);
    return Link.open(this.options.url, this.key, this.Ctor, seconds * 1000);
  }

  private install(link: Link): void {
    this.link = link;
    this.current = link.welcome;
    link.onEnvelope = (envelope) => this.onEnvelope(link, envelope);
    link.onDown = (down) => this.linkDown(down);
  }

  private linkDown(link: Link): void {
    if (this.link !== link) return;
    this.link = null;
    this.setReady(false);
    if (this.final !== null || this.reconnecting) return;
    const lost = link.lost!;
    if (this.options.autoResume === false || isFatal(lost)) {
      this.finish(lost, false);
      return;
    }
    void this.reconnect(link);
  }

  private async reconnect(old: Link): Promise<void> {
    this.reconnecting = true;
    this.setState("reconnecting", old.lost ?? undefined);
    const grace = old.welcome.limits.resume_grace;
    const budget = this.options.resumeTimeout ?? (grace > 0 ? grace : DEFAULT_BUDGET);
    const deadline = Date.now() + budget * 1000;
    let last: Error = old.lost ?? new ConnectionLost("connection lost");
    try {
      for (const delay of backoffDelays(budget, old.retryAfter, this.options.random)) {
        await this.pause(delay);
        if (this.final !== null) return;
        const remaining = (deadline - Date.now()) / 1000;
        if (remaining <= 0) break;
        let link: Link;
        try {
          link = await this.open(remaining);
        } catch (error) {
          if (this.final !== null) return;
          if (isFatal(error)) {
            this.finish(asLost(error, "reconnecting failed"), false);
            return;
          }
          last = error as Error;
          continue;
        }
        if (this.final !== null) {
          link.fail(new ConnectionLost("closed while reconnecting"));
          return;
        }
        this.install(link);
        if (await this.restore(link) && !link.broken) {
          this.resumes += 1;
          this.reconnecting = false;
          this.setReady(true);
          this.setState("resumed");
          return;
        }
        last = link.lost ?? last;
        if (this.link === link) this.link = null;
      }
      this.finish(asLost(last, `could not resume within ${budget} s`), false);
    } finally {
      this.reconnecting = false;
    }
  }

  /** Re-auth, resume every seat and queue place, restore duty; false if the link dropped. */
  private async restore(link: Link): Promise<boolean> {
    try {
      for (const token of [...this.authTokens]) {
        try {
          await link.request("auth", { token });
        } catch (error) {
          if (error instanceof ConnectionLost) throw error;
          // Expired meanwhile, say: tell the application, stop re-presenting it.
          this.authTokens.splice(this.authTokens.indexOf(token), 1);
          const code = error instanceof HavenError ? error.code : ErrorCode.INTERNAL;
          this.emitter.emit("event", { t: "error", id: 0, code, message: String((error as Error).message) });
        }
      }
      await this.resumeAll(link);
      for (const queue of [...this.duties]) {
        try {
          await link.request("duty", { queue, on: true });
        } catch (error) {
          if (error instanceof ConnectionLost) throw error;
          this.duties.delete(queue);
        }
      }
    } catch (error) {
      if (error instanceof ConnectionLost) return false;
      throw error;
    }
    return true;
  }

  /** Pipeline one `resume` per seat and queue place, then collect the replies. */
  private async resumeAll(link: Link): Promise<void> {
    let todo: Array<Room | QueueTicket> = [...this.rooms.values(), ...this.tickets.values()];
    for (let round = 0; round <= RESUME_RATE_RETRIES && todo.length > 0; round++) {
      const sent: Array<[Room | QueueTicket, Promise<Reply>]> = [];
      for (const target of todo) {
        if (target.ended) continue;
        if (target instanceof Room) {
          const after = this.lastSeq.get(target.code);
          if (after === undefined) continue;
          sent.push([target, link.request("resume", { token: target.seat.token, after })]);
        } else {
          sent.push([target, link.request("resume", { token: target.token, after: 0 })]);
        }
      }
      todo = [];
      let pause = 0;
      for (const [target, pending] of sent) {
        try {
          const reply = await pending;
          this.resumed(target, reply);
        } catch (error) {
          if (error instanceof ConnectionLost) throw error;
          if (error instanceof HavenError && error.code === ErrorCode.RATE_LIMITED) {
            todo.push(target);
            pause = Math.max(pause, error.retryAfter ?? 1);
          } else {
            this.resumeFailed(target, error as Error);
          }
        }
      }
      if (todo.length > 0) await this.pause(pause);
    }
    for (const target of todo) {
      this.resumeFailed(target, new HavenError(ErrorCode.RATE_LIMITED, "resume kept being rate limited"));
    }
  }

  private resumed(target: Room | QueueTicket, reply: Reply): void {
    if (target instanceof QueueTicket && reply.value instanceof Room) {
      // Matched while we were away: the place in line came back as a seat.
      if (this.tickets.get(target.queue) === target) this.tickets.delete(target.queue);
      target.matchedInto(reply.value, null);
    } else if (target instanceof Room && reply.value !== target) {
      this.resumeFailed(target, new HavenError(ErrorCode.UNEXPECTED_MESSAGE, "resume did not return this seat"));
    }
  }

  private resumeFailed(target: Room | QueueTicket, error: Error): void {
    if (target instanceof Room) {
      if (this.rooms.get(target.code) === target) this.forgetRoom(target.code, error);
      else target.end(error);
    } else if (this.tickets.get(target.queue) === target) {
      this.forgetTicket(target.queue, error);
    } else {
      target.end(error);
    }
  }

  /** Sleep that `close()` cuts short. */
  private pause(seconds: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wake = null;
        resolve();
      }, seconds * 1000);
      this.wake = () => {
        clearTimeout(timer);
        this.wake = null;
        resolve();
      };
    });
  }

  /** The connection is over for good: end every room and ticket, wake every waiter. */
  private finish(error: ConnectionLost, byApplication: boolean): void {
    if (this.final !== null) return;
    this.final = error;
    const why = byApplication ? null : error;
    for (const code of [...this.rooms.keys()]) this.forgetRoom(code, why);
    for (const queue of [...this.tickets.keys()]) this.forgetTicket(queue, why);
    if (this.keepaliveTimer !== undefined) clearTimeout(this.keepaliveTimer);
    this.wake?.();
    this.setReady(false);
    this.setState("closed", byApplication ? undefined : error);
  }

  private setState(state: ConnectionState, error?: Error): void {
    this.state = state;
    this.emitter.emit("state", error === undefined ? { state } : { state, error });
  }

  /** Ping when nothing was sent for a while, so the relay's idle timeout never fires. */
  private scheduleKeepalive(): void {
    const every = this.options.keepalive ?? Math.max(5, (this.current?.limits.idle_timeout ?? 120) / 3);
    if (every <= 0) return;
    const tick = () => {
      if (this.final !== null) return;
      const link = this.link;
      if (link !== null && !link.broken && this.ready && Date.now() - link.lastSent >= every * 1000) {
        link.request("ping", {}).catch(() => undefined);
      }
      this.keepaliveTimer = setTimeout(tick, every * 1000);
    };
    this.keepaliveTimer = setTimeout(tick, every * 1000);
  }
}

function roomOf(reply: Reply): Room {
  if (reply.value instanceof Room) return reply.value;
  throw new HavenError(ErrorCode.UNEXPECTED_MESSAGE, `expected joined, got ${reply.envelope.t}`);
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function asLost(error: unknown, prefix: string): ConnectionLost {
  if (error instanceof ConnectionLost) return new ConnectionLost(`${prefix}: ${error.message}`, error.closeCode);
  const lost = new ConnectionLost(`${prefix}: ${(error as Error).message}`);
  if (error instanceof HavenError) Object.defineProperty(lost, "code", { value: error.code });
  return lost;
}
