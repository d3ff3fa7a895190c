"""A lean Haven connection for the load generator's hot path: wsproto + Noise, one reader.

Why not the SDK: a load generator holds thousands of connections on a core it shares
with the relay, so every microsecond it spends per frame is a microsecond the relay
does not get. This client does only what the load needs: connect, handshake, numbered
requests with their replies, and a callback per pushed event, with no per-message
channel, queue or task (measured: see docs/benchmarks.md). It is a thin Trio shell over
``protocol.session.ClientSession``, like every other client.

``on_message`` sees every decoded server message before it is dispatched. The tests
replace it (see ``LoadClient.receive_hook``) to drop or duplicate chosen messages.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from haven.protocol import SUBPROTOCOL, pow
from haven.protocol import messages as m
from haven.protocol.errors import ErrorCode, HavenError
from haven.protocol.session import (
    ClientSession,
    FrameRejected,
    Pushed,
    Refused,
    ReplyReceived,
    Undecodable,
    Welcomed,
    close_code,
)

RECEIVE_SIZE = 65536

#: Called with (connection, message) for every pushed event (no request id).
EventHandler = Callable[["LoadClient", m.Message], None]
#: Test double hook: maps one decoded message to the messages actually dispatched.
ReceiveHook = Callable[["LoadClient", m.Message], list[m.Message]]


class WireError(Exception):
    """The connection failed or closed; ``kind`` is a short fixed label for reports."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


class ReplyError(Exception):
    """The relay answered a request with a typed ``error``."""

    def __init__(self, error: m.Error) -> None:
        super().__init__(f"error {error.code}: {error.message}")
        self.error = error


class _Waiter:
    __slots__ = ("event", "reply")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.reply: m.Message | None = None


class LoadClient:
    """One connection to a relay: handshake done, reader running in ``nursery``."""

    def __init__(self, stream: trio.SocketStream, ws: WSConnection, session: ClientSession,
                 welcome: m.Welcome) -> None:  # fmt: skip
        self.stream = stream
        self.ws = ws
        self.session = session
        self.welcome = welcome
        self.on_event: EventHandler = _ignore
        self.receive_hook: ReceiveHook | None = None
        self.closed = False
        self.close_reason = ""
        self._waiters: dict[int, _Waiter] = {}
        self._send_lock = trio.Lock()
        self._cancel = trio.CancelScope()
        self.done = trio.Event()

    # ------------------------------------------------------------------ requests

    def reserve_id(self) -> int:
        """Take the next request id now (to solve a proof of work for it first).

        The caller must send it (``request(..., request_id=...)``) before any other
        request on this connection: ids must strictly increase on the wire.
        """
        return self.session.take_id()

    @property
    def challenge(self) -> m.Challenge:
        """The current proof-of-work challenge (updated by ``challenge`` events)."""
        challenge = self.session.challenge
        assert challenge is not None
        return challenge

    async def request(
        self, build: Callable[[int], m.Request], request_id: int | None = None
    ) -> m.Message:
        """Send ``build(id)`` and return its reply; a typed error raises ``ReplyError``."""
        waiter = _Waiter()
        async with self._send_lock:
            if self.closed:
                raise WireError("closed", self.close_reason)
            if request_id is None:
                request_id = self.reserve_id()
            self._waiters[request_id] = waiter
            sealed = self.session.send(build(request_id))
            data = self.ws.send(BytesMessage(data=sealed))
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._waiters.pop(request_id, None)
                self._lost("send failed")
                raise WireError("closed", "send failed") from exc
        await waiter.event.wait()
        reply = waiter.reply
        if reply is None:
            raise WireError("closed", self.close_reason)
        if isinstance(reply, m.Error):
            raise ReplyError(reply)
        return reply

    # -------------------------------------------------------------------- reader

    async def run_reader(self) -> None:
        """Read and dispatch until the connection ends (never raises for a close)."""
        with self._cancel:
            try:
                await self._read_loop()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._lost("connection reset")
            except (HavenError, RemoteProtocolError) as exc:
                self._lost(f"protocol: {type(exc).__name__}")
        self._lost(self.close_reason or "closed")
        self.done.set()

    async def _read_loop(self) -> None:
        stream = self.stream
        ws = self.ws
        session = self.session
        partial: list[bytes] = []
        while True:
            data = await stream.receive_some(RECEIVE_SIZE)
            if not data:
                self._lost("eof")
                return
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, BytesMessage):
                    if not event.message_finished:
                        partial.append(bytes(event.data))
                        continue
                    raw = bytes(event.data)
                    if partial:
                        partial.append(raw)
                        raw = b"".join(partial)
                        partial.clear()
                    got = session.receive(raw)
                    if isinstance(got, ReplyReceived):
                        msg: m.Message = got.reply
                    elif isinstance(got, Undecodable):
                        raise got.error
                    elif isinstance(got, FrameRejected):
                        self._lost(f"protocol: {got.reason}")
                        return
                    else:
                        assert isinstance(got, Pushed)
                        msg = got.message
                    hook = self.receive_hook
                    if hook is None:
                        self._dispatch(msg)
                    else:
                        for each in hook(self, msg):
                            self._dispatch(each)
                elif isinstance(event, Ping):
                    await self._send_raw(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    self._lost(f"closed {event.code}")
                    return

    async def pow_for(self, request_id: int) -> bytes | None:
        """A proof of work for request ``request_id`` under the current challenge.

        Solved in a thread so that the other connections of this worker keep running.
        """
        seed, difficulty = self.challenge.seed, self.challenge.difficulty
        if difficulty <= 0:
            return None
        return await trio.to_thread.run_sync(pow.solve, seed, request_id, difficulty)

    def _dispatch(self, msg: m.Message) -> None:
        if isinstance(msg, m.ChallengeUpdate):
            return  # the session took the new challenge in
        request_id = getattr(msg, "id", None)
        if request_id:  # a reply (connection-level errors carry id 0)
            waiter = self._waiters.pop(request_id, None)
            if waiter is not None:
                waiter.reply = msg
                waiter.event.set()
            return
        self.on_event(self, msg)

    async def _send_raw(self, data: bytes) -> None:
        async with self._send_lock:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._lost("send failed")

    def _lost(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        for waiter in self._waiters.values():
            waiter.event.set()
        self._waiters.clear()

    # --------------------------------------------------------------------- close

    async def aclose(self) -> None:
        """Close politely (WebSocket close frame), then hang up."""
        if not self.closed:
            with contextlib.suppress(LocalProtocolError):
                await self._send_raw(self.ws.send(CloseConnection(code=1000)))
        self.abort()

    def abort(self) -> None:
        """Hang up at once without a close frame (a forced disconnect)."""
        self._lost("aborted")
        self._cancel.cancel()
        with contextlib.suppress(OSError):
            self.stream.socket.close()


def _ignore(conn: LoadClient, msg: m.Message) -> None:
    """Default event handler: drop events nobody asked for."""


def split_url(url: str) -> tuple[str, int, str]:
    """(host, port, path) of a ``ws://`` URL; load tests only ever target loopback."""
    parts = urlsplit(url)
    if parts.scheme != "ws" or parts.hostname is None:
        raise ValueError(f"expected a ws:// URL, got {url!r}")
    return parts.hostname, parts.port or 80, parts.path or "/"


async def connect(url: str, relay_key: bytes, nursery: trio.Nursery,
                  limit_s: float = 10.0) -> tuple[LoadClient, float]:  # fmt: skip
    """Open a connection (TCP, WebSocket upgrade, Noise NK); returns it and seconds taken.

    The reader task runs in ``nursery``. Raises ``WireError`` on any failure.
    """
    host, port, path = split_url(url)
    started = time.perf_counter()
    stream: trio.SocketStream | None = None
    try:
        with trio.fail_after(limit_s):
            stream = await trio.open_tcp_stream(host, port)
            ws = WSConnection(ConnectionType.CLIENT)
            await stream.send_all(
                ws.send(Request(host=f"{host}:{port}", target=path, subprotocols=[SUBPROTOCOL]))
            )
            await _await_accept(stream, ws)
            session = ClientSession(relay_key)
            await stream.send_all(ws.send(BytesMessage(data=session.start())))
            got = session.receive(await _next_binary(stream, ws))
            if isinstance(got, Refused):
                raise WireError("handshake", f"relay refused: {got.error!r}")
            if not isinstance(got, Welcomed):
                raise WireError("handshake", getattr(got, "reason", "no welcome"))
    except trio.TooSlowError:
        await _close_quietly(stream)
        raise WireError("timeout", "handshake took too long") from None
    except OSError as exc:
        await _close_quietly(stream)
        raise WireError("connect", str(exc)) from None
    except (trio.BrokenResourceError, trio.ClosedResourceError, RemoteProtocolError) as exc:
        await _close_quietly(stream)
        raise WireError("handshake", type(exc).__name__) from None
    except HavenError as exc:
        await _close_quietly(stream)
        raise WireError("handshake", exc.code.name) from None
    except WireError:
        await _close_quietly(stream)
        raise
    elapsed = time.perf_counter() - started
    conn = LoadClient(stream, ws, session, got.welcome)
    nursery.start_soon(conn.run_reader)
    return conn, elapsed


async def _close_quietly(stream: trio.SocketStream | None) -> None:
    if stream is not None:
        await trio.aclose_forcefully(stream)


async def _await_accept(stream: trio.SocketStream, ws: WSConnection) -> None:
    while True:
        for event in ws.events():
            if isinstance(event, AcceptConnection):
                return
            if isinstance(event, RejectConnection):
                raise WireError("handshake", f"upgrade rejected ({event.status_code})")
        data = await stream.receive_some(RECEIVE_SIZE)
        if not data:
            raise WireError("handshake", "relay closed during upgrade")
        ws.receive_data(data)


async def _next_binary(stream: trio.SocketStream, ws: WSConnection) -> bytes:
    while True:
        for event in ws.events():
            if isinstance(event, BytesMessage) and event.message_finished:
                return bytes(event.data)
            if isinstance(event, CloseConnection):
                full = event.code == close_code(ErrorCode.SERVER_FULL)
                kind = "SERVER_FULL" if full else "refused"
                raise WireError(kind, f"close {event.code} {event.reason}")
        data = await stream.receive_some(RECEIVE_SIZE)
        if not data:
            raise WireError("handshake", "relay closed during handshake")
        ws.receive_data(data)


def reply_kind(exc: BaseException) -> str:
    """A short fixed label for an exception, used as the errors-by-code key."""
    if isinstance(exc, ReplyError):
        try:
            return ErrorCode(exc.error.code).name
        except ValueError:
            return f"code_{exc.error.code}"
    if isinstance(exc, WireError):
        return exc.kind
    return type(exc).__name__


__all__: list[Any] = ["LoadClient", "ReplyError", "WireError", "connect", "reply_kind"]
