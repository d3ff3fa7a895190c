/**
 * The shapes of the relay's replies and events as the application sees them
 * (docs/protocol.md §7.4 and §7.5). Field names are the wire's, so the protocol document
 * is the reference; optional fields are absent when the relay omits them.
 */

export interface Limits {
  max_envelope: number;
  max_body: number;
  max_rooms: number;
  max_members: number;
  rate: number;
  burst: number;
  resume_grace: number;
  resume_buffer: number;
  idle_timeout: number;
}

export interface Challenge {
  seed: Uint8Array;
  difficulty: number;
}

export interface Welcome {
  t: "welcome";
  version: number;
  limits: Limits;
  challenge: Challenge;
}

export type RoomKind = "direct" | "group";

export interface Seat {
  room: string;
  alias: string;
  /** Secret resume token; rotates on every resume. Keep it in memory only. */
  token: Uint8Array;
  seq: number;
  members: number;
  kind: RoomKind;
  topic?: string;
  premoderated?: boolean;
  moderator?: boolean;
  rules?: string;
  resumed?: boolean;
}

export interface RoomInfo {
  room?: string;
  topic: string;
  open?: boolean;
  members: number;
  premoderated?: boolean;
  schedule?: string;
  opens_in?: number;
}

export interface PendingItem {
  item: number;
  alias: string;
  body: Uint8Array;
}

export interface Sent {
  t: "sent";
  id: number;
  room: string;
  seq?: number;
  item?: number;
}

export interface Authed {
  t: "authed";
  id: number;
  role: "staff" | "moderator" | "responder";
  expires: number;
  queues?: string[];
  rooms?: string[];
}

export interface Handoff {
  t: "handoff";
  id: number;
  room: string;
  code: string;
  expires_in: number;
}

export interface PendingItems {
  t: "pending_items";
  id: number;
  room: string;
  items: PendingItem[];
  more?: boolean;
}

// ------------------------------------------------------------------ room events

export interface Deliver { t: "deliver"; room: string; seq: number; sender: string; body: Uint8Array; edited?: boolean }
export interface Presence {
  t: "presence"; room: string; seq: number; alias: string;
  event: "joined" | "left" | "away" | "back" | "removed"; members: number;
}
export interface Announcement { t: "announcement"; room: string; seq: number; body: Uint8Array }
export interface Moderation {
  t: "moderation"; room: string; seq: number; action: "muted" | "unmuted" | "locked" | "unlocked"; alias?: string;
}
export interface TypingEvent { t: "typing_event"; room: string; alias: string }
export interface RoomClosed { t: "room_closed"; room: string; reason: string }
export interface Removed { t: "removed"; room: string }
export interface PendingEvent { t: "pending"; room: string; item: PendingItem }
export interface Denied { t: "denied"; room: string; item: number; reason?: string }
export interface CrisisAlert { t: "crisis_alert"; room: string; alias: string }

/** Everything a room's listeners receive; the room ends after `room_closed` / `removed`. */
export type RoomEvent =
  | Deliver | Presence | Announcement | Moderation | TypingEvent
  | RoomClosed | Removed | PendingEvent | Denied | CrisisAlert;

// ----------------------------------------------------------- connection events

export interface QueuePosition { t: "queue_position"; queue: string; position: number; priority?: boolean; token?: Uint8Array }
export interface Matched { t: "matched"; queue: string; seat: Seat }
export interface ChallengeEvent { t: "challenge"; challenge: Challenge }
export interface Draining { t: "draining"; retry_after: number }
export interface ErrorEvent { t: "error"; id: number; code: number; message: string; retry_after?: number }

/** Connection-level events (no room): queue events without a ticket, challenges, errors. */
export type ConnEvent = QueuePosition | Matched | ChallengeEvent | Draining | ErrorEvent;

/** Sequenced room events: they carry `seq` and are replayed on resume. */
export const SEQUENCED: ReadonlySet<string> = new Set(["deliver", "presence", "announcement", "moderation"]);
/** Unsequenced room events: delivered to present seats only. */
export const UNSEQUENCED: ReadonlySet<string> = new Set(["typing_event", "pending", "denied", "crisis_alert"]);
/** Events that end this connection's seat in a room. */
export const ENDING: ReadonlySet<string> = new Set(["room_closed", "removed"]);
