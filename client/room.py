"""A seat in a room, and a place in an intake queue, as the application sees them.

Both are thin: every method is one request through the connection, plus the event
stream the connection's reader fills. They hold no socket and survive reconnects: after
a resume the same ``Room`` object carries the new seat (and its rotated token).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Protocol, TypeAlias, TypeVar

import anyio

from haven.protocol.messages import (
    Announce,
    Announcement,
    Approve,
    CancelHelp,
    CloseRoom,
    Crisis,
    CrisisAlert,
    Deliver,
    Denied,
    Deny,
    Edit,
    Escalate,
    Handoff,
    HandoffInvite,
    Leave,
    Left,
    Lock,
    Matched,
    Moderation,
    Mute,
    Ok,
    Pending,
    PendingItem,
    PendingItems,
    PendingList,
    Presence,
    QueuePosition,
    Remove,
    Removed,
    Reply,
    Request,
    RoomClosed,
    Seat,
    Send,
    Sent,
    Typing,
    TypingEvent,
)

from .errors import ConnectionLost, NotAMember, NotQueued
from .streams import EventStream, LossyStream

R = TypeVar("R", bound=Reply)


class Host(Protocol):
    """What rooms and tickets need from their connection (``client.core``)."""

    async def _expect(self, cls: type[R], build: Callable[[int], Request]) -> R: ...

    def _forget_room(self, code: str, error: BaseException | None) -> None: ...

    def _forget_ticket(self, queue: str, error: BaseException | None) -> None: ...

#: Everything ``Room.events()`` yields. The stream ends after ``RoomClosed`` / ``Removed``.
RoomEvent: TypeAlias = (
    Deliver
    | Presence
    | Announcement
    | Moderation
    | TypingEvent
    | Pending
    | Denied
    | CrisisAlert
    | RoomClosed
    | Removed
)
#: Everything ``QueueTicket.events()`` yields. The stream ends after ``Matched``.
QueueEvent: TypeAlias = QueuePosition | Matched


def _item_id(item: int | PendingItem | Pending) -> int:
    if isinstance(item, Pending):
        return item.item.item
    if isinstance(item, PendingItem):
        return item.item
    return item


class Room:
    """This connection's seat in one room: send, moderate, and read the room's events."""

    __slots__ = ("_conn", "_seat", "_stream")

    def __init__(self, conn: Host, seat: Seat, buffer: int) -> None:
        self._conn = conn
        self._seat = seat
        self._stream: EventStream[RoomEvent] = EventStream(buffer)

    def __repr__(self) -> str:  # never shows the resume token
        return f"<Room {self.code} as {self.alias}{' (ended)' if self.ended else ''}>"

    # ------------------------------------------------------------- properties

    @property
    def code(self) -> str:
        """The room's canonical code."""
        return self._seat.room

    @property
    def alias(self) -> str:
        """This seat's per-room alias (what others see as ``sender``)."""
        return self._seat.alias

    @property
    def seat(self) -> Seat:
        """The latest seat: after a resume it carries the new resume token."""
        return self._seat

    @property
    def moderator(self) -> bool:
        return self._seat.moderator

    @property
    def ended(self) -> bool:
        """True once the event stream has ended (left, closed, removed, or lost)."""
        return self._stream.ended

    def events(self) -> EventStream[RoomEvent]:
        """The room's events, each exactly once and in room order, across resumes.

        Ends after ``RoomClosed`` or ``Removed`` (which are yielded), or after ``leave``;
        raises ``ResumeFailed`` (or another typed error) if the seat could not be taken
        back after a drop, and ``ConnectionLost`` if the connection gave up. The buffer is
        bounded: not reading blocks the connection's reader (see ``client.streams``).
        """
        return self._stream

    # ------------------------------------------------------------- members

    async def send(self, body: bytes) -> Sent:
        """Send an opaque body; returns once the relay acknowledged it (``Sent``).

        ``Sent.seq`` is its room sequence number, or ``Sent.item`` the moderation item it
        waits as in a pre-moderated room. If this raises ``ConnectionLost`` the message may
        or may not have been delivered.
        """
        code = self.code
        return await self._conn._expect(Sent, lambda i: Send(id=i, room=code, body=body))

    async def typing(self) -> None:
        """Tell the room this seat is typing (ephemeral; the relay rate-limits it)."""
        code = self.code
        await self._conn._expect(Ok, lambda i: Typing(id=i, room=code))

    async def leave(self) -> None:
        """Give up the seat for good; the event stream ends.

        If the connection is down, the seat is forgotten locally (it will not be resumed)
        and the relay releases it when its grace window runs out.
        """
        code = self.code
        with contextlib.suppress(ConnectionLost, NotAMember):
            await self._conn._expect(Left, lambda i: Leave(id=i, room=code))
        self._conn._forget_room(code, None)

    async def crisis(self) -> None:
        """Raise a crisis flag: the room's moderators are alerted by alias."""
        code = self.code
        await self._conn._expect(Ok, lambda i: Crisis(id=i, room=code))

    # ----------------------------------------------------------- moderators

    async def pending_list(self) -> list[PendingItem]:
        """Messages awaiting a moderator's decision in a pre-moderated room."""
        code = self.code
        reply = await self._conn._expect(PendingItems, lambda i: PendingList(id=i, room=code))
        return list(reply.items)

    async def approve(self, item: int | PendingItem | Pending) -> None:
        """Deliver a pending message as written."""
        code, n = self.code, _item_id(item)
        await self._conn._expect(Ok, lambda i: Approve(id=i, room=code, item=n))

    async def edit(self, item: int | PendingItem | Pending, body: bytes) -> None:
        """Deliver a pending message with a new body (recipients see it marked edited)."""
        code, n = self.code, _item_id(item)
        await self._conn._expect(Ok, lambda i: Edit(id=i, room=code, item=n, body=body))

    async def deny(self, item: int | PendingItem | Pending, reason: str | None = None) -> None:
        """Refuse a pending message; only its author is told (with ``reason``)."""
        code, n = self.code, _item_id(item)
        await self._conn._expect(Ok, lambda i: Deny(id=i, room=code, item=n, reason=reason))

    async def mute(self, alias: str, muted: bool = True) -> None:
        code = self.code
        await self._conn._expect(Ok, lambda i: Mute(id=i, room=code, alias=alias, muted=muted))

    async def remove(self, alias: str) -> None:
        """Remove a seat for good (its resume token stops working)."""
        code = self.code
        await self._conn._expect(Ok, lambda i: Remove(id=i, room=code, alias=alias))

    async def lock(self, locked: bool = True) -> None:
        code = self.code
        await self._conn._expect(Ok, lambda i: Lock(id=i, room=code, locked=locked))

    async def close(self) -> None:
        """End the room for everyone (the stream then ends with ``RoomClosed``)."""
        code = self.code
        await self._conn._expect(Ok, lambda i: CloseRoom(id=i, room=code))

    async def announce(self, body: bytes) -> Sent:
        code = self.code
        return await self._conn._expect(Sent, lambda i: Announce(id=i, room=code, body=body))

    async def escalate(self, alias: str, queue: str) -> None:
        """Move a peer into the priority lane of intake queue ``queue``."""
        code = self.code
        await self._conn._expect(
            Ok, lambda i: Escalate(id=i, room=code, alias=alias, queue=queue)
        )

    async def handoff_invite(self) -> Handoff:
        """Staff: a spoken one-time code a responder can use to join this room."""
        code = self.code
        return await self._conn._expect(Handoff, lambda i: HandoffInvite(id=i, room=code))


class QueueTicket:
    """A place in an intake queue: its position, its events, and the room once matched."""

    __slots__ = (
        "_conn",
        "_error",
        "_matched",
        "_room",
        "_stream",
        "position",
        "priority",
        "queue",
        "token",
    )

    def __init__(
        self, conn: Host, queue: str, position: int, priority: bool, token: bytes
    ) -> None:
        self._conn = conn
        self.queue = queue
        #: Place in line (1 is next), updated from ``queue_position`` events.
        self.position = position
        #: Waiting in the priority (crisis) lane.
        self.priority = priority
        #: Secret resume token (rotates on every resume); never log it.
        self.token = token
        # Lossy: an application that only awaits ``room()`` must not stall the reader.
        self._stream: LossyStream[QueueEvent] = LossyStream(64)
        self._matched = anyio.Event()
        self._room: Room | None = None
        self._error: BaseException | None = None

    def __repr__(self) -> str:
        return f"<QueueTicket {self.queue} position={self.position}>"

    @property
    def ended(self) -> bool:
        return self._stream.ended

    def events(self) -> LossyStream[QueueEvent]:
        """``QueuePosition`` updates, then ``Matched`` (after which the stream ends).

        Only the newest 64 events are kept if the application does not read them.
        """
        return self._stream

    async def room(self) -> Room:
        """Wait until staff take this visitor; return the new direct room.

        Raises what ended the ticket otherwise (``ConnectionLost``, ``ResumeFailed``), or
        ``NotQueued`` if the ticket was cancelled.
        """
        await self._matched.wait()
        if self._room is not None:
            return self._room
        if self._error is not None:
            raise self._error
        raise NotQueued(message="the ticket was cancelled before a match")

    async def cancel(self) -> None:
        """Leave the queue (same as ``Connection.cancel_help``)."""
        queue = self.queue
        await self._conn._expect(Ok, lambda i: CancelHelp(id=i, queue=queue))
        self._conn._forget_ticket(queue, None)

    # ------------------------------------------------- called by the connection

    def _update(self, event: QueuePosition) -> None:
        self.position = event.position
        self.priority = event.priority
        if event.token is not None:
            self.token = event.token
        self._stream.put(event)

    def _matched_into(self, room: Room, event: Matched | None) -> None:
        self._room = room
        if event is not None:
            self._stream.put(event)
        self._end(None)

    def _end(self, error: BaseException | None) -> None:
        if self._error is None:
            self._error = error
        self._stream.end(error)
        self._matched.set()


__all__ = ["QueueEvent", "QueueTicket", "Room", "RoomEvent"]
