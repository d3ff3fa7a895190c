"""The relay process: listeners, the connection set, housekeeping, draining.

``serve(config, task_status=...)`` is the one entry point (the CLI and every test use
it). It reports a ``RelayInfo`` (URL with the real port, public key) once listening.
The per-message path is: a connection decodes a request and calls the synchronous hub;
``Relay.flush`` then encodes and pads each distinct outgoing message once and hands it
to every recipient connection, which encrypts it under its own session key and appends
it to its bounded buffer.
"""

from __future__ import annotations

import base64
import errno
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from prometheus_client import CollectorRegistry

from haven.protocol import PROLOGUE, PROTOCOL_VERSION, codec, frames, noise
from haven.protocol import messages as m
from haven.protocol.errors import ErrorCode, HavenError
from haven.protocol.session import CLOSE_GOING_AWAY, close_code

from . import __version__, flows
from .admission import Admission
from .config import Config
from .connection import CLOSED, ClientSocket
from .hub import REFILL_BYTES, Hub
from .metrics import Metrics, serve_metrics
from .pages import Site, serve_pages
from .poller import ReadPoller
from .rooms import EVENT_OVERHEAD, event_bytes
from .timers import Deadlines
from .trim import trim_heap

if TYPE_CHECKING:
    from haven.cluster.link import ClusterLink

log = logging.getLogger("haven.relay")

TICK = 1.0  #: seconds between the relay-wide housekeeping passes (admission, budget)
MAX_SHED_STEPS = 64  #: most holders shed in one housekeeping pass
TRIM_AFTER_ROOMS = 1000  #: rooms ended in one pass that make the relay trim its heap
TRIM_INTERVAL = 60.0  #: seconds between two heap trims at most
#: accept() failures that mean "out of descriptors or memory for now": wait, then retry.
ACCEPT_CAPACITY_ERRNOS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS))
ACCEPT_RETRY = 0.1  #: seconds to wait after such a failure


def b64url(data: bytes) -> str:
    """base64url without padding (how relay keys are printed and pinned)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class RelayInfo:
    """What ``serve`` reports once it listens."""

    url: str
    public_key: bytes
    metrics_url: str | None
    relay: Relay
    pages_url: str | None = None  #: the front-end pages (relay/pages.py), if served

    @property
    def key_text(self) -> str:
        return b64url(self.public_key)

    def banner(self) -> str:
        """The first line the CLI prints: scripts and front ends parse it."""
        return f"haven relay {self.url} key={self.key_text}"


class Relay:
    """Shared state of one relay process (the hub, connections, metrics)."""

    def __init__(
        self,
        config: Config,
        static_key: X25519PrivateKey,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.config = config
        self.static_key = static_key
        self.public_key = noise.public_bytes(static_key.public_key())
        self.prologue = PROLOGUE
        self.hub = Hub(
            config,
            trio.current_time(),
            extend=flows.extension(config),
            on_error=self._request_failed,
        )
        self.admission = Admission(config, self.hub, trio.current_time())
        self.connections: set[ClientSocket] = set()
        #: Open sessions by their idle/keepalive deadline. Frames received move a
        #: session's deadline without touching this heap: when the old one comes, the
        #: session says whether it is really due, and the timer is set again.
        self.session_timers: Deadlines[ClientSocket] = Deadlines()
        #: Connections still in their handshake, oldest first (a dict as an ordered set).
        self.pending: dict[ClientSocket, None] = {}
        self.draining = False
        self.accepting = False
        self.metrics = Metrics(self, registry)
        queues = flows.installed(self.hub).queues  # aggregate queue metrics only
        queues.on_match.append(self.metrics.queue_waited)
        self.admission.fill_sources.append(queues.fill)
        self.metrics.set_queue_lengths(queues.lengths)
        self._queue_lengths = queues.lengths
        self._drain_done = trio.Event()
        self._last_trim = float("-inf")
        #: Connections with bytes queued since the last flush (see ClientSocket.kick).
        self.dirty: list[ClientSocket] = []
        #: The read loop of established connections (set by ``serve``).
        self.poller: ReadPoller | None = None
        #: Where connections and their writer tasks run (set by ``serve``).
        self.handlers: trio.Nursery | None = None
        #: Unsent bytes past which a connection counts as congested (low-water mark).
        self.congested_bytes = config.outbound_backlog_bytes // 4
        #: The link to the other processes of a cluster (``None``: a single process).
        self.cluster: ClusterLink | None = None
        #: Set (by a signal or a test) to stop accepting and drain.
        self.drain_requested = trio.Event()
        self._limits = m.Limits(
            max_envelope=codec.MAX_ENVELOPE,
            max_body=config.max_body_bytes,
            max_rooms=config.max_rooms_per_connection,
            max_members=config.max_members,
            rate=math.floor(config.rate_per_s),
            burst=config.rate_burst,
            resume_grace=math.ceil(config.resume_grace),
            resume_buffer=config.resume_buffer,
            idle_timeout=math.ceil(config.idle_timeout),
        )

    def _request_failed(self, code: ErrorCode) -> None:
        """The hub answered a request with an error (counted by code, nothing else)."""
        self.metrics.request_error(code)

    # ----------------------------------------------------------- called by connections

    def welcome(self, pow_seed: bytes) -> m.Welcome:
        """The handshake's second payload: version, limits, proof-of-work challenge."""
        return m.Welcome(
            version=PROTOCOL_VERSION,
            limits=self._limits,
            challenge=m.Challenge(seed=pow_seed, difficulty=self.pow_difficulty()),
        )

    def pow_difficulty(self) -> int:
        """Current proof-of-work difficulty (admission control raises it under load)."""
        return self.hub.pow_difficulty

    def at_capacity(self) -> bool:
        """Whether to refuse a new handshake (4402): connection cap or handshake rate."""
        admitted = self.admission.admit_handshake(trio.current_time())
        established = len(self.connections) - len(self.pending)
        if established >= self.config.max_connections:
            self.metrics.limit_hit("connections")
            return True
        if not admitted:
            self.metrics.limit_hit("handshake_rate")
            return True
        return False

    def flush(self, received: float | None = None) -> None:
        """Deliver everything the hub queued: encode and pad once, encrypt per peer.

        ``received`` is when the bytes that caused this work arrived (latency metric).
        """
        hub = self.hub
        while hub.out:
            out = hub.out
            hub.out = []
            last: m.Message | None = None
            padded = b""
            for peer, msg in out:
                conn = peer.sink
                if conn is None or conn.closing:
                    continue
                if msg is not last:
                    try:
                        padded = frames.pad(codec.encode(msg))
                    except HavenError:
                        # Replies are capped to fit; reaching this is a bug, not input.
                        log.exception("could not encode a %s", type(msg).__name__)
                        continue
                    last = msg
                if conn.proxy:
                    conn.push_message(padded, msg)  # a member on another process
                else:
                    conn.push_padded(padded)
        if hub.to_close:
            self._close_requested()
        dirty = self.dirty
        if dirty:
            self.dirty = []
            # One clock read per flush: every frame written now waited this long.
            now = trio.current_time()
            latency = 0.0 if received is None else now - received
            for conn in dirty:
                conn.kick(latency)

    def _close_requested(self) -> None:
        """Close the connections the hub gave up on (after their last replies)."""
        closing = self.hub.to_close
        self.hub.to_close = []
        for peer, code in closing:
            conn = peer.sink
            if conn is None or conn.closing:
                continue
            if code is ErrorCode.SLOW_CONSUMER:
                self.slow_consumer(conn)
                continue
            if code is ErrorCode.RATE_LIMITED:
                self.metrics.limit_hit("rate_abuse")
                log.info("closed a connection that kept sending while rate-limited")
            conn.close(close_code(code), "closed by the relay")

    def refill(self, conn: ClientSocket) -> None:
        """The connection drained while some of its seats are behind: send more."""
        if conn.peer is not None and not conn.closing:
            self.hub.refill(conn.peer, REFILL_BYTES)
            self.flush()

    def slow_consumer(self, conn: ClientSocket) -> None:
        """A connection's backlog overflowed: drop it, never slow its rooms."""
        self.metrics.slow_consumers.inc()
        log.info("dropped a slow consumer (outbound backlog over the limit)")
        self.metrics.limit_hit("slow_consumer")
        conn.drop_backlog()
        conn.close(close_code(ErrorCode.SLOW_CONSUMER), "slow consumer")

    def session_opened(self, conn: ClientSocket) -> None:
        """A handshake completed: its session's idle and keepalive deadline starts."""
        self._session_timer(conn)

    def _session_timer(self, conn: ClientSocket) -> None:
        session = conn.session
        deadline = session.next_deadline() if session is not None else None
        if deadline is None or conn.closing:
            self.session_timers.cancel(conn)
        else:
            self.session_timers.set(conn, deadline)

    def connection_closed(self, conn: ClientSocket) -> None:
        if self.cluster is not None:
            self.cluster.connection_closed(conn)
        self.session_timers.cancel(conn)
        self.connections.discard(conn)
        if self.draining and not self.connections:
            self._drain_done.set()

    # ------------------------------------------------------------------- tasks

    async def handle_stream(self, stream: trio.SocketStream) -> None:
        """Serve one accepted TCP stream (never asks it for the peer's address)."""
        pending = self.pending
        if len(pending) >= self.config.max_pending_handshakes:
            # Sockets that have not finished their handshake have their own small cap,
            # apart from max_connections: the oldest gives way to the newest, so idle
            # sockets cannot keep a real client out for longer than they keep coming.
            self.metrics.limit_hit("pending_handshakes")
            oldest = next(iter(pending))
            del pending[oldest]
            oldest.evict()
        conn = ClientSocket(self, stream)
        self.connections.add(conn)
        try:
            await conn.run()
        except Exception:
            # Last line of defence: a bug in one connection must not end the relay (the
            # accept loop would die with it). The traceback passes the privacy filter.
            log.exception("connection task failed")
        finally:
            # Idempotent; ``run`` does it too, but a bug there must not leave the
            # connection counted (and timed) forever.
            self.connection_closed(conn)
            # Closed here, once and synchronously (Trio wakes a writer still blocked on
            # it). The number is forgotten first: the kernel may reuse it at once.
            conn.fd = CLOSED
            stream.socket.close()

    async def accept(self, listener: trio.SocketListener) -> None:
        """Accept connections and start a task for each, until cancelled.

        ``trio.serve_listeners`` would also close each stream with
        ``aclose_forcefully`` (a cancel scope and a checkpoint per connection);
        ``handle_stream`` closes it synchronously instead. Running out of descriptors
        or memory pauses accepting briefly rather than ending the relay.
        """
        assert self.handlers is not None
        async with listener:  # closed when accepting stops
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                        raise
                    name = errno.errorcode.get(exc.errno or 0, "?")
                    log.error("cannot accept a connection (%s); retrying", name)
                    await trio.sleep(ACCEPT_RETRY)
                    continue
                self.handlers.start_soon(self.handle_stream, stream)

    async def housekeeping(self) -> None:
        """Timers at their deadlines; once a second, the relay-wide passes.

        Seats, rooms and the flows' state expire by deadline (``hub.next_deadline``),
        and so do sessions (idle close, keepalive ping: ``session_timers``); nothing
        scans every room or connection. The once-a-second pass is what is relay-wide:
        admission control's rates and the memory budget's sums. A deadline set while
        the loop sleeps (a new room, a dropped seat, a new session) is later than the
        wake-up already planned, or at most a second away from it.
        """
        expected = trio.current_time() + TICK
        while True:
            wake = expected
            for due in (self.hub.next_deadline(), self.session_timers.next()):
                if due is not None and due < wake:
                    wake = due
            await trio.sleep_until(wake)
            now = trio.current_time()
            due = self.hub.next_deadline()
            if due is not None and due <= now:
                rooms = len(self.hub.rooms)
                self.hub.handle_timers(now)
                self._trim_after_mass_expiry(rooms - len(self.hub.rooms), now)
            for conn in self.session_timers.pop_due(now):
                conn.on_timer(now)
                self._session_timer(conn)
            if now < expected:
                self.flush()
                continue
            self.metrics.loop_lag.set(max(0.0, now - expected))
            expected = now + TICK
            self.keep_to_budget()
            self.admission.tick(now, self.connections, len(self.connections))
            self.flush()

    def _trim_after_mass_expiry(self, ended: int, now: float) -> None:
        """After a pass that ended many rooms, hand freed heap back to the OS (relay/trim.py)."""
        if ended >= TRIM_AFTER_ROOMS and now - self._last_trim >= TRIM_INTERVAL:
            self._last_trim = now
            trim_heap()

    def keep_to_budget(self) -> None:
        """Re-sum the memory budget's terms; over budget, shed the heaviest holders.

        Once a second: the sums are O(rooms + seats + connections), cheap at that rate.
        Shedding takes the biggest holder first, the larger of the fattest room ring
        (halved: members that still needed its older half get 4406/209) and the
        connection with the most unsent bytes (dropped with 4406), until under budget.
        """
        hub = self.hub
        memory = hub.memory
        seats = held = 0
        for room in hub.rooms.values():
            seats += len(room.seats)
            for entry in room.pending.values():
                held += EVENT_OVERHEAD + len(entry.body)
            for seat in room.seats.values():
                if seat.missed:
                    held += sum(event_bytes(event) for event in seat.missed)
        memory.refresh(
            outbound=sum(conn.backlog + conn.partial_bytes for conn in self.connections),
            held=held,
            connections=len(self.connections),
            rooms=len(hub.rooms),
            seats=seats,
            tickets=sum(self._queue_lengths().values()),
        )
        for _ in range(MAX_SHED_STEPS):
            if not memory.over():
                break
            fattest = max(hub.rooms.values(), key=lambda r: r.ring_bytes, default=None)
            ring = fattest.ring_bytes if fattest is not None else 0
            conn = max(self.connections, key=lambda c: c.backlog, default=None)
            if conn is not None and conn.backlog > 0 and conn.backlog >= ring:
                memory.outbound -= conn.backlog
                memory.shed += 1
                log.warning("over the memory budget: dropped the connection holding most")
                self.slow_consumer(conn)
            elif fattest is not None and ring > 0:
                memory.shed += 1
                log.warning("over the memory budget: halved the largest room ring")
                fattest.shed_ring()
            else:
                break
        self.flush()

    async def drain(self) -> None:
        """Tell every client to go, give them ``drain_grace``, then close with 1001."""
        if self.draining:
            return
        self.draining = True
        log.info("draining: %d connections", len(self.connections))
        event = m.Draining(retry_after=self.config.drain_retry_after)
        for conn in self.connections:
            if conn.peer is not None:
                self.hub.out.append((conn.peer, event))
        self.flush()
        if self.connections:
            with trio.move_on_after(self.config.drain_grace):
                await self._drain_done.wait()
        for conn in list(self.connections):
            conn.close(CLOSE_GOING_AWAY, "relay shutting down")
        self.flush()
        if self.connections:
            with trio.move_on_after(self.config.close_timeout + 1):
                await self._drain_done.wait()


def load_or_generate_key(config: Config) -> X25519PrivateKey:
    """The relay's static key: from ``config.key_file``, or a new in-memory one."""
    if config.key_file is None:
        return X25519PrivateKey.generate()
    from .keys import read_private_key

    return read_private_key(config.key_file)


async def _listen(which: str, host: str, port: int) -> list[trio.SocketListener]:
    """Open a listener; a failure names which listener and where (port in use, ...)."""
    try:
        return await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OSError(f"cannot open the {which} listener on {host}:{port}: {reason}") from None


async def serve(
    config: Config,
    *,
    static_key: X25519PrivateKey | None = None,
    registry: CollectorRegistry | None = None,
    task_status: trio.TaskStatus[RelayInfo] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a relay until cancelled or drained; report ``RelayInfo`` once listening."""
    key = static_key if static_key is not None else load_or_generate_key(config)
    relay = Relay(config, key, registry)
    if config.cluster is not None:
        from haven.cluster.link import ClusterLink, nats_options

        from .keys import read_cluster_key

        assert config.cluster_key is not None
        cluster_key = read_cluster_key(config.cluster_key)
        relay.cluster = ClusterLink(relay, nats_options(config), cluster_key)
    listeners = await _listen("relay", config.host, config.port)
    port = listeners[0].socket.getsockname()[1]
    host = config.host if ":" not in config.host else f"[{config.host}]"
    metrics_url = None
    async with trio.open_nursery() as nursery:
        if config.metrics_port is not None:
            mlisteners = await _listen("metrics", config.metrics_host, config.metrics_port)
            mport = mlisteners[0].socket.getsockname()[1]
            metrics_url = f"http://{config.metrics_host}:{mport}"
            await nursery.start(serve_metrics, relay, mlisteners)
        nursery.start_soon(relay.housekeeping)
        relay.poller = ReadPoller(relay)
        nursery.start_soon(relay.poller.run)
        if relay.cluster is not None:
            nursery.start_soon(relay.cluster.run)
        pages_url = None
        if config.pages_port is not None and config.pages_dir is not None:
            site = Site.create(
                config.pages_dir, f"ws://{host}:{port}", b64url(relay.public_key),
                config.quick_exit_url,
            )  # fmt: skip
            plisteners = await _listen("pages", config.pages_host, config.pages_port)
            pport = plisteners[0].socket.getsockname()[1]
            phost = config.pages_host if ":" not in config.pages_host else f"[{config.pages_host}]"
            pages_url = f"http://{phost}:{pport}"
            await nursery.start(serve_pages, site, plisteners)
        info = RelayInfo(f"ws://{host}:{port}", relay.public_key, metrics_url, relay, pages_url)
        async with trio.open_nursery() as handlers:
            accept_scope = trio.CancelScope()
            relay_accepting = _Accepting(relay, accept_scope)
            handlers.start_soon(relay_accepting.run, listeners, handlers)
            relay.accepting = True
            own = tuple(u for u in (info.url, metrics_url, pages_url) if u)
            log.info(
                "haven %s listening on %s (metrics %s); %d issuers, queues: %s; "
                "scheduled rooms: %s",
                __version__, info.url, metrics_url or "off",
                len(config.extra.get("issuers", []) or []),
                ", ".join(relay.metrics.queues) or "none",
                ", ".join(str(r.get("name", "?")) for r in config.extra.get("rooms", []) or []
                          if isinstance(r, dict)) or "none",
                extra={"haven_own": own},
            )  # fmt: skip
            task_status.started(info)
            await relay.drain_requested.wait()
            relay.accepting = False
            accept_scope.cancel()
            await relay.drain()
            handlers.cancel_scope.cancel()
        nursery.cancel_scope.cancel()


class _Accepting:
    """Accept loop in its own cancel scope, so draining can stop accepting only."""

    def __init__(self, relay: Relay, scope: trio.CancelScope) -> None:
        self.relay = relay
        self.scope = scope

    async def run(self, listeners: list[trio.SocketListener], handlers: trio.Nursery) -> None:
        self.relay.handlers = handlers
        with self.scope:
            async with trio.open_nursery() as nursery:
                for listener in listeners:
                    nursery.start_soon(self.relay.accept, listener)
