"""One WebSocket plus its Noise session: open, handshake, send a request, receive.

A ``Link`` lives for one network connection; the ``Connection`` above it survives drops
by opening new links and resuming. Keeping the wire mechanics here means the connection
logic never touches sockets, ciphers or close codes directly.

Ordering and cancellation. The Noise nonce makes the byte stream stateful: frames must
reach the relay in the order they were sealed, and a sealed frame that never leaves
leaves a nonce gap the relay cannot decrypt past. ``send`` therefore checks for a pending
cancellation *before* sealing and then hands the frame straight to trio-websocket, whose
internal lock is FIFO, so seal order is send order. Request ids are taken right before
sealing (no checkpoint in between), so ids also reach the relay strictly increasing. If a
cancellation nevertheless interrupts a frame already sealed (the send was queued behind
another, or the socket was full), the link is no longer trustworthy: it is marked broken
and closed, and the connection treats that like any other drop (reconnect and resume).
"""

from __future__ import annotations

from collections.abc import Callable

import trio
import trio_websocket
from trio_websocket import CloseReason, ConnectionClosed, WebSocketConnection

from haven.protocol import SUBPROTOCOL
from haven.protocol.errors import HavenError
from haven.protocol.messages import Challenge, Message, Request, Welcome
from haven.protocol.noise import MAX_MESSAGE
from haven.protocol.session import (
    KEY_ERRORS,
    PLAIN_CLOSES,
    ClientSession,
    FrameRejected,
    HandshakeRejected,
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

#: trio-websocket's receive queue (messages); the SDK's reader drains it continuously.
MESSAGE_QUEUE = 16
#: Seconds allowed for a closing handshake before the socket is simply dropped.
CLOSE_TIMEOUT = 2.0


class Pending:
    """A request waiting for its reply: resolved by the reader with one ``Event.set``."""

    __slots__ = ("abandoned", "attachment", "done", "result")

    def __init__(self) -> None:
        self.done = trio.Event()
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


def _from_reason(reason: CloseReason | None) -> ConnectionLost:
    return close_error(reason.code, reason.reason) if reason else close_error(None, None)


class Link:
    """A connected, handshaken WebSocket: the unit that drops and is replaced on resume.

    A Trio shell over ``ClientSession``, which owns the crypto, the request ids, the
    challenge in force and what ``draining`` asked for.
    """

    def __init__(self, ws: WebSocketConnection, session: ClientSession, welcome: Welcome) -> None:
        self.ws = ws
        self.session = session
        self.welcome = welcome
        self.pending: dict[int, Pending] = {}
        #: Serialises proof-of-work solving so at most one request id is reserved at once.
        self.pow_lock = trio.Lock()
        #: Set once the link is unusable (closed, failed, or a frame was cut).
        self.broken = False
        #: Set by the reader when it stops: the connection then handles the drop.
        self.done = trio.Event()
        self._failure: ConnectionLost | None = None
        self._nursery: trio.Nursery | None = None

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
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            frame = self.session.send(msg)
        except HavenError as exc:  # too large: refused before the nonce was used
            raise request_error(exc.code, exc.message) from None
        except SessionStateError:
            raise self.lost() from None
        try:
            await self.ws.send_message(frame)
        except ConnectionClosed as exc:
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
            data = await self.ws.get_message()
        except ConnectionClosed as exc:
            self._closed(exc)
            raise self.lost() from None
        event = self.session.receive(data, trio.current_time())
        if isinstance(event, ReplyReceived):
            return event.reply
        if isinstance(event, FrameRejected):
            self.fail(ConnectionLost(event.reason), code=event.close_code)
            raise self.lost()
        if isinstance(event, Undecodable):
            raise event.error
        assert not isinstance(event, Welcomed | Refused | HandshakeRejected)
        return event.message

    # ------------------------------------------------------------------ close

    def lost(self) -> ConnectionLost:
        """Why this link ended (a fresh exception each call, safe to raise many times)."""
        failure = self._failure
        if failure is None:
            failure = _from_reason(self.ws.closed)
        return failure.clone()

    def _closed(self, exc: ConnectionClosed) -> None:
        self.broken = True
        if self._failure is None and exc.reason is not None:
            self._failure = _from_reason(exc.reason)

    def fail(self, failure: ConnectionLost, code: int = 1000) -> None:
        """Mark the link broken for ``failure`` and close the WebSocket in the background."""
        if self._failure is None:
            self._failure = failure
        if not self.broken:
            self.broken = True
            if self._nursery is not None:
                self._nursery.start_soon(self.aclose, code)

    async def aclose(self, code: int = 1000) -> None:
        """Close the WebSocket politely (bounded by ``CLOSE_TIMEOUT``), then the socket."""
        self.broken = True
        await close_websocket(self.ws, code)

    def fail_pending(self, error_factory: Callable[[], BaseException]) -> None:
        """Resolve every request still waiting with a fresh ``ConnectionLost``."""
        pending, self.pending = self.pending, {}
        for slot in pending.values():
            slot.result = error_factory()
            slot.done.set()


async def close_websocket(ws: WebSocketConnection, code: int = 1000) -> None:
    """Close ``ws`` and, always, the TCP stream under it.

    trio-websocket leaves the socket open when the *relay* started the close (the client
    is meant to wait for the server's TCP close) and when its handshake times out; the
    socket would then leak until garbage collection. Safe to call more than once.
    """
    try:
        with trio.move_on_after(CLOSE_TIMEOUT):
            await ws.aclose(code)
    finally:
        # Even when the polite close fails (the relay already dropped the stream).
        stream = getattr(ws, "_stream", None)
        if stream is not None:
            await trio.aclose_forcefully(stream)


async def open_link(
    nursery: trio.Nursery, url: str, relay_key: bytes, *, connect_timeout: float
) -> Link:
    """Open the WebSocket and run the Noise NK handshake; return the ready link.

    Raises ``ConnectFailed`` (network, upgrade, timeout), ``RelayClosed`` (the relay
    refused with a close code, e.g. 4402 server full or 1001 draining),
    ``HandshakeFailed`` (wrong pinned key or a broken reply), or the typed request error
    the relay sent in place of ``welcome`` (e.g. ``UnsupportedVersion``).
    """
    try:
        with trio.fail_after(connect_timeout):
            ws = await trio_websocket.connect_websocket_url(
                nursery,
                url,
                subprotocols=[SUBPROTOCOL],
                max_message_size=MAX_MESSAGE,
                message_queue_size=MESSAGE_QUEUE,
            )
    except trio.TooSlowError:
        raise ConnectFailed("timed out opening the WebSocket") from None
    except (trio_websocket.HandshakeError, OSError, ConnectionClosed) as exc:
        raise ConnectFailed(f"could not open the WebSocket: {type(exc).__name__}") from exc
    try:
        try:
            with trio.fail_after(connect_timeout):
                link = await _handshake(ws, relay_key)
        except trio.TooSlowError:
            raise ConnectFailed("the relay did not complete the handshake in time") from None
    except BaseException:
        with trio.CancelScope(shield=True):
            await close_websocket(ws)
        raise
    link._nursery = nursery
    return link


async def _handshake(ws: WebSocketConnection, relay_key: bytes) -> Link:
    try:
        ClientSession.check_subprotocol(ws.subprotocol)
    except SessionStateError as exc:
        raise HandshakeFailed(str(exc)) from None
    session = ClientSession(relay_key, now=trio.current_time())
    try:
        await ws.send_message(session.start())
        event = session.receive(await ws.get_message(), trio.current_time())
    except ConnectionClosed as exc:
        closed = _from_reason(exc.reason)
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
    return Link(ws, session, event.welcome)


__all__ = ["CLOSE_TIMEOUT", "Link", "Pending", "close_error", "open_link"]
