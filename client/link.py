"""One WebSocket plus its Haven session: open, handshake, send a request, receive.

A ``Link`` lives for one network connection; the ``Connection`` above it survives drops
by opening new links and resuming. Keeping the wire mechanics here means the connection
logic never touches sockets, ciphers or close codes directly: the crypto, request ids and
close-code meanings are ``protocol.session.ClientSession``'s, and the WebSocket is the
runtime's own (``client.transport``: trio-websocket under Trio, ``websockets`` under
asyncio). The code is anyio, so the same link serves both runtimes.

Ordering and cancellation. The Noise nonce makes the byte stream stateful: frames must
reach the relay in the order they were sealed, and a sealed frame that never leaves
leaves a nonce gap the relay cannot decrypt past. ``send`` therefore checks for a pending
cancellation *before* sealing and then hands the frame straight to the WebSocket under a
FIFO lock, so seal order is send order. Request ids are taken right before sealing (no
checkpoint in between), so ids also reach the relay strictly increasing. If a
cancellation nevertheless interrupts a frame already sealed (the send was queued behind
another, or the socket was full), the link is no longer trustworthy: it is marked broken
and closed, and the connection treats that like any other drop (reconnect and resume).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

import anyio
import anyio.abc
import anyio.lowlevel

from haven.protocol.errors import HavenError
from haven.protocol.messages import Challenge, Message, Request, Welcome
from haven.protocol.session import (
    KEY_ERRORS,
    PLAIN_CLOSES,
    ClientSession,
    FrameRejected,
    HandshakeRejected,
    PingDue,
    Pushed,
    Refused,
    ReplyReceived,
    SessionStateError,
    Undecodable,
    Welcomed,
)

from .errors import (
    ConnectFailed,
    ConnectionLost,
    HandshakeFailed,
    RelayClosed,
    request_error,
)
from .transport import CLOSE_TIMEOUT, Channel, ChannelClosed, open_channel


class Pending:
    """A request waiting for its reply: resolved by the reader with one ``Event.set``."""

    __slots__ = ("abandoned", "attachment", "done", "result")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.result: Message | BaseException | None = None
        #: What the reply created on arrival (a ``Room`` for ``joined``, a ticket for ``queued``).
        self.attachment: object = None
        #: The caller stopped waiting (cancelled); a late reply is cleaned up, not lost.
        self.abandoned = False


def close_error(code: int | None, reason: str | None) -> ConnectionLost:
    """The exception describing a WebSocket close with ``code``."""
    if code is None or code in PLAIN_CLOSES:
        return ConnectionLost(reason or "connection lost", close_code=code)
    return RelayClosed(code, reason or "")


class Link:
    """A connected, handshaken WebSocket: the unit that drops and is replaced on resume."""

    def __init__(self, channel: Channel, session: ClientSession, welcome: Welcome) -> None:
        self.channel = channel
        self.session = session
        self.welcome = welcome
        self.pending: dict[int, Pending] = {}
        #: Serialises proof-of-work solving so at most one request id is reserved at once.
        self.pow_lock = anyio.Lock()
        #: Seal-then-send under one FIFO lock: seal order is wire order.
        self._send_lock = anyio.Lock()
        #: Set once the link is unusable (closed, failed, or a frame was cut).
        self.broken = False
        #: Set by the reader when it stops: the connection then handles the drop.
        self.done = anyio.Event()
        self._failure: ConnectionLost | None = None
        self._tg: anyio.abc.TaskGroup | None = None

    # ------------------------------------------------------------------- ids

    def take_id(self) -> int:
        """The next request id (strictly increasing on this link)."""
        return self.session.take_id()

    @property
    def challenge(self) -> Challenge:
        """The current proof-of-work challenge (``welcome``'s, then ``challenge`` events)."""
        challenge = self.session.challenge
        assert challenge is not None
        return challenge

    @property
    def retry_after(self) -> float:
        """Seconds the relay asked us to wait before reconnecting (``draining``)."""
        return self.session.retry_after

    # ------------------------------------------------------------------- send

    async def send(self, msg: Request) -> None:
        """Encode, seal and send one request; see the module docstring on cancellation."""
        if self.broken:
            raise self.lost()
        await anyio.lowlevel.checkpoint_if_cancelled()
        async with self._send_lock:
            if self.broken:
                raise self.lost()
            try:
                frame = self.session.send(msg)
            except HavenError as exc:  # too large: refused before the nonce was used
                raise request_error(exc.code, exc.message) from None
            except SessionStateError:
                raise self.lost() from None
            try:
                await self.channel.send(frame)
            except ChannelClosed as exc:
                self._closed(exc)
                raise self.lost() from None
            except BaseException:
                self.fail(ConnectionLost("a request was cancelled halfway onto the wire"))
                raise

    # ---------------------------------------------------------------- receive

    async def receive(self) -> Message:
        """The next server message; raises ``ConnectionLost`` when the link ends.

        A frame that fails authentication or padding ends the link: it is out of sync or
        was tampered with. A frame that authenticates but does not decode (say, a message
        type from a newer relay) raises ``DecodeError`` and leaves the link intact, so the
        reader can skip it: it provably came from the relay.
        """
        try:
            data = await self.channel.receive()
        except ChannelClosed as exc:
            self._closed(exc)
            raise self.lost() from None
        event = self.session.receive(data, anyio.current_time())
        if isinstance(event, ReplyReceived):
            return event.reply
        if isinstance(event, Pushed):
            return event.message
        if isinstance(event, FrameRejected):
            self.fail(ConnectionLost(event.reason), code=event.close_code)
            raise self.lost()
        if isinstance(event, Undecodable):
            raise event.error
        raise AssertionError(f"handshake event on an open link: {event!r}")

    # ------------------------------------------------------------------ close

    def lost(self) -> ConnectionLost:
        """Why this link ended (a fresh exception each call, safe to raise many times)."""
        failure = self._failure
        if failure is None:
            failure = ConnectionLost("connection lost")
        return failure.clone()

    def _closed(self, exc: ChannelClosed) -> None:
        self.broken = True
        self.session.connection_closed()
        if self._failure is None:
            self._failure = close_error(exc.code, exc.reason)

    def fail(self, failure: ConnectionLost, code: int = 1000) -> None:
        """Mark the link broken for ``failure`` and close the WebSocket in the background."""
        if self._failure is None:
            self._failure = failure
        if not self.broken:
            self.broken = True
            if self._tg is not None:
                self._tg.start_soon(self.aclose, code)

    async def aclose(self, code: int = 1000) -> None:
        """Close the WebSocket politely (bounded by ``CLOSE_TIMEOUT``), then the socket."""
        self.broken = True
        await self.channel.aclose(code)

    async def keep_alive(self, interval: float) -> None:
        """Ping the relay whenever nothing has arrived for ``interval`` seconds, so NAT
        boxes and proxies do not drop a quiet connection (runs until the link breaks).

        The session says when (``next_deadline``) and seals the ping (``handle_timer``);
        sealing happens under the send lock, so the ping keeps its place in nonce order.
        Its ``pong`` matches no waiter and is dropped by the reader.
        """
        session = self.session
        session.keepalive = interval
        while True:
            deadline = session.next_deadline()
            if deadline is None:
                return
            await anyio.sleep(max(0.0, deadline - anyio.current_time()))
            async with self._send_lock:
                if self.broken:
                    return
                due = session.handle_timer(anyio.current_time())
                if isinstance(due, PingDue):
                    try:
                        await self.channel.send(due.frame)
                    except ChannelClosed as exc:
                        self._closed(exc)
                        return

    def fail_pending(self, error_factory: Callable[[], BaseException]) -> None:
        """Resolve every request still waiting with a fresh ``ConnectionLost``."""
        pending, self.pending = self.pending, {}
        for slot in pending.values():
            slot.result = error_factory()
            slot.done.set()


async def open_link(
    tg: anyio.abc.TaskGroup,
    url: str,
    relay_key: bytes,
    *,
    connect_timeout: float,
    ssl_context: ssl.SSLContext | None = None,
) -> Link:
    """Open the WebSocket and run the Noise NK handshake; return the ready link.

    Raises ``ConnectFailed`` (network, timeout; ``TLSFailed`` and ``UpgradeRefused`` for
    those two), ``RelayClosed`` (the relay refused with a close code, e.g. 4402 server
    full or 1001 draining), ``HandshakeFailed`` (wrong pinned key or a broken reply), or
    the typed request error the relay sent in place of ``welcome`` (``UnsupportedVersion``).
    """
    try:
        with anyio.fail_after(connect_timeout):
            channel = await open_channel(tg, url, ssl_context)
    except TimeoutError:
        raise ConnectFailed("timed out opening the WebSocket") from None
    try:
        try:
            with anyio.fail_after(connect_timeout):
                link = await _handshake(channel, relay_key)
        except TimeoutError:
            raise ConnectFailed("the relay did not complete the handshake in time") from None
    except BaseException:
        with anyio.CancelScope(shield=True):
            await channel.aclose()
        raise
    link._tg = tg
    return link


async def _handshake(channel: Channel, relay_key: bytes) -> Link:
    try:
        ClientSession.check_subprotocol(channel.subprotocol)
    except SessionStateError as exc:
        raise HandshakeFailed(str(exc)) from None
    session = ClientSession(relay_key, now=anyio.current_time())
    try:
        await channel.send(session.start())
        event = session.receive(await channel.receive(), anyio.current_time())
    except ChannelClosed as exc:
        closed = close_error(exc.code, exc.reason)
        if isinstance(closed, RelayClosed) and closed.error_code in KEY_ERRORS:
            raise HandshakeFailed(
                f"the relay refused the handshake ({closed.code}); check the pinned relay key"
            ) from None
        raise closed from None
    if isinstance(event, Refused):
        error = event.error
        raise request_error(error.code, error.message, error.retry_after)
    if not isinstance(event, Welcomed):
        reason = event.reason if isinstance(event, HandshakeRejected) else "no welcome"
        # Noise, padding or decoding failed: almost always a wrong pinned relay key.
        raise HandshakeFailed(f"{reason}; check the pinned relay key")
    return Link(channel, session, event.welcome)


__all__ = ["CLOSE_TIMEOUT", "Link", "Pending", "close_error", "open_link"]
