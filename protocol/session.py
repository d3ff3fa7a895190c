"""One Haven session per connection and side: the whole wire contract in two objects.

In the style of h11's and wsproto's ``Connection``: a session takes WebSocket messages in
and gives events and WebSocket messages out, and never touches a socket, a task or a
clock. Every shell (the relay's connection, the Trio and asyncio SDKs, the load tester,
the bench generator, the test clients) drives one of these, so the handshake,
hello/welcome and version refusal, padding, sealing and opening, request ids and reply
matching, the close-code mapping and the state machine exist once.

``ClientSession``::

    session = ClientSession(relay_key, now=t)
    ws.send(session.start())                      # Noise NK message 1 (hello)
    event = session.receive(ws.receive())         # Welcomed | Refused | HandshakeRejected
    ws.send(session.send(Join(id=session.take_id(), room=code)))
    event = session.receive(ws.receive())         # ReplyReceived | Pushed | Undecodable
                                                  # | FrameRejected

``RelaySession``::

    session = RelaySession(static_key)
    hello = session.receive_hello(first_message)  # Hello, or raises Refusal
    ws.send(session.accept(welcome))              # Noise NK message 2 (welcome)
    request = session.receive(frame)              # Request; FrameRejected / DecodeError
    ws.send(session.seal_padded(padded_event))    # fan-out: pad once, seal per peer

Time comes in as an argument (``now``); ``next_deadline()`` says when the shell must call
``handle_timer(now)`` next (the handshake deadline, a keepalive ping that is due, an
idle peer), so no shell polls.

The state machine is data (``CLIENT_TRANSITIONS``, ``RELAY_TRANSITIONS``): every state a
session can be in and what moves it on are in those two tables, and an input a table
does not list raises ``SessionStateError`` (a bug in the shell, never the peer's doing).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from . import PROLOGUE, PROTOCOL_VERSION, SUBPROTOCOL
from .codec import decode_handshake, decode_request, decode_server, encode
from .errors import DecodeError, ErrorCode, HavenError, ProtocolError
from .frames import Transport, pad, unpad
from .messages import (
    Challenge,
    ChallengeUpdate,
    Draining,
    Error,
    Hello,
    Message,
    Ping,
    Reply,
    Request,
    Welcome,
)
from .noise import HandshakeState, nk_initiator, nk_responder

# ----------------------------------------------------------------------- close codes

#: RFC 6455 close codes Haven uses.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_NO_STATUS = 1005
CLOSE_ABNORMAL = 1006
CLOSE_TOO_BIG = 1009
#: Typed closes are ``TYPED_CLOSE_BASE + ErrorCode`` (docs/protocol.md, "Close codes").
TYPED_CLOSE_BASE = 4000
#: Closes that carry no typed meaning: the peer vanished or closed plainly.
PLAIN_CLOSES = frozenset({CLOSE_NORMAL, CLOSE_NO_STATUS, CLOSE_ABNORMAL})
#: Errors that, at handshake time, mean "wrong pinned key", not "try again".
KEY_ERRORS = frozenset({ErrorCode.HANDSHAKE_FAILED, ErrorCode.BAD_KEY})


def close_code(code: ErrorCode) -> int:
    """The WebSocket close code for a typed error: 4000 + its ``ErrorCode``."""
    return TYPED_CLOSE_BASE + int(code)


def error_of_close(code: int | None) -> ErrorCode | None:
    """The ``ErrorCode`` behind a typed close, or ``None`` (standard or unknown code)."""
    if code is None or not TYPED_CLOSE_BASE <= code < TYPED_CLOSE_BASE + 1000:
        return None
    try:
        return ErrorCode(code - TYPED_CLOSE_BASE)
    except ValueError:
        return None


# ------------------------------------------------------------------- state machine


class State(enum.Enum):
    """Where a session is. Transitions are the data in ``*_TRANSITIONS``."""

    #: Nothing exchanged yet.
    IDLE = "idle"
    #: Client: hello sent, waiting for welcome. Relay: hello read, welcome not yet sent.
    HANDSHAKE = "handshake"
    #: Handshake done; requests and events flow.
    OPEN = "open"
    #: Client: the relay announced ``draining``; replies still arrive, no new requests.
    DRAINING = "draining"
    #: Over: closed by either side, refused, timed out or a frame failed. Terminal.
    CLOSED = "closed"


class Input(enum.Enum):
    """What moves a session from one state to the next."""

    HELLO = "hello"  #: the client sent / the relay read a valid hello
    WELCOME = "welcome"  #: the relay sent / the client read the welcome
    REFUSE = "refuse"  #: the handshake was refused (version, wrong key, bad data)
    DRAIN = "drain"  #: the relay announced draining
    TIMEOUT = "timeout"  #: a deadline passed (handshake, idle)
    FAIL = "fail"  #: a transport frame failed authentication or padding
    CLOSE = "close"  #: either side closed the WebSocket


_ENDINGS = (Input.TIMEOUT, Input.FAIL, Input.CLOSE)

CLIENT_TRANSITIONS: Mapping[tuple[State, Input], State] = {
    (State.IDLE, Input.HELLO): State.HANDSHAKE,
    (State.HANDSHAKE, Input.WELCOME): State.OPEN,
    (State.HANDSHAKE, Input.REFUSE): State.CLOSED,
    (State.OPEN, Input.DRAIN): State.DRAINING,
    (State.DRAINING, Input.DRAIN): State.DRAINING,
    **{(s, i): State.CLOSED for s in State for i in _ENDINGS},
}

RELAY_TRANSITIONS: Mapping[tuple[State, Input], State] = {
    (State.IDLE, Input.HELLO): State.HANDSHAKE,
    (State.IDLE, Input.REFUSE): State.CLOSED,
    (State.HANDSHAKE, Input.WELCOME): State.OPEN,
    **{(s, i): State.CLOSED for s in State for i in _ENDINGS},
}


class SessionStateError(RuntimeError):
    """The shell used a session in a state that does not allow it (a bug in the shell)."""


class _Machine:
    """The part both sessions share: the state and its table-driven transitions."""

    __slots__ = ("_table", "state")

    def __init__(self, table: Mapping[tuple[State, Input], State]) -> None:
        self._table = table
        self.state = State.IDLE

    def _advance(self, event: Input) -> None:
        try:
            self.state = self._table[self.state, event]
        except KeyError:
            raise SessionStateError(f"{event.value} is not allowed in {self.state.value}") from None

    def _require(self, *states: State) -> None:
        if self.state not in states:
            wanted = " or ".join(s.value for s in states)
            raise SessionStateError(f"the session is {self.state.value}, not {wanted}")

    def connection_closed(self) -> None:
        """The WebSocket closed (either side); the session is over."""
        self._advance(Input.CLOSE)


# ------------------------------------------------------------------ client events


@dataclass(frozen=True, slots=True)
class Welcomed:
    """The handshake completed: ``welcome`` carries limits and the first challenge."""

    welcome: Welcome


@dataclass(frozen=True, slots=True)
class Refused:
    """The relay answered the hello with an error (e.g. ``UNSUPPORTED_VERSION``)."""

    error: Error


@dataclass(frozen=True, slots=True)
class HandshakeRejected:
    """The handshake reply was unreadable: almost always a wrong pinned relay key."""

    reason: str


@dataclass(frozen=True, slots=True)
class ReplyReceived:
    """A reply; ``request`` is the type name of the request it answers (``None`` if it
    matches no request in flight, e.g. an ``error`` with id 0)."""

    reply: Reply
    request: str | None


@dataclass(frozen=True, slots=True)
class Pushed:
    """A message the relay sent on its own: a room, queue or connection event."""

    message: Message


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A frame that authenticated but does not decode (a newer relay's message type).

    It provably came from the relay, so the session stays open: skip it. When it named a
    request id, ``request`` is that request's type and the request is no longer in flight.
    """

    error: DecodeError
    request: str | None


@dataclass(frozen=True, slots=True)
class FrameRejected:
    """A frame failed (authentication, padding, text instead of binary): close with
    ``close_code``. The session is closed; nothing more can be read on it."""

    close_code: int
    reason: str


@dataclass(frozen=True, slots=True)
class TimedOut:
    """A deadline passed: the handshake took too long (client) or the peer went idle
    (relay). Close with ``close_code`` (``None``: just drop the socket)."""

    close_code: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class PingDue:
    """The connection has been quiet for the keepalive interval; send ``frame`` (a
    sealed ``ping`` request; its ``pong`` arrives as a ``ReplyReceived``)."""

    frame: bytes


@dataclass(frozen=True, slots=True)
class KeepaliveDue:
    """Relay side: the client has been quiet for ``ping_interval``; send a WebSocket
    ping (a control frame: it costs the client nothing but a pong)."""


ClientEvent = (
    Welcomed | Refused | HandshakeRejected | ReplyReceived | Pushed | Undecodable | FrameRejected
)


class ClientSession(_Machine):
    """The client side of one connection: hello to close, with request ids and replies.

    ``keepalive`` (seconds) makes ``next_deadline`` ask for a ``ping`` request when
    nothing has been received for that long; ``handshake_timeout`` bounds the wait for
    the welcome. ``e`` fixes the ephemeral key (tests and golden transcripts only).
    """

    __slots__ = (
        "_handshake",
        "_handshake_deadline",
        "_last_rx",
        "_transport",
        "challenge",
        "in_flight",
        "keepalive",
        "next_id",
        "open_envelope",
        "retry_after",
        "seal_envelope",
        "versions",
        "welcome",
    )

    def __init__(
        self,
        relay_key: bytes,
        *,
        now: float = 0.0,
        handshake_timeout: float | None = None,
        keepalive: float | None = None,
        versions: Iterable[int] = (PROTOCOL_VERSION,),
        e: X25519PrivateKey | None = None,
    ) -> None:
        super().__init__(CLIENT_TRANSITIONS)
        self._handshake: HandshakeState | None = nk_initiator(relay_key, PROLOGUE, e=e)
        self._handshake_deadline = None if handshake_timeout is None else now + handshake_timeout
        #: Seconds of quiet after which ``handle_timer`` asks for a ``ping`` (``None``:
        #: never). Settable: a shell may choose it once it has read the welcome.
        self.keepalive = keepalive
        self._last_rx = now
        self._transport: Transport | None = None
        self.versions = tuple(versions)
        #: The relay's ``welcome`` once the handshake is done.
        self.welcome: Welcome | None = None
        #: The proof-of-work challenge in force (welcome's, then ``challenge`` events).
        self.challenge: Challenge | None = None
        #: Requests sent and not yet answered: id -> request type name.
        self.in_flight: dict[int, str] = {}
        #: The next request id ``take_id`` gives (ids reach the relay strictly increasing).
        self.next_id = 1
        #: Seconds the relay asked clients to wait before reconnecting (``draining``).
        self.retry_after = 0.0
        #: Fast path for shells that encode requests themselves (the bench generator):
        #: seal an encoded request envelope (its id from ``take_id``; not tracked for
        #: reply matching) / open a frame to its envelope. The transport's own bound
        #: methods once the session is open, so they cost no extra call.
        self.seal_envelope: Callable[[bytes], bytes] = _not_open
        self.open_envelope: Callable[[bytes], bytes] = _not_open

    # -------------------------------------------------------------- handshake

    @staticmethod
    def check_subprotocol(chosen: str | None) -> None:
        """Raise ``SessionStateError`` unless the relay chose Haven's subprotocol (or none)."""
        if chosen is not None and chosen != SUBPROTOCOL:
            raise SessionStateError(f"the relay chose subprotocol {chosen!r}")

    def start(self) -> bytes:
        """The first handshake message: Noise NK ``e, es`` carrying ``hello``."""
        self._advance(Input.HELLO)
        assert self._handshake is not None
        return self._handshake.write_message(pad(encode(Hello(versions=self.versions))))

    def _receive_welcome(self, data: bytes | str) -> Welcomed | Refused | HandshakeRejected:
        hs = self._handshake
        assert hs is not None
        if isinstance(data, str):
            self._advance(Input.REFUSE)
            return HandshakeRejected("the relay answered the handshake with text")
        try:
            reply = decode_handshake(unpad(hs.read_message(data)))
        except ProtocolError as exc:
            self._advance(Input.REFUSE)
            return HandshakeRejected(f"handshake failed ({exc.code.name})")
        if isinstance(reply, Error):
            self._advance(Input.REFUSE)
            return Refused(reply)
        if not isinstance(reply, Welcome) or reply.version not in self.versions:
            self._advance(Input.REFUSE)
            return HandshakeRejected("the relay's reply is not a welcome for our version")
        send, recv = hs.split()
        transport = self._transport = Transport(send, recv)
        self.seal_envelope = transport.seal
        self.open_envelope = transport.open
        self._handshake = None
        self._handshake_deadline = None
        self.welcome = reply
        self.challenge = reply.challenge
        self._advance(Input.WELCOME)
        return Welcomed(reply)

    # ---------------------------------------------------------------- requests

    def take_id(self) -> int:
        """The next request id."""
        rid = self.next_id
        self.next_id = rid + 1
        return rid

    def reserve_id(self, gap: int) -> int:
        """An id ``gap`` ahead of the next, for a request prepared slowly (proof of work)
        while others go out with lower ids; ``claim`` it before sending."""
        return self.next_id + gap

    def claim(self, rid: int) -> bool:
        """Take a reserved id; ``False`` if requests sent meanwhile already passed it."""
        if rid < self.next_id:
            return False
        self.next_id = rid + 1
        return True

    def send(self, request: Request) -> bytes:
        """Seal one request; it is in flight until its reply arrives.

        Raises ``HavenError`` (``TOO_LARGE``) before any nonce is used when the request
        does not fit in a frame, and ``SessionStateError`` unless the session is open (or
        draining: a reply may still be wanted before the shell leaves).
        """
        self._require(State.OPEN, State.DRAINING)
        assert self._transport is not None
        frame = self._transport.seal(encode(request))
        self.in_flight[request.id] = request.T
        return frame

    def forget(self, request_id: int) -> None:
        """Stop tracking a request (the caller gave up on it; a late reply is unmatched)."""
        self.in_flight.pop(request_id, None)

    # ----------------------------------------------------------------- receive

    def receive(self, data: bytes | str, now: float | None = None) -> ClientEvent:
        """One WebSocket message from the relay, as an event."""
        if now is not None:
            self._last_rx = now
        if self.state is State.HANDSHAKE:
            return self._receive_welcome(data)
        self._require(State.OPEN, State.DRAINING)
        assert self._transport is not None
        if isinstance(data, str):
            self._advance(Input.FAIL)
            return FrameRejected(CLOSE_UNSUPPORTED_DATA, "the relay sent a text message")
        try:
            envelope = self._transport.open(data)
        except ProtocolError as exc:
            self._advance(Input.FAIL)
            why = f"the relay sent a bad frame ({exc.code.name})"
            return FrameRejected(close_code(exc.code), why)
        try:
            msg = decode_server(envelope)
        except DecodeError as exc:
            rid = exc.request_id
            return Undecodable(exc, self.in_flight.pop(rid, None) if rid else None)
        if isinstance(msg, Reply):
            return ReplyReceived(msg, self.in_flight.pop(msg.id, None) if msg.id else None)
        if isinstance(msg, ChallengeUpdate):
            self.challenge = msg.challenge
        elif isinstance(msg, Draining):
            self.retry_after = float(msg.retry_after)
            self._advance(Input.DRAIN)
        return Pushed(msg)

    # ------------------------------------------------------------------ timers

    def next_deadline(self) -> float | None:
        """When ``handle_timer`` must next be called (``None``: no timer is running)."""
        if self.state is State.HANDSHAKE:
            return self._handshake_deadline
        if self.state is State.OPEN and self.keepalive is not None:
            return self._last_rx + self.keepalive
        return None

    def handle_timer(self, now: float) -> TimedOut | PingDue | None:
        """Act on a deadline that has passed (a no-op before it)."""
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return None
        if self.state is State.HANDSHAKE:
            self._advance(Input.TIMEOUT)
            return TimedOut(None, "the relay did not complete the handshake in time")
        self._last_rx = now  # one ping per quiet interval
        return PingDue(self.send(Ping(id=self.take_id())))


# ------------------------------------------------------------------- relay side


class Refusal(Exception):
    """The relay refuses a handshake: send ``reply`` (if any), then close with
    ``close_code``. ``why`` is a short label for metrics and logs (never user data)."""

    def __init__(self, close_code: int, reason: str, why: str, reply: bytes | None = None) -> None:
        super().__init__(reason)
        self.close_code = close_code
        self.reason = reason
        self.why = why
        self.reply = reply


_RELAY_VERSIONS = frozenset({PROTOCOL_VERSION})


class RelaySession(_Machine):
    """The relay side of one connection: the handshake, then open/seal per frame.

    The per-frame methods are the relay's hot path, so after ``accept`` they are the
    transport's: ``receive`` is one thin call, and a shell on its hottest path may call
    ``session.transport.seal_padded`` itself (the relay's fan-out does: no extra call
    and no per-connection bound method to keep).
    """

    __slots__ = (
        "_handshake", "idle_timeout", "last_ping", "last_rx", "ping_interval", "transport",
        "versions",
    )  # fmt: skip

    def __init__(
        self,
        static_key: X25519PrivateKey,
        *,
        prologue: bytes = PROLOGUE,
        versions: Iterable[int] = _RELAY_VERSIONS,
        e: X25519PrivateKey | None = None,
        now: float = 0.0,
        idle_timeout: float = float("inf"),
        ping_interval: float = float("inf"),
    ) -> None:
        super().__init__(RELAY_TRANSITIONS)
        #: Close a peer quiet this long (``IDLE_TIMEOUT``); ping one quiet this long.
        self.idle_timeout = idle_timeout
        self.ping_interval = ping_interval
        self._handshake: HandshakeState | None = nk_responder(static_key, prologue, e=e)
        # Shared when it is the default: a frozenset per connection would cost 216 bytes.
        self.versions = versions if isinstance(versions, frozenset) else frozenset(versions)
        self.transport: Transport | None = None
        #: When the last bytes came in and the last keepalive ping went out.
        self.last_rx = now
        self.last_ping = now

    @staticmethod
    def check_subprotocols(offered: Iterable[str]) -> str:
        """The subprotocol to accept; raises ``Refusal`` when Haven's is not offered."""
        if SUBPROTOCOL not in offered:
            raise Refusal(
                close_code(ErrorCode.UNSUPPORTED_VERSION),
                f"this relay speaks {SUBPROTOCOL}; upgrade the client",
                "version",
            )
        return SUBPROTOCOL

    def receive_hello(self, message: bytes) -> Hello:
        """Read Noise NK message 1; raises ``Refusal`` for a bad handshake or version."""
        hs = self._handshake
        self._require(State.IDLE)
        assert hs is not None
        try:
            hello = decode_handshake(unpad(hs.read_message(message)))
        except HavenError:
            self._advance(Input.REFUSE)
            raise Refusal(
                close_code(ErrorCode.HANDSHAKE_FAILED), "handshake failed", "noise"
            ) from None
        if not isinstance(hello, Hello) or not self.versions.intersection(hello.versions):
            refusal = Error(
                id=0,
                code=int(ErrorCode.UNSUPPORTED_VERSION),
                message=f"this relay speaks protocol version {max(self.versions)}; upgrade",
            )
            reply = hs.write_message(pad(encode(refusal)))
            self._advance(Input.REFUSE)
            raise Refusal(
                close_code(ErrorCode.UNSUPPORTED_VERSION), "upgrade the client", "version", reply
            )
        self._advance(Input.HELLO)
        return hello

    def accept(self, welcome: Welcome, now: float = 0.0) -> bytes:
        """Noise NK message 2 carrying ``welcome``; the session is open afterwards."""
        hs = self._handshake
        self._require(State.HANDSHAKE)
        assert hs is not None
        message = hs.write_message(pad(encode(welcome)))
        transport = Transport(*hs.split())
        self.transport = transport
        self._handshake = None
        self.last_rx = now
        self._advance(Input.WELCOME)
        return message

    def receive(self, frame: bytes) -> Request:
        """Open and decode one client frame.

        Raises ``FrameError``/``NoiseError`` (a ``ProtocolError``: the frame failed, close
        with ``close_code(exc.code)`` and mark the session with ``fail()``) or
        ``DecodeError`` (it authenticated but is not a valid request: answer with an
        error, the session stays open).
        """
        transport = self.transport
        if transport is None:
            raise SessionStateError(f"the session is {self.state.value}, not open")
        return decode_request(transport.open(frame))

    def seal(self, envelope: bytes) -> bytes:
        """Pad and seal one envelope into a frame (after ``accept``)."""
        return self._open_transport().seal(envelope)

    def seal_padded(self, padded: bytes) -> bytes:
        """Seal an already padded envelope (pad once, seal per recipient)."""
        return self._open_transport().seal_padded(padded)

    def _open_transport(self) -> Transport:
        transport = self.transport
        if transport is None:
            raise SessionStateError(f"the session is {self.state.value}, not open")
        return transport

    def fail(self) -> None:
        """A frame was rejected; the session is over."""
        self._advance(Input.FAIL)

    def next_deadline(self) -> float | None:
        """When ``handle_timer`` must next be called: a ping or the idle close is due."""
        if self.state is not State.OPEN:
            return None
        last_rx = self.last_rx
        ping_at = max(last_rx, self.last_ping) + self.ping_interval
        return min(last_rx + self.idle_timeout, ping_at)

    def handle_timer(self, now: float) -> TimedOut | KeepaliveDue | None:
        """Keepalive and idle policy at ``now``: close an idle peer, ping a quiet one."""
        if self.state is not State.OPEN:
            return None
        quiet = now - self.last_rx
        if quiet >= self.idle_timeout:
            self._advance(Input.TIMEOUT)
            return TimedOut(close_code(ErrorCode.IDLE_TIMEOUT), "idle timeout")
        if quiet >= self.ping_interval and now - self.last_ping >= self.ping_interval:
            self.last_ping = now
            return KeepaliveDue()
        return None


def _not_open(_: bytes) -> bytes:
    raise SessionStateError("the session is not open")


__all__ = [
    "CLIENT_TRANSITIONS",
    "CLOSE_ABNORMAL",
    "CLOSE_GOING_AWAY",
    "CLOSE_NORMAL",
    "CLOSE_NO_STATUS",
    "CLOSE_TOO_BIG",
    "CLOSE_UNSUPPORTED_DATA",
    "KEY_ERRORS",
    "PLAIN_CLOSES",
    "RELAY_TRANSITIONS",
    "TYPED_CLOSE_BASE",
    "ClientEvent",
    "ClientSession",
    "FrameRejected",
    "HandshakeRejected",
    "Input",
    "KeepaliveDue",
    "PingDue",
    "Pushed",
    "Refusal",
    "Refused",
    "RelaySession",
    "ReplyReceived",
    "SessionStateError",
    "State",
    "TimedOut",
    "Undecodable",
    "Welcomed",
]
