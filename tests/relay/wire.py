"""A raw Haven wire client for relay tests: every byte stays under the test's control.

Why not the SDK: these tests must be able to send what no well-behaved client sends
(garbage before the upgrade, a bit-flipped frame, a text message, a replayed handshake,
a socket that is never read) and to see exactly what the relay answers, close codes
included. So this module drives wsproto directly on a Trio socket it opens itself, and
does the Noise NK handshake and framing with ``protocol/``; it shares no code with
``client/``.

Nothing here runs a background task: a test reads only when it asks to, so a client
that "stops reading" is simply one the test no longer reads from. Every wait is bounded
(``within`` seconds, by ``trio.fail_after`` on the Trio clock), which under
``autojump_clock`` turns a hang into a quick, clear failure instead of a stuck suite:
the relay's housekeeping timer never lets an unbounded wait end by itself.
"""

from __future__ import annotations

import contextlib
import math
import socket as stdlib_socket
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError

from haven.protocol import SUBPROTOCOL, codec
from haven.protocol import messages as m
from haven.protocol.errors import ErrorCode
from haven.protocol.session import ClientSession, Welcomed

#: Default bound (Trio clock seconds) on any single wait for the relay.
TIMEOUT = 30.0
RECEIVE_SIZE = 65536

M = TypeVar("M", bound=m.Message)


class Closed(Exception):
    """The WebSocket ended: ``code`` is the relay's close code, ``None`` for a bare EOF."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"closed with {code} {reason!r}")
        self.code = code
        self.reason = reason


class UnexpectedReply(AssertionError):
    """A request was answered with something other than what the test expected."""


@dataclass
class _Inbox:
    """Messages and the close (if any) parsed off the socket but not yet consumed."""

    messages: deque[bytes | str] = field(default_factory=deque)
    closed: Closed | None = None
    partial: list[bytes] = field(default_factory=list)
    partial_text: list[str] = field(default_factory=list)
    upgrade: AcceptConnection | RejectConnection | None = None


class RawSocket:
    """One TCP connection to the relay with a client-side wsproto, driven by hand."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.inbox = _Inbox()
        #: Answer WebSocket pings while reading (a client that never does goes idle).
        self.answer_pings = True
        self.accepted: AcceptConnection | None = None

    @classmethod
    async def open(
        cls, port: int, *, host: str = "127.0.0.1", bind_host: str | None = None,
        rcvbuf: int | None = None,
    ) -> RawSocket:
        """Connect over TCP; ``bind_host`` picks the local address, ``rcvbuf`` shrinks
        the kernel receive buffer (set before connecting, so the window stays small)."""
        sock = trio.socket.socket(stdlib_socket.AF_INET, stdlib_socket.SOCK_STREAM)
        try:
            if rcvbuf is not None:
                sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVBUF, rcvbuf)
            if bind_host is not None:
                await sock.bind((bind_host, 0))
            await sock.connect((host, port))
        except BaseException:
            sock.close()
            raise
        return cls(trio.SocketStream(sock))

    @property
    def local_port(self) -> int:
        """This client's own (ephemeral) port, read from its own socket."""
        port: int = self.stream.socket.getsockname()[1]
        return port

    @property
    def local_host(self) -> str:
        host: str = self.stream.socket.getsockname()[0]
        return host

    # ----------------------------------------------------------------- writing

    async def send_raw(self, data: bytes) -> None:
        """Write bytes to the TCP stream as they are (no WebSocket framing)."""
        await self.stream.send_all(data)

    async def upgrade(
        self, subprotocols: Iterable[str] = (SUBPROTOCOL,), within: float = TIMEOUT
    ) -> AcceptConnection | RejectConnection:
        """Send the HTTP upgrade and wait for the relay's answer."""
        await self.send_raw(
            self.ws.send(Request(host="127.0.0.1", target="/", subprotocols=list(subprotocols)))
        )
        with trio.fail_after(within):
            while self.inbox.upgrade is None:
                if self.inbox.closed is not None:
                    raise self.inbox.closed
                await self._fill()
        if isinstance(self.inbox.upgrade, AcceptConnection):
            self.accepted = self.inbox.upgrade
        return self.inbox.upgrade

    def _check_open(self) -> None:
        if self.ws.state is not ConnectionState.OPEN and self.inbox.closed is not None:
            raise self.inbox.closed

    async def send_bytes(self, data: bytes) -> None:
        """One binary WebSocket message (``Closed`` if the relay already closed)."""
        self._check_open()
        await self.send_raw(self.ws.send(BytesMessage(data=data)))

    async def send_text(self, text: str) -> None:
        """One text WebSocket message (the relay speaks binary only)."""
        self._check_open()
        await self.send_raw(self.ws.send(TextMessage(data=text)))

    def frame_bytes(self, data: bytes) -> bytes:
        """The wire bytes of one binary message, for tests that cut or mangle them."""
        return self.ws.send(BytesMessage(data=data))

    # ----------------------------------------------------------------- reading

    async def _fill(self) -> None:
        """Read once from the socket and parse everything that arrived."""
        inbox = self.inbox
        if inbox.closed is not None:
            return
        try:
            data = await self.stream.receive_some(RECEIVE_SIZE)
        except trio.BrokenResourceError:
            data = b""
        if not data:
            inbox.closed = Closed(None, "eof")
            self.ws.receive_data(None)
            return
        self.ws.receive_data(bytes(data))
        for event in self.ws.events():
            if isinstance(event, AcceptConnection | RejectConnection):
                inbox.upgrade = event
            elif isinstance(event, BytesMessage):
                inbox.partial.append(bytes(event.data))
                if event.message_finished:
                    inbox.messages.append(b"".join(inbox.partial))
                    inbox.partial.clear()
            elif isinstance(event, TextMessage):
                inbox.partial_text.append(event.data)
                if event.message_finished:
                    inbox.messages.append("".join(inbox.partial_text))
                    inbox.partial_text.clear()
            elif isinstance(event, Ping):
                if self.answer_pings:
                    await self.send_raw(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                inbox.closed = Closed(event.code, event.reason or "")
                if self.ws.state is ConnectionState.REMOTE_CLOSING:
                    with contextlib.suppress(
                        trio.BrokenResourceError, trio.ClosedResourceError, LocalProtocolError
                    ):
                        await self.send_raw(self.ws.send(event.response()))
                return

    async def receive_message(self, within: float = TIMEOUT) -> bytes | str:
        """The next whole WebSocket message; raises ``Closed`` once the relay is gone."""
        inbox = self.inbox
        with trio.fail_after(within):
            while not inbox.messages:
                if inbox.closed is not None:
                    raise inbox.closed
                await self._fill()
        return inbox.messages.popleft()

    async def wait_closed(self, within: float = TIMEOUT) -> int | None:
        """Read (and discard) until the connection ends; the close code, or None on EOF."""
        with trio.fail_after(within):
            while self.inbox.closed is None:
                await self._fill()
        self.inbox.messages.clear()
        return self.inbox.closed.code

    # ----------------------------------------------------------------- closing

    async def abort(self) -> None:
        """Drop the TCP connection without a WebSocket close (a network failure)."""
        await trio.aclose_forcefully(self.stream)

    async def close(self, code: int = 1000) -> None:
        """Polite close: a WebSocket close frame, then the TCP stream."""
        if self.ws.state is ConnectionState.OPEN:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self.send_raw(self.ws.send(CloseConnection(code=code)))
        await self.abort()


class WireClient:
    """A handshaken Haven session over a ``RawSocket``: sealed requests, replies by id.

    Replies and events are read in arrival order. While waiting for a reply, events are
    kept in ``events`` (and replies to other ids in ``replies``) for later assertions.
    """

    def __init__(
        self, sock: RawSocket, session: ClientSession, welcome: m.Welcome, hello: bytes
    ) -> None:
        self.sock = sock
        #: Sealing and opening go through the session's raw envelope methods, so tests
        #: can send malformed envelopes and out-of-order ids on purpose.
        self.session = session
        self.welcome = welcome
        #: The Noise message 1 this client sent (replay tests resend it).
        self.hello_message = hello
        #: Every transport frame this client sent, sealed (replay tests resend them).
        self.sent_frames: list[bytes] = []
        self.events: deque[m.Message] = deque()
        self.replies: dict[int, m.Message] = {}
        self.last_id = 0

    @classmethod
    async def connect(
        cls, port: int, relay_key: bytes, *, bind_host: str | None = None,
        rcvbuf: int | None = None, within: float = TIMEOUT,
    ) -> WireClient:
        """TCP, WebSocket upgrade, Noise NK; raises ``Closed`` if the relay refuses."""
        sock = await RawSocket.open(port, bind_host=bind_host, rcvbuf=rcvbuf)
        try:
            accept = await sock.upgrade(within=within)
            if not isinstance(accept, AcceptConnection):
                raise Closed(None, "upgrade rejected")
            session, welcome, hello = await handshake(sock, relay_key, within=within)
        except BaseException:
            await sock.abort()
            raise
        return cls(sock, session, welcome, hello)

    # ----------------------------------------------------------------- writing

    def next_id(self) -> int:
        self.last_id += 1
        return self.last_id

    async def send(self, msg: m.Message) -> None:
        """Encode, pad, seal and send one message as one WebSocket message."""
        await self.send_envelope(codec.encode(msg))

    async def send_envelope(self, envelope: bytes) -> None:
        """Seal arbitrary envelope bytes (malformed-envelope tests)."""
        frame = self.session.seal_envelope(envelope)
        self.sent_frames.append(frame)
        await self.sock.send_bytes(frame)

    async def request(self, factory: Callable[[int], m.Message], within: float = TIMEOUT
                      ) -> m.Message:
        """Send ``factory(next id)`` and return its reply (an ``Error`` is returned too)."""
        rid = self.next_id()
        await self.send(factory(rid))
        return await self.reply(rid, within)

    async def call(self, factory: Callable[[int], m.Message], expect: type[M],
                   within: float = TIMEOUT) -> M:
        """``request`` that must succeed with an ``expect`` reply."""
        reply = await self.request(factory, within)
        if not isinstance(reply, expect):
            raise UnexpectedReply(f"expected {expect.__name__}, got {reply!r}")
        return reply

    async def error(self, factory: Callable[[int], m.Message], code: ErrorCode,
                    within: float = TIMEOUT) -> m.Error:
        """``request`` that must fail with a typed error ``code``."""
        reply = await self.request(factory, within)
        if not isinstance(reply, m.Error) or reply.code != code:
            raise UnexpectedReply(f"expected error {code.name}, got {reply!r}")
        return reply

    # ----------------------------------------------------------------- reading

    async def receive(self, within: float = TIMEOUT) -> m.Message:
        """The next message from the relay, decrypted and decoded."""
        data = await self.sock.receive_message(within)
        if isinstance(data, str):
            raise UnexpectedReply("the relay sent a text message")
        return codec.decode_server(self.session.open_envelope(data))

    async def reply(self, rid: int, within: float = TIMEOUT) -> m.Message:
        """Wait for the reply to request ``rid``; events met on the way are kept."""
        with trio.fail_after(within):
            while rid not in self.replies:
                msg = await self.receive(math.inf)
                if isinstance(msg, m.Reply):
                    self.replies[msg.id] = msg
                else:
                    self.events.append(msg)
        return self.replies.pop(rid)

    async def event(self, kind: type[M], within: float = TIMEOUT,
                    where: Callable[[M], bool] | None = None) -> M:
        """The first event of ``kind`` (matching ``where``); earlier other events stay."""
        with trio.fail_after(within):
            while True:
                for ev in self.events:
                    if isinstance(ev, kind) and (where is None or where(ev)):
                        self.events.remove(ev)
                        return ev
                msg = await self.receive(math.inf)
                if isinstance(msg, m.Reply):
                    self.replies[msg.id] = msg
                else:
                    self.events.append(msg)

    async def next_message(self, within: float = TIMEOUT) -> m.Message:
        """The next event or unclaimed reply, in arrival order."""
        if self.events:
            return self.events.popleft()
        return await self.receive(within)

    async def wait_closed(self, within: float = TIMEOUT) -> int | None:
        """Read until the relay closes; returns the close code (None: no close frame)."""
        return await self.sock.wait_closed(within)

    async def abort(self) -> None:
        await self.sock.abort()

    async def close(self) -> None:
        await self.sock.close()

    async def __aenter__(self) -> WireClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.sock.abort()


async def handshake(
    sock: RawSocket, relay_key: bytes, *, within: float = TIMEOUT
) -> tuple[ClientSession, m.Welcome, bytes]:
    """Noise NK as the initiator over an upgraded socket: (session, welcome, message 1)."""
    session = ClientSession(relay_key)
    hello = session.start()
    await sock.send_bytes(hello)
    event = session.receive(await sock.receive_message(within))
    if not isinstance(event, Welcomed):
        raise UnexpectedReply(f"expected welcome, got {event!r}")
    return session, event.welcome, hello


def req(cls: type[M], **fields: Any) -> Callable[[int], M]:
    """A request factory for ``request``/``call``: ``req(m.Send, room=code, body=b)``."""
    return lambda rid: cls(id=rid, **fields)  # type: ignore[call-arg]


def port_of(url: str) -> int:
    """The port of a ``ws://host:port/`` URL."""
    return int(url.rsplit(":", 1)[1].strip("/"))


__all__ = [
    "TIMEOUT",
    "Closed",
    "RawSocket",
    "UnexpectedReply",
    "WireClient",
    "handshake",
    "port_of",
    "req",
]
