"""A Trio-native client of core NATS: the thin shell around ``cluster.wire``.

What a relay needs from the bus and nothing more: publish, subscribe (plain and in
queue groups), request/reply, user/password or token auth, TLS, liveness pings,
reconnect with backoff across a list of servers, and bounded buffers everywhere.
No JetStream: nothing Haven sends is ever persisted.

Design choices, each for the relay's sake:

* ``publish`` and ``subscribe`` are synchronous, like the hub they serve: a publish
  appends to the outbound buffer and one writer task sends whatever has accumulated in
  one write (many messages per system call under load).
* While the client is not connected, ``publish`` raises ``NotConnected`` at once: a
  relay whose bus is gone refuses new work with a typed error instead of buffering
  without bound or hanging. Past ``max_outbound`` bytes waiting to be written it raises
  ``Overflow``. Both are counted (``dropped``).
* Message callbacks run synchronously in the reader task, in arrival order (NATS keeps
  one publisher's order per subscriber), and must not block.
* After a reconnect every subscription is re-established before anything else is sent.
  Messages published while the link was down are lost, not queued: the caller was told.

Nothing here logs a payload or a subject (subjects are HMACs anyway, see
``cluster.seal``).
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import trio

from . import wire

log = logging.getLogger("haven.nats")

RECEIVE_SIZE = 65536


class NatsError(Exception):
    """Base of the bus errors a caller may see."""


class NotConnected(NatsError):
    """The bus is not reachable right now; the work was refused, nothing was sent."""


class Overflow(NatsError):
    """The outbound buffer (or the table of open requests) is full."""


class NoResponders(NatsError):
    """A request's subject has no subscriber."""


class RequestTimeout(NatsError):
    """No reply to a request in time."""


class AuthError(NatsError):
    """The server refused our credentials."""


class ServerError(NatsError):
    """The server refused the connection or sent a fatal ``-ERR``."""


class _Stale(Exception):
    """The server stopped answering our pings."""


#: What ends one link (and makes ``run`` reconnect) rather than the whole client.
_LINK_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, wire.WireError,
                NatsError, _Stale, ssl.SSLError, trio.TooSlowError)  # fmt: skip

MsgCallback = Callable[[wire.Msg], None]


@dataclass(frozen=True, slots=True)
class Server:
    """One server address: ``nats://[user:pass@]host:port`` or ``tls://host:port``."""

    host: str
    port: int
    tls: bool = False
    user: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> Server:
        if "://" not in url:
            url = "nats://" + url
        parts = urlsplit(url)
        if parts.scheme not in ("nats", "tls"):
            raise ValueError(f"NATS URL scheme must be nats:// or tls://, not {parts.scheme!r}")
        if not parts.hostname:
            raise ValueError(f"NATS URL {url!r} names no host")
        return cls(
            parts.hostname,
            parts.port or 4222,
            tls=parts.scheme == "tls",
            user=parts.username,
            password=parts.password,
        )

    def __str__(self) -> str:  # never shows credentials
        return f"{'tls' if self.tls else 'nats'}://{self.host}:{self.port}"


@dataclass
class Options:
    """How to reach the bus. Credentials may also come in each server URL."""

    servers: list[Server]
    user: str | None = None
    password: str | None = None
    token: str | None = None
    #: TLS for every server (required when the server's INFO asks for it).
    tls: ssl.SSLContext | None = None
    name: str = "haven-relay"
    #: Receive our own publications? A relay delivers to its own clients directly.
    echo: bool = False
    #: Bytes that may wait to be written before ``publish`` raises ``Overflow``.
    max_outbound: int = 8 * 1024 * 1024
    #: Requests awaiting a reply at once.
    max_requests: int = 4096
    connect_timeout: float = 2.0
    ping_interval: float = 2.0
    #: Unanswered pings after which the link is considered dead.
    max_pings_out: int = 2
    reconnect_min: float = 0.05
    reconnect_max: float = 2.0


@dataclass
class Subscription:
    sid: int
    subject: bytes
    queue: bytes | None
    callback: MsgCallback


@dataclass
class _Pending:
    event: trio.Event = field(default_factory=trio.Event)
    reply: wire.Msg | None = None


class NatsClient:
    """One link to a NATS cluster, kept up by ``run`` (see the module docstring)."""

    def __init__(self, options: Options, on_state: Callable[[bool], None] | None = None) -> None:
        if not options.servers:
            raise ValueError("at least one NATS server is needed")
        self.options = options
        self._on_state = on_state
        self.connected = False
        self._ever_connected = False
        self.info: wire.Info | None = None
        self.server: Server | None = None
        self._subs: dict[int, Subscription] = {}
        self._next_sid = 1
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._wake = trio.Event()
        self._stream: trio.abc.Stream | None = None
        self._fd = -1
        self._sending = False  #: the writer task is inside send_all
        #: The caller promises to call ``write_now`` after publishing (the relay does,
        #: once per flush): publishing then wakes no task. Otherwise each publish wakes
        #: the writer task, which writes whatever has accumulated.
        self.batched = False
        #: Called after the messages of one read were dispatched (the relay flushes
        #: once per read: under load, one write for many messages).
        self.on_batch: Callable[[], None] | None = None
        #: One entry per PING in flight, oldest first (PONGs come back in order):
        #: ``None`` for a liveness ping, an event for a ``flush``.
        self._pings: deque[trio.Event | None] = deque()
        self._connected_event = trio.Event()
        self._inbox = b"_INBOX." + secrets.token_hex(11).encode()
        self._inbox_sub: Subscription | None = None
        self._requests: dict[bytes, _Pending] = {}
        self._max_payload = wire.DEFAULT_MAX_PAYLOAD
        # Counters (aggregate, for metrics): never per subject.
        self.published = 0
        self.received = 0
        self.dropped = 0
        self.reconnects = 0

    # ------------------------------------------------------------------ public API

    def publish(self, subject: bytes, payload: bytes, reply: bytes | None = None) -> None:
        """Queue one message (raises ``NotConnected`` or ``Overflow``; never blocks)."""
        if len(payload) > self._max_payload:
            raise ValueError(f"payload of {len(payload)} bytes exceeds the server's max_payload")
        self._queue(wire.pub(subject, payload, reply))
        self.published += 1

    def publish_headers(
        self, subject: bytes, headers: dict[str, str], payload: bytes, reply: bytes | None = None
    ) -> None:
        """Like ``publish``, with NATS headers (``HPUB``)."""
        if len(payload) > self._max_payload:
            raise ValueError(f"payload of {len(payload)} bytes exceeds the server's max_payload")
        self._queue(wire.hpub(subject, headers, payload, reply))
        self.published += 1

    def subscribe(
        self, subject: bytes, callback: MsgCallback, queue: bytes | None = None
    ) -> Subscription:
        """Deliver messages on ``subject`` (wildcards allowed) to ``callback``.

        Kept across reconnects. With ``queue``, each message goes to one member of the
        queue group among all subscribers using that name.
        """
        wire.check_subject(subject, wildcards=True)
        sub = Subscription(self._next_sid, subject, queue, callback)
        self._next_sid += 1
        self._subs[sub.sid] = sub
        if self.connected:
            self._queue(wire.sub(subject, sub.sid, queue), force=True)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if self._subs.pop(sub.sid, None) is not None and self.connected:
            self._queue(wire.unsub(sub.sid), force=True)

    async def request(self, subject: bytes, payload: bytes, within: float = 1.0) -> wire.Msg:
        """Publish with a reply subject and wait up to ``within`` seconds for the first reply."""
        if len(self._requests) >= self.options.max_requests:
            self.dropped += 1
            raise Overflow("too many requests awaiting a reply")
        if self._inbox_sub is None:
            self._inbox_sub = self.subscribe(self._inbox + b".*", self._on_reply)
        token = secrets.token_hex(8).encode()
        pending = _Pending()
        self._requests[token] = pending
        try:
            self.publish(subject, payload, reply=self._inbox + b"." + token)
            with trio.move_on_after(within):
                await pending.event.wait()
        finally:
            del self._requests[token]
        reply = pending.reply
        if reply is None:
            raise RequestTimeout("no reply in time")
        if reply.status == 503 and not reply.payload:
            raise NoResponders("no subscriber for this subject")
        return reply

    async def wait_connected(self) -> None:
        while not self.connected:
            await self._connected_event.wait()

    async def flush(self, within: float = 2.0) -> None:
        """Wait until the server has seen everything published so far (a PING round trip)."""
        if not self.connected:
            raise NotConnected("not connected to NATS")
        self._pings.append(done := trio.Event())
        self._queue(wire.PING, force=True)
        with trio.move_on_after(within):
            await done.wait()
            if not self.connected:
                raise NotConnected("the NATS link went down")
            return
        raise RequestTimeout("no PONG in time")

    # ------------------------------------------------------------------ the link

    async def run(self) -> None:
        """Connect, serve, and reconnect forever (until cancelled)."""
        servers = list(self.options.servers)
        delay = self.options.reconnect_min
        attempt = 0
        while True:
            server = servers[attempt % len(servers)]
            attempt += 1
            ended = False  # stays False when cancelled: no warning for a shutdown
            try:
                await self._session(server)
            except AuthError as exc:
                ended = True
                log.error("NATS %s refused our credentials: %s", server, exc)
            except _LINK_ERRORS as exc:
                ended = True
                log.warning("NATS link to %s: %s: %s", server, type(exc).__name__, exc)
            finally:
                was_up = self.connected
                self._down(quiet=not ended)
            if was_up:
                # It was up: retry soon (jittered, so a cluster's relays do not reconnect
                # in one burst), then back off.
                delay = self.options.reconnect_min
                attempt = 0
                await trio.sleep(delay * random.random())
                continue
            if attempt % len(servers) == 0:
                await trio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self.options.reconnect_max)

    async def _session(self, server: Server) -> None:
        opts = self.options
        parser = wire.Parser()
        with trio.fail_after(opts.connect_timeout):
            stream: trio.abc.Stream = await trio.open_tcp_stream(server.host, server.port)
            try:
                info, leftover = await self._expect_info(stream, parser)
                if server.tls or opts.tls is not None or info.tls_required:
                    context = opts.tls or ssl.create_default_context()
                    stream = trio.SSLStream(stream, context, server_hostname=server.host)
                    await stream.do_handshake()
                await stream.send_all(wire.connect(self._connect_options(server, info)))
                leftover = await self._expect_pong(stream, parser, leftover)
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
        self._stream = stream
        # The descriptor of a plain TCP link, for direct reads and writes (-1 over TLS).
        self._fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else -1
        self.info = info
        self._max_payload = info.max_payload
        self.server = server
        self._pings.clear()
        # Subscriptions first, ahead of anything queued after we are marked connected.
        subs = [wire.sub(s.subject, s.sid, s.queue) for s in self._subs.values()]
        self._out = subs
        self._out_bytes = sum(map(len, subs))
        self.connected = True
        if self._ever_connected:
            self.reconnects += 1
        self._ever_connected = True
        self._connected_event.set()
        log.info("NATS link up: %s", server)
        if self._on_state is not None:
            self._on_state(True)
        # The first failure of any of the three tasks ends the link and is raised as
        # itself (not inside an exception group) for ``run`` to classify.
        failure: list[Exception] = []

        async def guard(task: Callable[[], Awaitable[None]]) -> None:
            try:
                await task()
            except Exception as exc:
                failure.append(exc)
                nursery.cancel_scope.cancel()

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(guard, lambda: self._writer(stream))
                nursery.start_soon(guard, self._pinger)
                nursery.start_soon(guard, lambda: self._reader(stream, parser, leftover))
        finally:
            await trio.aclose_forcefully(stream)
        if failure:
            raise failure[0]

    def _connect_options(self, server: Server, info: wire.Info) -> dict[str, Any]:
        opts = self.options
        options: dict[str, Any] = {
            "verbose": False,
            "pedantic": False,
            "tls_required": server.tls or opts.tls is not None or info.tls_required,
            "name": opts.name,
            "lang": "python-trio",
            "version": "haven",
            "protocol": 1,
            "echo": opts.echo,
            "headers": info.headers,
            "no_responders": info.headers,
        }
        user = server.user or opts.user
        password = server.password or opts.password
        if user is not None:
            options["user"] = user
            options["pass"] = password or ""
        if opts.token is not None:
            options["auth_token"] = opts.token
        return options

    @staticmethod
    async def _expect_info(
        stream: trio.abc.Stream, parser: wire.Parser
    ) -> tuple[wire.Info, list[wire.Event]]:
        while True:
            data = await stream.receive_some(RECEIVE_SIZE)
            if not data:
                raise ServerError("closed before INFO")
            events = parser.feed(data)
            if events:
                first = events[0]
                if not isinstance(first, wire.Info):
                    raise ServerError("the server did not start with INFO")
                return first, events[1:]

    async def _expect_pong(
        self, stream: trio.abc.Stream, parser: wire.Parser, events: list[wire.Event]
    ) -> list[wire.Event]:
        while True:
            for i, event in enumerate(events):
                if isinstance(event, wire.Pong):
                    return events[i + 1 :]
                if isinstance(event, wire.Err):
                    text = event.message.lower()
                    if "authorization" in text or "authentication" in text:
                        raise AuthError(event.message)
                    raise ServerError(event.message)
                if isinstance(event, wire.Ping):
                    await stream.send_all(wire.PONG)
            data = await stream.receive_some(RECEIVE_SIZE)
            if not data:
                raise ServerError("closed during CONNECT")
            events = parser.feed(data)

    def _down(self, quiet: bool = False) -> None:
        was = self.connected
        self.connected = False
        self._stream = None
        self._fd = -1
        if self._out:
            self.dropped += len(self._out)
        self._out = []
        self._out_bytes = 0
        self._connected_event = trio.Event()
        for waiter in self._pings:
            if waiter is not None:
                waiter.set()  # their wait ends; flush() callers then see not connected
        self._pings.clear()
        if was and not quiet:
            log.warning("NATS link down")
        if was and self._on_state is not None:
            self._on_state(False)

    def _queue(self, data: bytes, force: bool = False) -> None:
        if not self.connected:
            if force:
                return  # re-sent on connect (subscriptions) or meaningless (pings)
            self.dropped += 1
            raise NotConnected("not connected to NATS")
        if not force and self._out_bytes + len(data) > self.options.max_outbound:
            self.dropped += 1
            raise Overflow("NATS outbound buffer full")
        self._out.append(data)
        self._out_bytes += len(data)
        if not self.batched or force:
            self._wake.set()

    def write_now(self) -> None:
        """Write what is queued straight to the socket, if it takes it (no task switch).

        For a caller that publishes in batches (the relay calls it once per flush): the
        kernel nearly always takes a batch whole; what it does not is left to the writer
        task, which waits for the socket to drain. Over TLS the writer always writes.
        """
        fd = self._fd
        if not self._out or self._sending:
            return  # (a writer inside send_all takes what is queued when it is done)
        if fd < 0:
            self._wake.set()  # over TLS the writer task writes
            return
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        try:
            written = os.write(fd, data)
        except (BlockingIOError, InterruptedError):
            written = 0
        except OSError:
            return  # the reader sees the failure and the link is re-made
        if written == len(data):
            self._out = []
            self._out_bytes = 0
        else:
            self._out = [data[written:]]
            self._out_bytes = len(data) - written
            self._wake.set()  # the writer waits for the socket to drain

    async def _writer(self, stream: trio.abc.Stream) -> None:
        while True:
            if not self._out:
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            data = b"".join(self._out)
            self._out = []
            self._out_bytes = 0
            self._sending = True
            try:
                await stream.send_all(data)
            finally:
                self._sending = False

    async def _pinger(self) -> None:
        while True:
            await trio.sleep(self.options.ping_interval)
            if len(self._pings) >= self.options.max_pings_out:
                raise _Stale(f"{len(self._pings)} pings unanswered")
            self._pings.append(None)
            self._queue(wire.PING, force=True)

    async def _reader(
        self, stream: trio.abc.Stream, parser: wire.Parser, leftover: list[wire.Event]
    ) -> None:
        self._dispatch(leftover)
        if leftover and self.on_batch is not None:
            self.on_batch()
        fd = self._fd
        data: bytes | bytearray
        while True:
            if fd >= 0:
                # Plain TCP: wait for readiness, then read the descriptor directly (one
                # wake-up per batch; Trio's receive_some adds checkpoints and layers).
                await trio.lowlevel.wait_readable(fd)
                try:
                    data = os.read(fd, RECEIVE_SIZE)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    raise ServerError(f"read failed: {exc}") from None
            else:
                data = await stream.receive_some(RECEIVE_SIZE)
            if not data:
                raise ServerError("the server closed the connection")
            self._dispatch(parser.feed(data))
            if self.on_batch is not None:
                self.on_batch()

    def _dispatch(self, events: list[wire.Event]) -> None:
        for event in events:
            if isinstance(event, wire.Msg):
                self.received += 1
                sub = self._subs.get(event.sid)
                if sub is None:
                    continue  # unsubscribed while in flight
                try:
                    sub.callback(event)
                except Exception:
                    log.exception("a NATS message callback failed")
            elif isinstance(event, wire.Ping):
                self._queue(wire.PONG, force=True)
            elif isinstance(event, wire.Pong):
                if self._pings:
                    waiter = self._pings.popleft()
                    if waiter is not None:
                        waiter.set()
            elif isinstance(event, wire.Err):
                if event.fatal:
                    raise ServerError(event.message)
                log.warning("NATS server: %s", event.message)
            elif isinstance(event, wire.Info):
                self.info = event
                self._max_payload = event.max_payload

    def _on_reply(self, msg: wire.Msg) -> None:
        token = msg.subject.rpartition(b".")[2]
        pending = self._requests.get(token)
        if pending is not None and pending.reply is None:
            pending.reply = msg
            pending.event.set()


__all__ = [
    "AuthError",
    "NatsClient",
    "NatsError",
    "NoResponders",
    "NotConnected",
    "Options",
    "Overflow",
    "RequestTimeout",
    "Server",
    "ServerError",
    "Subscription",
]
