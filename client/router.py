"""Where each decoded server message goes, and which room events are duplicates.

This is the SDK's only decision logic on the receive path, kept synchronous and free of
I/O so it can be unit-tested by feeding it messages. The connection's reader calls
``route`` once per message and then does the (possibly blocking) delivery itself.

De-duplication: every sequenced room event (``Deliver``, ``Presence``, ``Announcement``,
``Moderation``) carries the room's ``seq``. The router remembers, per room, the highest
``seq`` it has passed on (initially the ``Seat.seq`` of a fresh seat). After a resume the
relay replays everything above the ``after`` the SDK sent; anything at or below the
remembered ``seq`` has been seen and is dropped, so the application sees each room event
exactly once, in order. Unsequenced events (typing, pending, denied, crisis alerts) pass
through untouched. Gaps are normal (a seat never receives its own messages) and allowed.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

from haven.protocol.messages import (
    Announcement,
    ChallengeUpdate,
    CrisisAlert,
    Deliver,
    Denied,
    Draining,
    Error,
    Joined,
    Left,
    Matched,
    Message,
    Moderation,
    Pending,
    Presence,
    Queued,
    QueuePosition,
    Removed,
    Reply,
    RoomClosed,
    Seat,
    TypingEvent,
)


class RouteKind(enum.Enum):
    """What the reader should do with one message."""

    REPLY = "reply"  #: resolve the pending request ``key`` (an int id)
    ROOM = "room"  #: put the event into room ``key``'s stream
    ROOM_END = "room_end"  #: put the event into room ``key``'s stream, then end it
    QUEUE = "queue"  #: an event for the ticket waiting in queue ``key``
    CONN = "conn"  #: a connection-level event (or connection-level ``error``)
    DROP = "drop"  #: a duplicate, or an event for a room this connection does not hold


class Route(NamedTuple):
    kind: RouteKind
    key: int | str = 0


_SEQUENCED: frozenset[type[Message]] = frozenset({Deliver, Presence, Announcement, Moderation})
_UNSEQUENCED: frozenset[type[Message]] = frozenset({TypingEvent, Pending, Denied, CrisisAlert})
_ENDING: frozenset[type[Message]] = frozenset({RoomClosed, Removed})
_CONN = Route(RouteKind.CONN)
_DROP = Route(RouteKind.DROP)


class Router:
    """Per-connection routing state: rooms held (with their last seen seq) and queues.

    It outlives individual WebSocket links: the remembered sequence numbers are exactly
    what a resume must send as ``after`` and what de-duplicates the replay.
    """

    __slots__ = ("_queues", "_seq", "duplicates", "strays")

    def __init__(self) -> None:
        self._seq: dict[str, int] = {}
        self._queues: set[str] = set()
        #: Room events dropped because their seq was already seen (replay overlap).
        self.duplicates = 0
        #: Room events dropped because this connection holds no seat in that room.
        self.strays = 0

    # ----------------------------------------------------------------- state

    def joined(self, seat: Seat) -> None:
        """A seat was granted or resumed: start (or keep) tracking its room.

        A fresh seat starts at ``seat.seq`` (the last event before it joined). A resumed
        seat keeps the seq already remembered: the relay replays from the ``after`` we
        sent, and those replayed events must still get through.
        """
        if seat.resumed and seat.room in self._seq:
            return
        self._seq[seat.room] = seat.seq

    def forget_room(self, code: str) -> None:
        """Stop routing events for ``code`` (left, closed, removed or failed to resume)."""
        self._seq.pop(code, None)

    def has_room(self, code: str) -> bool:
        return code in self._seq

    def last_seq(self, code: str) -> int:
        """The highest seq passed on for ``code``: the ``after`` of its next resume."""
        return self._seq[code]

    def rooms(self) -> list[str]:
        return list(self._seq)

    def queued(self, queue: str) -> None:
        """A place in ``queue`` was granted or resumed: route its events to the ticket."""
        self._queues.add(queue)

    def forget_queue(self, queue: str) -> None:
        self._queues.discard(queue)

    def has_queue(self, queue: str) -> bool:
        return queue in self._queues

    # ----------------------------------------------------------------- route

    def route(self, msg: Message) -> Route:
        """Classify ``msg`` and update the routing state it implies.

        Replies that grant or end something (``Joined``, ``Queued``, ``Left``) and the
        ``Matched`` event update the state here, synchronously, so that events following
        them on the wire are routed correctly even before the waiting task runs.
        """
        cls = type(msg)
        if cls in _SEQUENCED:
            code: str = msg.room  # type: ignore[attr-defined]
            last = self._seq.get(code)
            if last is None:
                self.strays += 1
                return _DROP
            seq: int = msg.seq  # type: ignore[attr-defined]
            if seq <= last:
                self.duplicates += 1
                return _DROP
            self._seq[code] = seq
            return Route(RouteKind.ROOM, code)
        if isinstance(msg, Reply):
            if cls is Error:
                rid = msg.id
                return Route(RouteKind.REPLY, rid) if rid else _CONN
            if cls is Joined:
                self.joined(msg.seat)  # type: ignore[attr-defined]
            elif cls is Queued:
                self.queued(msg.queue)  # type: ignore[attr-defined]
            elif cls is Left:
                self.forget_room(msg.room)  # type: ignore[attr-defined]
            return Route(RouteKind.REPLY, msg.id)
        if cls in _UNSEQUENCED:
            code = msg.room  # type: ignore[attr-defined]
            if code not in self._seq:
                self.strays += 1
                return _DROP
            return Route(RouteKind.ROOM, code)
        if cls in _ENDING:
            code = msg.room  # type: ignore[attr-defined]
            if code not in self._seq:
                self.strays += 1
                return _DROP
            del self._seq[code]
            return Route(RouteKind.ROOM_END, code)
        if cls is QueuePosition:
            assert isinstance(msg, QueuePosition)
            if msg.token is not None:
                self._queues.add(msg.queue)  # escalated: a ticket we never asked for
            return Route(RouteKind.QUEUE, msg.queue) if msg.queue in self._queues else _CONN
        if cls is Matched:
            assert isinstance(msg, Matched)
            self.joined(msg.seat)
            if msg.queue in self._queues:
                self._queues.discard(msg.queue)
                return Route(RouteKind.QUEUE, msg.queue)
            return _CONN
        if cls is ChallengeUpdate or cls is Draining:
            return _CONN
        return _DROP


__all__ = ["Route", "RouteKind", "Router"]
