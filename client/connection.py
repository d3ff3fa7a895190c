"""The public face of a Haven connection: ``connect`` and the ``Connection`` API.

Tasks per connection: the WebSocket library's reader, the SDK's reader (``client.core``) and a
supervisor that reconnects and resumes (``client.resume``). Requests cost no task.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from typing import cast

import anyio
import anyio.abc

from haven.protocol.messages import (
    Auth,
    Authed,
    CancelHelp,
    Challenge,
    CreateRoom,
    Directory,
    Duty,
    HandoffAccept,
    Join,
    Ok,
    Ping,
    Pong,
    Reply,
    Request,
    RequestHelp,
    Resume,
    RoomInfo,
    Rooms,
    Staff,
    StaffCount,
    TakeNext,
    Welcome,
)

from .core import CONNECT_TIMEOUT, EVENT_BUFFER, ConnEvent, ConnState
from .errors import (
    ConnectionLost,
    HavenClientError,
    UnexpectedReply,
)
from .keys import parse_relay_key
from .link import CLOSE_TIMEOUT
from .resume import ResumingConnection
from .room import QueueTicket, Room
from .streams import LossyStream


class Connection(ResumingConnection):
    """A connection to one relay; create it with ``client.connect``.

    All methods raise the typed errors of ``client.errors``: a refused request raises
    the ``HavenRequestError`` subclass for its code; a request that could not complete
    because the connection dropped raises ``ConnectionLost``.
    """

    @property
    def welcome(self) -> Welcome:
        """The latest ``welcome``: protocol version, limits, first PoW challenge."""
        if self._welcome is None:
            raise RuntimeError("not connected yet")
        return self._welcome

    @property
    def challenge(self) -> Challenge:
        """The proof-of-work challenge in force (updated by ``challenge`` events)."""
        return self._link.challenge if self._link is not None else self.welcome.challenge

    @property
    def rooms(self) -> dict[str, Room]:
        """Rooms this connection holds a seat in, by canonical code (a copy)."""
        return dict(self._rooms)

    @property
    def tickets(self) -> dict[str, QueueTicket]:
        """Queue places this connection holds, by queue name (a copy)."""
        return dict(self._tickets)

    @property
    def connected(self) -> bool:
        """True while a link is up and resumed (False while reconnecting, or closed)."""
        return self._final is None and self._ready.is_set()

    @property
    def closed(self) -> bool:
        """True once the connection is over for good (closed, or resume gave up)."""
        return self._final is not None

    @property
    def state(self) -> ConnState:
        """Where the connection stands: connecting, connected, reconnecting, resumed,
        gave up or closed."""
        return self._state

    def states(self) -> LossyStream[ConnState]:
        """Every change of ``state`` as it happens (newest 256 kept; never blocks). Ends
        after ``GAVE_UP`` or ``CLOSED``: show "reconnecting..." and "back" from here."""
        return self._states

    @property
    def duplicates_dropped(self) -> int:
        """Replayed room events dropped as already seen (see ``Router``)."""
        return self._router.duplicates

    def events(self) -> LossyStream[ConnEvent]:
        """Connection-level events: ``challenge``, ``draining``, unclaimed queue events,
        and connection-level ``error`` messages. Lossy (newest 256 kept); never blocks.
        Ends when the connection closes; raises ``ConnectionLost`` if resume gave up."""
        return self._events

    async def ping(self) -> None:
        await self._expect(Pong, lambda i: Ping(id=i))

    async def create_room(
        self,
        kind: str = "group",
        topic: str | None = None,
        listed: bool = False,
        premoderated: bool = False,
        max_members: int | None = None,
        idle_ttl: int | None = None,
        hard_ttl: int | None = None,
        rules: str | None = None,
    ) -> Room:
        """Create a room and take its first seat (with proof of work when required)."""

        def build(i: int, pow: bytes | None) -> Request:
            return CreateRoom(
                id=i,
                kind=kind,
                topic=topic,
                listed=listed,
                premoderated=premoderated,
                max_members=max_members,
                idle_ttl=idle_ttl,
                hard_ttl=hard_ttl,
                rules=rules,
                pow=pow,
            )

        return self._room_of(await self._exchange_pow(build))

    async def join(self, code: str) -> Room:
        """Join a room by its code (any spelling the relay accepts)."""
        return self._room_of(await self._exchange(lambda i: Join(id=i, room=code)))

    async def auth(self, token: bytes | str) -> Authed:
        """Present a staff, moderator or responder token (re-presented after a resume)."""
        raw = token.encode("utf-8") if isinstance(token, str) else bytes(token)
        reply = await self._expect(Authed, lambda i: Auth(id=i, token=raw))
        if raw not in self._auth_tokens:
            self._auth_tokens.append(raw)
        return reply

    async def resume(self, token: bytes, after: int = 0) -> Room | QueueTicket:
        """Take back a seat or a queue place on this connection from a saved token.

        For a page reload or an app restart: save ``room.seat.token`` and the last
        ``seq`` you showed (or ``ticket.token``), and hand them back here on a new
        connection within the relay's ``resume_grace``. A seat comes back as a ``Room``
        whose stream replays every event after ``after``; a queue place as a
        ``QueueTicket`` (or as a ``Room`` if staff took it meanwhile). Tokens rotate on
        every resume: save the new ``room.seat.token``. Raises ``ResumeFailed`` (unknown
        or expired token) like any refused request.
        """
        slot = await self._exchange(lambda i: Resume(id=i, token=bytes(token), after=after))
        if isinstance(slot.attachment, Room | QueueTicket):
            return slot.attachment
        raise UnexpectedReply(f"resume was answered by {type(slot.result).__name__}")

    async def directory(self) -> list[RoomInfo]:
        """Open and scheduled group rooms."""
        return list((await self._expect(Rooms, lambda i: Directory(id=i))).rooms)

    async def request_help(self, queue: str) -> QueueTicket:
        """Wait in intake queue ``queue`` for staff (with proof of work when required)."""
        slot = await self._exchange_pow(lambda i, pow: RequestHelp(id=i, queue=queue, pow=pow))
        if not isinstance(slot.attachment, QueueTicket):
            raise UnexpectedReply(f"request_help was answered by {type(slot.result).__name__}")
        return slot.attachment

    async def cancel_help(self, queue: str) -> None:
        """Leave intake queue ``queue``; its ticket ends (``room()`` raises NotQueued)."""
        await self._expect(Ok, lambda i: CancelHelp(id=i, queue=queue))
        self._forget_ticket(queue, None)

    async def staff_count(self, queue: str) -> int:
        """How many staff are on duty for ``queue``."""
        return (await self._expect(Staff, lambda i: StaffCount(id=i, queue=queue))).count

    async def duty(self, queue: str, on: bool = True) -> None:
        """Staff: go on (or off) duty for ``queue`` (restored after a resume)."""
        await self._expect(Ok, lambda i: Duty(id=i, queue=queue, on=on))
        if on:
            self._duty.add(queue)
        else:
            self._duty.discard(queue)

    async def take_next(self, queue: str) -> Room:
        """Staff: take the next visitor from ``queue`` into a new direct room."""
        return self._room_of(await self._exchange(lambda i: TakeNext(id=i, queue=queue)))

    async def handoff_accept(self, code: str) -> Room:
        """Responder: join a direct room with a spoken one-time code."""
        slot = await self._exchange_pow(lambda i, pow: HandoffAccept(id=i, code=code, pow=pow))
        return self._room_of(slot)

    async def request(self, build: Callable[[int], Request]) -> Reply:
        """Escape hatch: send ``build(request_id)`` and return its reply.

        The reply is processed like any other (a ``joined`` registers its room in
        ``rooms``); an ``error`` reply raises its typed exception.
        """
        return cast(Reply, (await self._exchange(build)).result)

    async def request_with_pow(self, build: Callable[[int, bytes | None], Request]) -> Reply:
        """Like ``request`` for requests with a ``pow`` field: ``build(id, pow)``."""
        return cast(Reply, (await self._exchange_pow(build)).result)

    def interrupt(self) -> None:
        """Drop the current network link now, as a flaky mobile network would.

        For demonstrations and for testing an application's reconnect handling: the SDK
        notices the drop like any other, reconnects with backoff and resumes every seat
        and queue place (with ``auto_resume``, the default). Does nothing while no link
        is up.
        """
        link = self._link
        if link is not None:
            link.fail(ConnectionLost("interrupted by the application"))

    async def close(self, *, leave: bool = False) -> None:
        """Close the connection. Room streams end normally; in-flight requests fail.

        Without ``leave`` the relay treats this like a drop and holds the seats for its
        grace window (others see "away", then "left"); with ``leave=True`` each seat is
        given up first, so others see "left" at once.
        """
        if self._closing:
            return
        if leave:
            for room in list(self._rooms.values()):
                with anyio.move_on_after(CLOSE_TIMEOUT), suppress(HavenClientError):
                    await room.leave()
        self._closing = True
        link = self._link
        self._finish(ConnectionLost("the application closed the connection"))
        try:
            if link is not None:
                with anyio.CancelScope(shield=True):
                    await link.aclose()  # bounded by CLOSE_TIMEOUT
        finally:
            # Only now: the WebSocket's reader (in ``_bg``) completes the close handshake.
            if self._bg is not None:
                self._bg.cancel_scope.cancel()


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one meaningful exception in a nursery's group, if there is exactly one."""
    leaves = list(_leaves(group))
    cancelled = anyio.get_cancelled_exc_class()
    real = [e for e in leaves if not isinstance(e, cancelled)]
    if len(real) == 1:
        return real[0]
    if not real and leaves:
        return leaves[0]
    return None


@asynccontextmanager
async def connect(
    url: str,
    relay_key: bytes | str,
    *,
    auto_resume: bool = True,
    resume_timeout: float | None = None,
    connect_timeout: float = CONNECT_TIMEOUT,
    event_buffer: int = EVENT_BUFFER,
    ssl_context: ssl.SSLContext | None = None,
    keepalive: float | None = None,
) -> AsyncIterator[Connection]:
    """Connect to the relay at ``url`` whose static key is pinned as ``relay_key``.

    ``relay_key`` is 32 raw bytes or the base64url text the relay prints. Raises
    ``ConnectFailed``, ``RelayClosed`` (e.g. 4402 server full), ``HandshakeFailed``
    (wrong key) or the relay's typed refusal (``UnsupportedVersion``) if the first
    connection cannot be made. Afterwards drops are handled as described in the module
    docstring; ``resume_timeout`` (seconds) bounds the reconnect attempts and defaults to
    the relay's ``resume_grace``. ``event_buffer`` bounds each room's event buffer.
    ``ssl_context`` is used for ``wss://`` URLs (default: the system's trust store);
    a certificate it does not trust raises ``TLSFailed`` at once. ``keepalive`` (seconds;
    default a third of the relay's idle timeout, 0 for none) pings the relay when nothing
    has arrived for that long, so NAT boxes and proxies keep a quiet connection open.

    Runs under Trio and under asyncio (the same API; the WebSocket is trio-websocket or
    ``websockets`` respectively).

    Exceptions from the body come out unwrapped (not as an ``ExceptionGroup``).
    """
    key = parse_relay_key(relay_key)
    conn = Connection(
        url,
        key,
        auto_resume=auto_resume,
        resume_timeout=resume_timeout,
        connect_timeout=connect_timeout,
        event_buffer=event_buffer,
        ssl_context=ssl_context,
        keepalive=keepalive,
    )
    try:
        async with anyio.create_task_group() as nursery:
            await nursery.start(conn._run)
            try:
                yield conn
            finally:
                with anyio.CancelScope(shield=True):
                    await conn.close()
    except BaseExceptionGroup as group:
        single = _single(group)
        if single is None:
            raise
        context = single.__context__
        try:
            raise single  # the group is an implementation detail: drop it from the context
        finally:
            single.__context__ = context


__all__ = ["ConnEvent", "Connection", "connect"]
