"""The core of a connection: request/reply matching, the reader, and event routing.

A request costs no task: the caller takes an id, seals and sends its frame itself,
parks on an ``anyio.Event`` stored under that id, and the reader resolves it with a dict
pop and ``Event.set``. The reader (one per link) receives, decrypts, decodes, asks the
synchronous ``Router`` where the message goes, and delivers it: replies to their waiter,
room events to the room's bounded stream (blocking when it is full: backpressure, see
``client.streams``), connection-level events to a lossy stream. Replies that create
something (``joined``, ``queued``) and ``matched`` are turned into ``Room`` and
``QueueTicket`` objects by the reader itself, before the next message is read, so that
events right behind them on the wire always find their room.

Resume lives in ``client.resume``, the public API in ``client.connection``.
"""

from __future__ import annotations

import enum
import ssl
from collections.abc import Callable
from contextlib import suppress
from typing import Any, TypeAlias, TypeVar, cast

import anyio
import anyio.abc
import anyio.to_thread

from haven.protocol.errors import DecodeError
from haven.protocol.messages import (
    ChallengeUpdate,
    Draining,
    Error,
    Joined,
    Left,
    Matched,
    Message,
    Queued,
    QueuePosition,
    Reply,
    Request,
    Seat,
    Welcome,
)
from haven.protocol.pow import solve

from .errors import (
    ConnectionLost,
    HavenClientError,
    PowInvalid,
    PowRequired,
    UnexpectedReply,
    request_error,
)
from .link import Link, Pending, close_error
from .room import QueueTicket, Room, RoomEvent
from .router import RouteKind, Router
from .streams import LossyStream

R = TypeVar("R", bound=Reply)

#: What ``Connection.events()`` yields: connection-level events and errors (id 0).
ConnEvent: TypeAlias = QueuePosition | Matched | ChallengeUpdate | Draining | Error

#: Up to this difficulty a proof of work is solved inline (~4096 hashes, a few ms).
SYNC_POW_MAX = 12
#: Ids reserved ahead for a request whose proof of work is solved in a thread, so other
#: requests can go out (with lower ids) meanwhile without breaking id order.
POW_ID_GAP = 1 << 16
CONNECT_TIMEOUT = 10.0
EVENT_BUFFER = 10_000
CONN_EVENT_BUFFER = 256


class ConnState(enum.Enum):
    """Where a connection stands, as ``Connection.state`` and ``Connection.states()``."""

    #: Opening the first link.
    CONNECTING = "connecting"
    #: The first link is up.
    CONNECTED = "connected"
    #: The link dropped; reconnecting with backoff (requests wait).
    RECONNECTING = "reconnecting"
    #: Reconnected, and every seat and queue place resumed (requests flow again).
    RESUMED = "resumed"
    #: Resuming failed for good (time budget spent, or a fatal error): over.
    GAVE_UP = "gave_up"
    #: The application closed the connection: over.
    CLOSED = "closed"


class ConnectionCore:
    """State and mechanics shared by the resume logic and the public API."""

    def __init__(
        self,
        url: str,
        relay_key: bytes,
        *,
        auto_resume: bool = True,
        resume_timeout: float | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        event_buffer: int = EVENT_BUFFER,
        ssl_context: ssl.SSLContext | None = None,
        keepalive: float | None = None,
    ) -> None:
        self._url = url
        self._keepalive = keepalive
        self._ssl_context = ssl_context
        self._key = relay_key
        self._auto_resume = auto_resume
        self._resume_timeout = resume_timeout
        self._connect_timeout = connect_timeout
        self._event_buffer = event_buffer
        self._router = Router()
        self._rooms: dict[str, Room] = {}
        self._tickets: dict[str, QueueTicket] = {}
        self._events: LossyStream[ConnEvent] = LossyStream(CONN_EVENT_BUFFER)
        self._link: Link | None = None
        self._welcome: Welcome | None = None
        self._bg: anyio.abc.TaskGroup | None = None
        #: Set while requests may go out; replaced by a fresh one on every drop.
        self._ready = anyio.Event()
        #: Why the connection is over for good (closed, or gave up); None while alive.
        self._final: ConnectionLost | None = None
        self._closing = False
        self._auth_tokens: list[bytes] = []
        self._duty: set[str] = set()
        #: Completed reconnect-and-resume cycles (for tests and metrics).
        self.resumes = 0
        self._state = ConnState.CONNECTING
        self._states: LossyStream[ConnState] = LossyStream(CONN_EVENT_BUFFER)

    def _set_state(self, state: ConnState) -> None:
        self._state = state
        self._states.put(state)

    async def _expect(self, cls: type[R], build: Callable[[int], Request]) -> R:
        reply = (await self._exchange(build)).result
        if not isinstance(reply, cls):
            raise UnexpectedReply(f"expected {cls.T}, got {type(reply).__name__}")
        return reply

    def _room_of(self, slot: Pending) -> Room:
        if not isinstance(slot.attachment, Room):
            raise UnexpectedReply(f"expected joined, got {type(slot.result).__name__}")
        return slot.attachment

    async def _usable_link(self) -> Link:
        """The current link once it is up and resumed; raises if the connection is over."""
        while True:
            await self._ready.wait()  # a checkpoint even when set: cancellation lands here
            if self._final is not None:
                raise self._final.clone()
            link = self._link
            if link is None:
                continue  # pragma: no cover - _ready is never set without a link
            if not link.broken:
                return link
            await link.done.wait()  # the reader is about to swap _ready; wait for it

    async def _exchange(self, build: Callable[[int], Request]) -> Pending:
        # No checkpoint between taking the id and sealing: ids stay in wire order.
        link = await self._usable_link()
        msg = build(link.take_id())
        slot = await self._submit(link, msg)
        return await self._wait(link, msg.id, slot)

    async def _exchange_pow(self, build: Callable[[int, bytes | None], Request]) -> Pending:
        """A request with a proof of work; re-solved and retried once if the relay says
        the work is missing or wrong (the difficulty may have just gone up)."""
        for attempt in range(2):
            link = await self._usable_link()
            async with link.pow_lock:
                rid, nonce = await self._solve(link)
                slot = await self._submit(link, build(rid, nonce))
            try:
                return await self._wait(link, rid, slot)
            except (PowRequired, PowInvalid):
                if attempt:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _solve(self, link: Link) -> tuple[int, bytes | None]:
        """A request id and the proof of work for it, at the current difficulty.

        Cheap puzzles are solved inline. Hard ones go to a worker thread; their id is
        reserved ``POW_ID_GAP`` ahead so requests sent meanwhile keep lower ids. If that
        many went out during the solve (or the challenge got harder), solve again.
        """
        while True:
            challenge = link.challenge
            if challenge.difficulty <= SYNC_POW_MAX:
                rid = link.take_id()
                return rid, solve(challenge.seed, rid, challenge.difficulty)
            rid = link.session.reserve_id(POW_ID_GAP)
            nonce = await anyio.to_thread.run_sync(
                solve, challenge.seed, rid, challenge.difficulty, abandon_on_cancel=True
            )
            now = link.challenge
            same = now.seed == challenge.seed and now.difficulty <= challenge.difficulty
            if same and link.session.claim(rid):
                return rid, nonce

    async def _submit(self, link: Link, msg: Request) -> Pending:
        slot = Pending()
        link.pending[msg.id] = slot
        try:
            await link.send(msg)
        except BaseException:
            link.pending.pop(msg.id, None)
            raise
        return slot

    async def _wait(self, link: Link, rid: int, slot: Pending) -> Pending:
        try:
            await slot.done.wait()
        except BaseException:
            # Cancelled: keep the slot so a late ``joined`` is cleaned up, not leaked.
            if link.pending.get(rid) is slot:
                slot.abandoned = True
            raise
        result = slot.result
        if isinstance(result, BaseException):
            raise result
        if isinstance(result, Error):
            raise request_error(result.code, result.message, result.retry_after)
        return slot

    async def _read(self, link: Link) -> None:
        """Receive, decrypt, decode and route until the link ends (one per link)."""
        router = self._router
        rooms = self._rooms
        try:
            while True:
                try:
                    msg = await link.receive()
                except DecodeError as exc:
                    self._undecodable(link, exc)
                    continue
                kind, key = router.route(msg)
                if kind is RouteKind.ROOM:
                    room = rooms.get(cast(str, key))
                    if room is not None:
                        await room._stream.put(cast(RoomEvent, msg))
                elif kind is RouteKind.REPLY:
                    self._on_reply(link, cast(Reply, msg))
                elif kind is RouteKind.ROOM_END:
                    room = rooms.pop(cast(str, key), None)
                    if room is not None:
                        await room._stream.put(cast(RoomEvent, msg))
                        room._stream.end()
                elif kind is RouteKind.QUEUE:
                    self._on_queue_event(msg)
                elif kind is RouteKind.CONN:
                    self._on_conn_event(link, msg)
        except ConnectionLost:
            pass
        finally:
            self._link_down(link)

    def _on_reply(self, link: Link, msg: Reply) -> None:
        slot = link.pending.pop(msg.id, None)
        attachment: object = None
        if isinstance(msg, Joined):
            attachment = self._granted(msg.seat)
        elif isinstance(msg, Queued):
            attachment = self._queued(msg)
        elif isinstance(msg, Left):
            self._forget_room(msg.room, None)
        if slot is None:
            return
        if slot.abandoned:
            # Nobody waits for this seat or place any more: give it back.
            if isinstance(attachment, Room) and not attachment.seat.resumed:
                self._spawn(attachment.leave)
            elif isinstance(attachment, QueueTicket):
                self._spawn(attachment.cancel)
            return
        slot.result = msg
        slot.attachment = attachment
        slot.done.set()

    def _undecodable(self, link: Link, exc: DecodeError) -> None:
        """An authenticated frame we cannot decode (newer relay?): fail its request only."""
        slot = link.pending.pop(exc.request_id, None) if exc.request_id else None
        if slot is not None and not slot.abandoned:
            slot.result = UnexpectedReply(f"undecodable reply: {exc.message}")
            slot.done.set()

    def _on_queue_event(self, msg: Message) -> None:
        if isinstance(msg, QueuePosition):
            ticket = self._tickets.get(msg.queue)
            if ticket is not None:
                ticket._update(msg)
                return
            if msg.token is not None:
                # A moderator escalated us into a queue we never asked for: from now on
                # it is a ticket like any other (resumable with this token). The event
                # also goes to ``events()`` so the application learns of the ticket.
                ticket = QueueTicket(self, msg.queue, msg.position, msg.priority, msg.token)
                self._tickets[msg.queue] = ticket
                ticket._update(msg)
        elif isinstance(msg, Matched):
            room = self._granted(msg.seat)
            ticket = self._tickets.pop(msg.queue, None)
            if ticket is not None:
                ticket._matched_into(room, msg)
                return
        self._events.put(cast(ConnEvent, msg))

    def _on_conn_event(self, link: Link, msg: Message) -> None:
        # The session has already taken in a new challenge and draining's retry_after.
        if isinstance(msg, Draining):
            # Leave at once rather than wait to be closed: the relay's drain ends as soon
            # as its clients have gone, and the supervisor reconnects after
            # ``retry_after`` (with jitter and backoff) and resumes where it can.
            link.fail(close_error(1001, "the relay is draining"))
        elif isinstance(msg, Matched):
            self._granted(msg.seat)  # no ticket waits: the room shows up in ``rooms``
        self._events.put(cast(ConnEvent, msg))

    def _granted(self, seat: Seat) -> Room:
        room = self._rooms.get(seat.room)
        if room is None or room.ended:
            room = Room(self, seat, self._event_buffer)
            self._rooms[seat.room] = room
        else:
            room._seat = seat
        return room

    def _queued(self, msg: Queued) -> QueueTicket:
        ticket = self._tickets.get(msg.queue)
        if ticket is None or ticket.ended:
            ticket = QueueTicket(self, msg.queue, msg.position, msg.priority, msg.token)
            self._tickets[msg.queue] = ticket
        else:
            ticket.position, ticket.priority, ticket.token = msg.position, msg.priority, msg.token
        return ticket

    def _forget_room(self, code: str, error: BaseException | None) -> None:
        self._router.forget_room(code)
        room = self._rooms.pop(code, None)
        if room is not None:
            room._stream.end(error)

    def _forget_ticket(self, queue: str, error: BaseException | None) -> None:
        self._router.forget_queue(queue)
        ticket = self._tickets.pop(queue, None)
        if ticket is not None:
            ticket._end(error)

    def _spawn(self, fn: Callable[[], Any]) -> None:
        async def quietly() -> None:
            with suppress(HavenClientError):
                await fn()

        if self._bg is not None:
            self._bg.start_soon(quietly)

    def _install(self, link: Link) -> None:
        assert self._bg is not None
        self._link = link
        self._welcome = link.welcome
        self._bg.start_soon(self._read, link)
        interval = self._keepalive
        if interval is None:  # a third of the relay's idle timeout, at least 5 s
            interval = max(5.0, link.welcome.limits.idle_timeout / 3)
        if interval > 0:
            self._bg.start_soon(link.keep_alive, interval)

    def _link_down(self, link: Link) -> None:
        """Called by the link's reader as it exits: stop new requests, fail pending ones."""
        link.broken = True
        if self._link is link:
            self._link = None
            if self._final is None:
                self._ready = anyio.Event()
        link.fail_pending(link.lost)
        link.done.set()

    def _finish(self, error: ConnectionLost) -> None:
        """The connection is over for good: end every stream and wake every waiter."""
        if self._final is not None:
            return
        self._final = error
        self._set_state(ConnState.CLOSED if self._closing else ConnState.GAVE_UP)
        self._states.end()
        stream_error = None if self._closing else error
        for code in list(self._rooms):
            self._forget_room(code, stream_error and error.clone())
        for queue in list(self._tickets):
            self._forget_ticket(queue, stream_error and error.clone())
        self._events.end(stream_error)
        if self._link is not None:
            self._link.fail_pending(error.clone)
        self._ready.set()


__all__ = ["CONNECT_TIMEOUT", "EVENT_BUFFER", "ConnEvent", "ConnState", "ConnectionCore"]
