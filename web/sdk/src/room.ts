/**
 * A seat in a room, and a place in an intake queue, as the application sees them. Both
 * are thin: every method is one request through the connection, plus events the
 * connection hands them. They hold no socket and survive reconnects: after a resume the
 * same `Room` carries the new seat (and its rotated token).
 */
import { ConnectionLost, ErrorCode, HavenError } from "./errors.js";
import { Emitter } from "./emitter.js";
import type {
  Handoff, PendingItem, PendingItems, RoomEvent, Seat, Sent, QueuePosition, Matched,
} from "./messages.js";

/** What rooms and tickets need from their connection (haven.ts). */
export interface Host {
  call(t: string, fields: Record<string, unknown>): Promise<{ envelope: unknown; value: unknown }>;
  forgetRoom(code: string, error: Error | null): void;
  forgetTicket(queue: string, error: Error | null): void;
}

/** Room events buffered for a room nobody listens to yet (the oldest are dropped). */
export const EARLY_EVENTS = 1000;

const utf8 = new TextEncoder();

/** Bodies are bytes on the wire; text is sent as UTF-8. */
export function toBody(body: Uint8Array | string): Uint8Array {
  return typeof body === "string" ? utf8.encode(body) : body;
}

export interface RoomEvents {
  [name: string]: unknown;
  /** Every room event, exactly once and in room order, across resumes. */
  event: RoomEvent;
  /** The seat ended: null after leave / close / removal, else the error (ResumeFailed...). */
  end: Error | null;
  /** The seat was resumed on a new connection (its token rotated). */
  resumed: Seat;
}

export class Room {
  /** Staff's seat of a visitor taken from the priority (crisis) lane (`take_next`). */
  priority = false;
  private readonly emitter = new Emitter<RoomEvents>();
  private early: RoomEvent[] = [];
  private endedWith: Error | null | undefined = undefined;

  constructor(private readonly host: Host, private current: Seat) {}

  /** The room's canonical code. */
  get code(): string {
    return this.current.room;
  }

  /** This seat's per-room alias (what others see as `sender`). */
  get alias(): string {
    return this.current.alias;
  }

  /** The latest seat: after a resume it carries the new resume token. */
  get seat(): Seat {
    return this.current;
  }

  get moderator(): boolean {
    return this.current.moderator === true;
  }

  get ended(): boolean {
    return this.endedWith !== undefined;
  }

  /**
   * Listen to the room. Room events that arrived before the first `event` listener are
   * delivered to it at once (so nothing right after `joined` is missed); `end` fires
   * immediately if the seat has already ended.
   */
  on<K extends keyof RoomEvents>(name: K, listener: (value: RoomEvents[K]) => void): () => void {
    const off = this.emitter.on(name, listener);
    if (name === "event" && this.early.length > 0) {
      const early = this.early;
      this.early = [];
      for (const event of early) this.emitter.emit("event", event);
    }
    if (name === "end" && this.endedWith !== undefined) {
      (listener as (value: Error | null) => void)(this.endedWith);
    }
    return off;
  }

  // ------------------------------------------------------------------ members

  /**
   * Send a body (bytes, or text sent as UTF-8); resolves once the relay acknowledged it.
   * `seq` names it in the room, or `item` the moderation item it waits as. If this rejects
   * with ConnectionLost, the message may or may not have been delivered.
   */
  async send(body: Uint8Array | string): Promise<Sent> {
    return (await this.host.call("send", { room: this.code, body: toBody(body) })).envelope as Sent;
  }

  /** Tell the room this seat is typing (the relay allows one per `typing_interval`). */
  async typing(): Promise<void> {
    await this.host.call("typing", { room: this.code });
  }

  /** Give up the seat for good. If the connection is down the seat is forgotten locally. */
  async leave(): Promise<void> {
    try {
      await this.host.call("leave", { room: this.code });
    } catch (error) {
      if (!(error instanceof ConnectionLost)
          && !(error instanceof HavenError && error.code === ErrorCode.NOT_A_MEMBER)) {
        throw error;
      }
    }
    this.host.forgetRoom(this.code, null);
  }

  /** Raise a crisis flag: the room's moderators are alerted by alias. */
  async crisis(): Promise<void> {
    await this.host.call("crisis", { room: this.code });
  }

  // --------------------------------------------------------------- moderators

  /** Messages awaiting a decision in a pre-moderated room (oldest first). */
  async pendingList(): Promise<PendingItems> {
    return (await this.host.call("pending_list", { room: this.code })).envelope as PendingItems;
  }

  async approve(item: number | PendingItem): Promise<void> {
    await this.host.call("approve", { room: this.code, item: itemNumber(item) });
  }

  /** Deliver a pending message with a new body (members see it marked edited). */
  async edit(item: number | PendingItem, body: Uint8Array | string): Promise<void> {
    await this.host.call("edit", { room: this.code, item: itemNumber(item), body: toBody(body) });
  }

  /** Refuse a pending message; only its author is told (with `reason`). */
  async deny(item: number | PendingItem, reason?: string): Promise<void> {
    await this.host.call("deny", { room: this.code, item: itemNumber(item), reason });
  }

  async mute(alias: string, muted = true): Promise<void> {
    await this.host.call("mute", { room: this.code, alias, muted });
  }

  /** Remove a seat for good (its resume token stops working). */
  async remove(alias: string): Promise<void> {
    await this.host.call("remove", { room: this.code, alias });
  }

  async lock(locked = true): Promise<void> {
    await this.host.call("lock", { room: this.code, locked });
  }

  /** End the room for everyone. */
  async close(): Promise<void> {
    await this.host.call("close_room", { room: this.code });
  }

  async announce(body: Uint8Array | string): Promise<Sent> {
    return (await this.host.call("announce", { room: this.code, body: toBody(body) })).envelope as Sent;
  }

  /** Move a peer into the priority lane of intake queue `queue`. */
  async escalate(alias: string, queue: string): Promise<void> {
    await this.host.call("escalate", { room: this.code, alias, queue });
  }

  /** Staff: a spoken one-time code a responder can use to join this room. */
  async handoffInvite(): Promise<Handoff> {
    return (await this.host.call("handoff_invite", { room: this.code })).envelope as Handoff;
  }

  // ----------------------------------------------------- called by the connection

  /** @internal */
  dispatch(event: RoomEvent): void {
    if (!this.emitter.has("event")) {
      if (this.early.length >= EARLY_EVENTS) this.early.shift();
      this.early.push(event);
      return;
    }
    this.emitter.emit("event", event);
  }

  /** @internal */
  reseat(seat: Seat): void {
    const resumed = seat.resumed === true && this.current.room === seat.room;
    this.current = seat;
    if (resumed) this.emitter.emit("resumed", seat);
  }

  /** @internal */
  end(error: Error | null): void {
    if (this.endedWith !== undefined) return;
    this.endedWith = error;
    this.emitter.emit("end", error);
  }
}

function itemNumber(item: number | PendingItem): number {
  return typeof item === "number" ? item : item.item;
}

export interface TicketEvents {
  [name: string]: unknown;
  /** The place in line moved (1 is next). */
  position: QueuePosition;
  /** Staff took the visitor: the new direct room. */
  matched: Room;
  /** The ticket ended without a match: null when cancelled, else the error. */
  end: Error | null;
}

/** A place in an intake queue: its position, and the room once staff take the visitor. */
export class QueueTicket {
  private readonly emitter = new Emitter<TicketEvents>();
  private matchedRoom: Room | null = null;
  private endedWith: Error | null | undefined = undefined;
  private readonly waiters: Array<{ resolve: (room: Room) => void; reject: (e: Error) => void }> = [];

  constructor(
    private readonly host: Host,
    readonly queue: string,
    /** Place in line (1 is next). */
    public position: number,
    /** Waiting in the priority (crisis) lane. */
    public priority: boolean,
    /** Secret resume token (rotates on every resume); keep it in memory only. */
    public token: Uint8Array,
  ) {}

  get ended(): boolean {
    return this.endedWith !== undefined;
  }

  on<K extends keyof TicketEvents>(name: K, listener: (value: TicketEvents[K]) => void): () => void {
    return this.emitter.on(name, listener);
  }

  /** Resolves with the direct room once staff take this visitor; rejects if the ticket ends. */
  room(): Promise<Room> {
    if (this.matchedRoom !== null) return Promise.resolve(this.matchedRoom);
    if (this.endedWith !== undefined) {
      return Promise.reject(this.endedWith ?? new HavenError(ErrorCode.NOT_QUEUED, "the ticket was cancelled"));
    }
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Leave the queue. */
  async cancel(): Promise<void> {
    await this.host.call("cancel_help", { queue: this.queue });
    this.host.forgetTicket(this.queue, null);
  }

  /** @internal */
  update(event: QueuePosition): void {
    this.position = event.position;
    this.priority = event.priority === true;
    if (event.token !== undefined) this.token = event.token;
    this.emitter.emit("position", event);
  }

  /** @internal */
  matchedInto(room: Room, _event: Matched | null): void {
    this.matchedRoom = room;
    this.endedWith = null;
    for (const waiter of this.waiters.splice(0)) waiter.resolve(room);
    this.emitter.emit("matched", room);
  }

  /** @internal */
  end(error: Error | null): void {
    if (this.endedWith !== undefined) return;
    this.endedWith = error;
    const why = error ?? new HavenError(ErrorCode.NOT_QUEUED, "the ticket was cancelled");
    for (const waiter of this.waiters.splice(0)) waiter.reject(why);
    this.emitter.emit("end", error);
  }
}
