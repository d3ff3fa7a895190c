"""Every message Haven puts on the wire, as frozen, slotted dataclasses.

Each class is registered under its wire name (the envelope's ``t``) and a direction:

* ``Request`` — client to relay; carries ``id`` and gets exactly one reply or ``Error``.
* ``Reply`` — relay to client; echoes the request's ``id``.
* ``Event`` — relay to client, pushed, no ``id``.
* ``HandshakePayload`` — carried inside the two Noise handshake messages.

Field constraints (string and byte lengths, integer ranges, allowed words) live in the
field metadata, so the codec can check every incoming field in one generic place and
this module stays a plain catalogue. ``docs/protocol.md`` lists the same catalogue in
prose; a test checks that the two agree.

Message bodies are ``bytes`` the relay never parses: clients may seal them end to end.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, dataclass_transform

_T = TypeVar("_T")

#: Largest integer on the wire: 2**53 - 1, so JavaScript clients lose nothing.
MAX_INT = 2**53 - 1
#: Longest room/link code text accepted before it is parsed.
MAX_CODE_LEN = 64
#: Longest alias, queue name, topic, reason and rules text.
MAX_ALIAS_LEN = 32
MAX_NAME_LEN = 64
MAX_TOPIC_LEN = 200
MAX_REASON_LEN = 500
MAX_RULES_LEN = 4000
MAX_TOKEN_LEN = 1024
MAX_LIST_LEN = 256
#: Largest message body on the wire (a relay may set a lower limit in ``welcome``).
MAX_BODY = 61440

ROOM_KINDS = ("direct", "group")
PRESENCE_EVENTS = ("joined", "left", "away", "back", "removed")
MODERATION_ACTIONS = ("muted", "unmuted", "locked", "unlocked")
CLOSE_REASONS = ("closed", "expired", "schedule", "empty", "draining", "taken_over")
ROLES = ("staff", "moderator", "responder")


def text(max_len: int, default: Any = dataclasses.MISSING, *, choices: tuple[str, ...] = ()) -> Any:
    """A ``str`` field of at most ``max_len`` characters (optionally from ``choices``)."""
    return field(default=default, metadata={"max": max_len, "choices": choices})


def blob(max_len: int, default: Any = dataclasses.MISSING) -> Any:
    """A ``bytes`` field of at most ``max_len`` bytes."""
    return field(default=default, metadata={"max": max_len})


def number(lo: int = 0, hi: int = MAX_INT, default: Any = dataclasses.MISSING) -> Any:
    """An ``int`` field in ``[lo, hi]``."""
    return field(default=default, metadata={"lo": lo, "hi": hi})


def items(max_len: int = MAX_LIST_LEN, default: Any = dataclasses.MISSING) -> Any:
    """A tuple field of at most ``max_len`` elements."""
    return field(default=default, metadata={"max": max_len})


# Registries filled by the decorators below; the codec reads them.
REQUESTS: dict[str, type[Any]] = {}
SERVER_MESSAGES: dict[str, type[Any]] = {}
HANDSHAKE: dict[str, type[Any]] = {}


def _register(table: dict[str, type[Any]], name: str) -> Any:
    def wrap(cls: type[Any]) -> type[Any]:
        if name in REQUESTS or name in SERVER_MESSAGES or name in HANDSHAKE:
            raise RuntimeError(f"duplicate message name {name!r}")
        cls.T = name
        table[name] = cls
        return cls

    return wrap


def request(name: str) -> Any:
    """Register a client-to-relay request under wire name ``name``."""
    return _register(REQUESTS, name)


def server(name: str) -> Any:
    """Register a relay-to-client reply or event under wire name ``name``."""
    return _register(SERVER_MESSAGES, name)


def handshake(name: str) -> Any:
    """Register a handshake payload under wire name ``name``."""
    return _register(HANDSHAKE, name)


@dataclass_transform(frozen_default=True, kw_only_default=True, field_specifiers=(field,))
def frozen(cls: type[_T]) -> type[_T]:
    """Messages are frozen, slotted, keyword-only dataclasses."""
    return dataclass(frozen=True, slots=True, kw_only=True)(cls)


class Message:
    """Base of all messages; ``T`` is the wire name set by registration."""

    __slots__ = ()
    T: ClassVar[str] = ""


class Request(Message):
    """A client-to-relay request; ``id`` must strictly increase per connection."""

    __slots__ = ()
    id: int


class Reply(Message):
    """The relay's answer to exactly one request, echoing its ``id``."""

    __slots__ = ()
    id: int


class Event(Message):
    """A message the relay pushes without a request."""

    __slots__ = ()


# --------------------------------------------------------------------------- nested


@frozen
class Limits:
    """Limits the relay enforces on this connection, announced in ``welcome``."""

    max_envelope: int = number()  #: largest envelope (bytes) the relay accepts
    max_body: int = number()  #: largest message body (bytes)
    max_rooms: int = number()  #: seats one connection may hold at once
    max_members: int = number()  #: default member cap of a group room
    rate: int = number()  #: sustained requests per second (token bucket refill)
    burst: int = number()  #: token bucket size
    resume_grace: int = number()  #: seconds a dropped seat is held for resume
    resume_buffer: int = number()  #: room events kept for resume
    idle_timeout: int = number()  #: seconds of silence before the relay closes


@frozen
class Challenge:
    """A proof-of-work challenge: see "Proof of work" in docs/protocol.md."""

    seed: bytes = blob(32)  #: per-connection random seed
    difficulty: int = number(0, 32)  #: leading zero bits required; 0 means none


@frozen
class Seat:
    """What a client learns when it gets a seat in a room (join, create, resume, match)."""

    room: str = text(MAX_CODE_LEN)  #: canonical room code
    alias: str = text(MAX_ALIAS_LEN)  #: this seat's random per-room alias
    token: bytes = blob(64)  #: secret resume token (rotates on every resume)
    seq: int = number()  #: room sequence number of the last event before this seat
    members: int = number()  #: members now present
    kind: str = text(16, choices=ROOM_KINDS)
    topic: str | None = text(MAX_TOPIC_LEN, None)
    premoderated: bool = False
    moderator: bool = False  #: this seat may moderate the room
    rules: str | None = text(MAX_RULES_LEN, None)  #: ground rules shown on joining
    resumed: bool = False  #: true when this seat was resumed, not newly joined


@frozen
class RoomInfo:
    """One directory entry: an open group room, or a scheduled one not open yet."""

    room: str | None = text(MAX_CODE_LEN, None)  #: code to join; None until open
    topic: str = text(MAX_TOPIC_LEN)
    open: bool = False
    members: int = number()  #: rounded down to a coarse bucket (0, 1, 5, 10, 25, 50, 100)
    premoderated: bool = False
    schedule: str | None = text(MAX_TOPIC_LEN, None)  #: human-readable recurrence
    opens_in: int | None = number(default=None)  #: seconds until it opens


@frozen
class PendingItem:
    """A message waiting for a moderator's decision."""

    item: int = number()
    alias: str = text(MAX_ALIAS_LEN)
    body: bytes = blob(MAX_BODY)


# ------------------------------------------------------------------------ handshake


@handshake("hello")
@frozen
class Hello(Message):
    """Handshake message 1 payload: the protocol versions the client speaks."""

    versions: tuple[int, ...] = items(8)


@handshake("welcome")
@frozen
class Welcome(Message):
    """Handshake message 2 payload: the chosen version, limits and PoW challenge."""

    version: int = number(1, 255)
    limits: Limits
    challenge: Challenge


# ------------------------------------------------------------------------- requests


@request("ping")
@frozen
class Ping(Request):
    """Liveness probe; answered by ``pong``. Also resets the idle timer."""

    id: int = number(1)


@request("create_room")
@frozen
class CreateRoom(Request):
    """Create a room and take its first seat; answered by ``joined``.

    Group rooms may be ``listed`` (open, in the directory) or link-only; only a
    moderator may create a listed or pre-moderated room.
    """

    id: int = number(1)
    kind: str = text(16, choices=ROOM_KINDS)
    topic: str | None = text(MAX_TOPIC_LEN, None)
    listed: bool = False
    premoderated: bool = False
    max_members: int | None = number(2, 10_000, None)
    idle_ttl: int | None = number(1, 7 * 86400, None)  #: seconds with no traffic
    hard_ttl: int | None = number(1, 7 * 86400, None)  #: seconds from creation
    rules: str | None = text(MAX_RULES_LEN, None)
    pow: bytes | None = blob(64, None)


@request("join")
@frozen
class Join(Request):
    """Join a room by its code; answered by ``joined``."""

    id: int = number(1)
    room: str = text(MAX_CODE_LEN)


@request("leave")
@frozen
class Leave(Request):
    """Give up a seat for good; answered by ``left``."""

    id: int = number(1)
    room: str = text(MAX_CODE_LEN)


@request("send")
@frozen
class Send(Request):
    """Send an opaque body to the room; answered by ``sent`` once queued for all."""

    id: int = number(1)
    room: str = text(MAX_CODE_LEN)
    body: bytes = blob(MAX_BODY)


@request("typing")
@frozen
class Typing(Request):
    """Tell the room this seat is typing (ephemeral, rate-limited); answered by ``ok``."""

    id: int = number(1)
    room: str = text(MAX_CODE_LEN)


@request("resume")
@frozen
class Resume(Request):
    """Take back a held seat (``joined``) or place in line (``queued``) by its token.

    The relay then replays, in order, every room event with a sequence number above
    ``after`` that the seat has not seen.
    """

    id: int = number(1)
    token: bytes = blob(64)
    after: int = number()


@request("auth")
@frozen
class Auth(Request):
    """Present a staff, moderator or responder token; answered by ``authed``."""

    id: int = number(1)
    token: bytes = blob(MAX_TOKEN_LEN)


@request("directory")
@frozen
class Directory(Request):
    """List open and scheduled group rooms; answered by ``rooms``."""

    id: int = number(1)


@request("request_help")
@frozen
class RequestHelp(Request):
    """Wait in a named intake queue for staff; answered by ``queued``."""

    id: int = number(1)
    queue: str = text(MAX_NAME_LEN)
    pow: bytes | None = blob(64, None)


@request("cancel_help")
@frozen
class CancelHelp(Request):
    """Leave an intake queue; answered by ``ok``."""

    id: int = number(1)
    queue: str = text(MAX_NAME_LEN)


@request("staff_count")
@frozen
class StaffCount(Request):
    """Ask how many staff are on duty for a queue; answered by ``staff``."""

    id: int = number(1)
    queue: str = text(MAX_NAME_LEN)


@request("duty")
@frozen
class Duty(Request):
    """Staff: go on or off duty for a queue; answered by ``ok``."""

    id: int = number(1)
    queue: str = text(MAX_NAME_LEN)
    on: bool = True


@request("take_next")
@frozen
class TakeNext(Request):
    """Staff: take the next visitor from a queue into a new direct room (``joined``)."""

    id: int = number(1)
    queue: str = text(MAX_NAME_LEN)


@request("handoff_invite")
@frozen
class HandoffInvite(Request):
    """Staff: get a spoken one-time code inviting a responder; answered by ``handoff``."""

    id: int = number(1)
    room: str = text(MAX_CODE_LEN)


@request("handoff_accept")
@frozen
class HandoffAccept(Request):
    """Responder: join a direct room with a spoken code; answered by ``joined``."""

    id: int = number(1)
    code: str = text(MAX_CODE_LEN)
    pow: bytes | None = blob(64, None)


@request("pending_list")
@frozen
class PendingList(Request):
    """Moderator: list messages awaiting a decision; answered by ``pending_items``."""

    id: int = number(1)
    room: str = text(MAX_CODE_LEN)


@request("approve")
@frozen
class Approve(Request):
    """Moderator: deliver a pending message as written; answered by ``ok``."""

    id: int = number(1)
    room: str = text(MAX_CODE_LEN)
    item: int = number()


@request("edit")
@frozen
class Edit(Request):
    """Moderator: deliver a pending message with a new body, marked edited."""

    id: int = number(1)
    room: str = text(MAX_CODE_LEN)
    item: int = number()
    body: bytes = blob(MAX_BODY)


@request("deny")
@frozen
class Deny(Request):
    """Moderator: refuse a pending message; only its author is told."""

    id: int = number(1)
    room: str = text(MAX_CODE_LEN)
    item: int = number()
    reason: str | None = text(MAX_REASON_LEN, None)


@request("mute")
@frozen
class Mute(Request):
    """Moderator: mute (or unmute) a seat by alias; answered by ``ok``."""

    id: int = number(1)
    room: str = text(MAX_CODE_LEN)
    alias: str = text(MAX_ALIAS_LEN)
    muted: bool = True


@request("remove")
@frozen
class Remove(Request):
    """Moderator: remove a seat for good (its resume token dies); answered by ``ok``."""

    id: int = number(1)
    room: str = text(MAX_CODE_LEN)
    alias: str = text(MAX_ALIAS_LEN)


@request("lock")
@frozen
class Lock(Request):
    """Moderator: lock (or unlock) the room against new joins; answered by ``ok``."""

    id: int = number(1)
    room: str = text(MAX_CODE_LEN)
    locked: bool = True


@request("close_room")
@frozen
class CloseRoom(Request):
    """Moderator (or a direct room's staff): end the room for everyone."""

    id: int = number(1)
    room: str = text(MAX_CODE_LEN)


@request("announce")
@frozen
class Announce(Request):
    """Moderator: post an announcement to the room; answered by ``sent``."""

    id: int = number(1)
    room: str = text(MAX_CODE_LEN)
    body: bytes = blob(MAX_BODY)


@request("crisis")
@frozen
class Crisis(Request):
    """Peer: raise a crisis flag; the room's moderators are alerted by alias."""

    id: int = number(1)
    room: str = text(MAX_CODE_LEN)


@request("escalate")
@frozen
class Escalate(Request):
    """Moderator: move a peer into the priority lane of an intake queue."""

    id: int = number(1)
    room: str = text(MAX_CODE_LEN)
    alias: str = text(MAX_ALIAS_LEN)
    queue: str = text(MAX_NAME_LEN)


# -------------------------------------------------------------------------- replies


@server("pong")
@frozen
class Pong(Reply):
    """Answer to ``ping``."""

    id: int = number(1)


@server("ok")
@frozen
class Ok(Reply):
    """Plain success for requests that return nothing else."""

    id: int = number(1)


@server("joined")
@frozen
class Joined(Reply):
    """A seat was granted (create, join, resume, take_next, handoff_accept).

    ``priority`` is true only in the reply to ``take_next`` when the visitor came from
    the queue's priority lane (a crisis escalation), so staff know at once.
    """

    id: int = number(1)
    seat: Seat
    priority: bool = False


@server("left")
@frozen
class Left(Reply):
    """The seat was given up."""

    id: int = number(1)
    room: str = text(MAX_CODE_LEN)


@server("sent")
@frozen
class Sent(Reply):
    """A ``send`` or ``announce`` was accepted.

    ``seq`` is the room sequence number it was delivered under, or ``item`` names the
    pre-moderation item it is waiting as.
    """

    id: int = number(1)
    room: str = text(MAX_CODE_LEN)
    seq: int | None = number(default=None)
    item: int | None = number(default=None)


@server("authed")
@frozen
class Authed(Reply):
    """A token was accepted for this connection."""

    id: int = number(1)
    role: str = text(16, choices=ROLES)
    expires: int = number()  #: Unix time (seconds) the token stops being valid
    queues: tuple[str, ...] = items(64, ())
    rooms: tuple[str, ...] = items(64, ())  #: room scopes ("*" means every room)


@server("rooms")
@frozen
class Rooms(Reply):
    """The room directory."""

    id: int = number(1)
    rooms: tuple[RoomInfo, ...] = items()


@server("queued")
@frozen
class Queued(Reply):
    """The visitor is waiting in a queue at ``position`` (1 is next)."""

    id: int = number(1)
    queue: str = text(MAX_NAME_LEN)
    position: int = number(1)
    token: bytes = blob(64)  #: secret token to resume this place in line after a drop
    priority: bool = False  #: waiting in the priority (crisis) lane


@server("staff")
@frozen
class Staff(Reply):
    """How many staff are on duty for a queue (an aggregate count only).

    ``waiting`` and ``priority`` (visitors present in the normal and the priority lane)
    are given only to a caller whose staff token covers the queue: a staff console shows
    them; a visitor learns its own place from ``queue_position`` and nothing more.
    """

    id: int = number(1)
    queue: str = text(MAX_NAME_LEN)
    count: int = number()
    waiting: int | None = number(default=None)
    priority: int | None = number(default=None)


@server("handoff")
@frozen
class Handoff(Reply):
    """A spoken one-time code for a responder to join the room."""

    id: int = number(1)
    room: str = text(MAX_CODE_LEN)
    code: str = text(MAX_CODE_LEN)
    expires_in: int = number()  #: seconds


@server("pending_items")
@frozen
class PendingItems(Reply):
    """Messages awaiting moderation in a room."""

    id: int = number(1)
    room: str = text(MAX_CODE_LEN)
    items: tuple[PendingItem, ...] = items()
    more: bool = False  #: more items wait than fit one reply (oldest are listed first)


@server("error")
@frozen
class Error(Reply):
    """A typed error: the answer to request ``id``, or connection-level when ``id`` is 0.

    ``message`` says what was wrong and what to do; it never contains a secret.
    """

    id: int = number(0)
    code: int = number(0, 999)
    message: str = text(MAX_REASON_LEN)
    retry_after: int | None = number(default=None)  #: seconds


# --------------------------------------------------------------------------- events


@server("deliver")
@frozen
class Deliver(Event):
    """A room message, in room order."""

    room: str = text(MAX_CODE_LEN)
    seq: int = number(1)
    sender: str = text(MAX_ALIAS_LEN)  #: the sender's per-room alias
    body: bytes = blob(MAX_BODY)
    edited: bool = False  #: a moderator edited the body before delivery


@server("presence")
@frozen
class Presence(Event):
    """A member joined, left, went away (dropped), came back, or was removed."""

    room: str = text(MAX_CODE_LEN)
    seq: int = number(1)
    alias: str = text(MAX_ALIAS_LEN)
    event: str = text(16, choices=PRESENCE_EVENTS)
    members: int = number()


@server("announcement")
@frozen
class Announcement(Event):
    """A moderator's announcement, in room order."""

    room: str = text(MAX_CODE_LEN)
    seq: int = number(1)
    body: bytes = blob(MAX_BODY)


@server("moderation")
@frozen
class Moderation(Event):
    """A moderation action visible to the room (mute, unmute, lock, unlock)."""

    room: str = text(MAX_CODE_LEN)
    seq: int = number(1)
    action: str = text(16, choices=MODERATION_ACTIONS)
    alias: str | None = text(MAX_ALIAS_LEN, None)


@server("typing_event")
@frozen
class TypingEvent(Event):
    """A member is typing. Ephemeral: no sequence number, never replayed."""

    room: str = text(MAX_CODE_LEN)
    alias: str = text(MAX_ALIAS_LEN)


@server("room_closed")
@frozen
class RoomClosed(Event):
    """The room ended; every trace of it is gone from the relay."""

    room: str = text(MAX_CODE_LEN)
    reason: str = text(16, choices=CLOSE_REASONS)


@server("removed")
@frozen
class Removed(Event):
    """This seat was removed by a moderator; its resume token no longer works."""

    room: str = text(MAX_CODE_LEN)


@server("pending")
@frozen
class Pending(Event):
    """To moderators: a message awaits a decision."""

    room: str = text(MAX_CODE_LEN)
    item: PendingItem


@server("denied")
@frozen
class Denied(Event):
    """To the author only: a moderator refused message ``item``."""

    room: str = text(MAX_CODE_LEN)
    item: int = number()
    reason: str | None = text(MAX_REASON_LEN, None)


@server("crisis_alert")
@frozen
class CrisisAlert(Event):
    """To moderators: a member raised a crisis flag."""

    room: str = text(MAX_CODE_LEN)
    alias: str = text(MAX_ALIAS_LEN)


@server("queue_position")
@frozen
class QueuePosition(Event):
    """The visitor's place in line moved (1 is next)."""

    queue: str = text(MAX_NAME_LEN)
    position: int = number(1)
    priority: bool = False  #: the visitor was moved to the priority lane
    #: Set only on the first event of a place a moderator created by escalation (the peer
    #: never sent ``request_help``, so never got ``queued``): resumes that place.
    token: bytes | None = blob(64, None)


@server("matched")
@frozen
class Matched(Event):
    """A staff member took the visitor: here is the new direct room's seat."""

    queue: str = text(MAX_NAME_LEN)
    seat: Seat


@server("challenge")
@frozen
class ChallengeUpdate(Event):
    """The proof-of-work difficulty changed; solve against this from now on."""

    challenge: Challenge


@server("draining")
@frozen
class Draining(Event):
    """The relay is shutting down; reconnect after ``retry_after`` seconds."""

    retry_after: int = number()


ServerMessage = Reply | Event
