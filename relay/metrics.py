"""Aggregate-only Prometheus metrics and the health endpoints, on their own listener.

Privacy rule: no label carries a code, alias, room, address, token or anything per
user. Every label value comes from a fixed, small set defined here or by the operator:
``HANDSHAKE_REASONS``, ``LIMIT_REASONS``, room kinds, ``ErrorCode`` names, resume
results, and the queue names configured in ``[[queues]]``. A test checks that the
exported series are the same for one room and for a thousand, and that no label value
equals a code, alias, ticket or address.

Counts the synchronous core already keeps (rooms, members, messages, admission load)
are read at scrape time by a collector, so the per-message path pays nothing for them;
only the latency histogram is observed on the hot path, once per written batch.

The series (all prefixed ``haven_``; the table in docs/operations.md says what each
means) are listed in ``SERIES`` so the deploy/ artefacts can be checked against them.
"""

from __future__ import annotations

import logging
import platform
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import h11
import trio
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from haven.protocol.errors import ErrorCode

from . import __version__, ramonly
from .http1 import Answer, answer_one

if TYPE_CHECKING:
    from .server import Relay

log = logging.getLogger("haven.metrics")

# No ``*_created`` series: a third of all samples, each a timestamp nobody graphs.
disable_created_metrics()  # type: ignore[no-untyped-call]

#: Why a handshake failed: the complete, fixed label set.
HANDSHAKE_REASONS = (
    "timeout", "evicted", "eof", "websocket", "noise", "version", "capacity", "draining",
)  # fmt: skip
#: Close codes the relay sends (docs/protocol.md section 14): the fixed label set of
#: ``haven_connections_closed_total``; "none" is a close without a close frame.
CLOSE_CODES = (
    "none", "1000", "1001", "1002", "1003", "1007", "1009", "4103", "4104", "4105", "4106",
    "4108", "4109", "4400", "4402", "4406", "4408", "other",
)  # fmt: skip
#: Handshake duration buckets (seconds).
HANDSHAKE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
#: Which limit refused something: the complete, fixed label set.
LIMIT_REASONS = (
    "connections",  # max_connections reached (close 4402)
    "pending_handshakes",  # max_pending_handshakes reached: the oldest handshake dropped
    "handshake_rate",  # handshake_rate_per_s exceeded (close 4402)
    "rate",  # a connection's request token bucket (RATE_LIMITED)
    "rate_abuse",  # kept sending while rate-limited: connection closed (4400)
    "rooms",  # max_rooms or max_rooms_per_connection (TOO_MANY_ROOMS)
    "room_full",  # a room's member cap (ROOM_FULL)
    "queue_full",  # an intake queue's length cap (QUEUE_FULL)
    "pending_full",  # a room's pending-moderation cap (PENDING_FULL)
    "pow_required",  # an expensive request came without proof of work
    "pow_invalid",  # its proof of work did not verify
    "slow_consumer",  # outbound backlog over outbound_backlog_bytes (close 4406)
    "idle_timeout",  # no inbound frame for idle_timeout (close 4408)
)
#: Typed request errors that mean a limit was hit, and the reason they count under.
_LIMIT_OF_ERROR = {
    ErrorCode.RATE_LIMITED: "rate",
    ErrorCode.TOO_MANY_ROOMS: "rooms",
    ErrorCode.SERVER_FULL: "connections",
    ErrorCode.ROOM_FULL: "room_full",
    ErrorCode.QUEUE_FULL: "queue_full",
    ErrorCode.PENDING_FULL: "pending_full",
    ErrorCode.POW_REQUIRED: "pow_required",
    ErrorCode.POW_INVALID: "pow_invalid",
}
#: Directions of bus traffic (``haven_cluster_bus_messages_total``).
BUS_DIRECTIONS = ("out", "in")
#: Room kinds (the protocol's closed set).
ROOM_KINDS = ("direct", "group")
#: Latency buckets (seconds) for relay latency, received to written.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
#: Buckets (seconds) for how late the 1 s housekeeping tick ran.
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: Buckets (seconds) for time spent waiting in an intake queue.
WAIT_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)

#: Every series family this module exports, with its labels (process_* come from
#: prometheus-client's standard process collector).
SERIES: dict[str, tuple[str, ...]] = {
    "haven_connections_open": (),
    "haven_connections_max": (),
    "haven_handshakes_total": ("result", "reason"),
    "haven_frames_rejected_total": (),
    "haven_rooms_open": ("kind",),
    "haven_rooms_created_total": (),
    "haven_members": (),
    "haven_seats_held": (),
    "haven_pending_moderation": (),
    "haven_rooms_closed_total": ("reason",),
    "haven_handshake_duration_seconds": (),
    "haven_connections_closed_total": ("code",),
    "haven_build_info": ("version", "python"),
    "haven_memory_budget_used_bytes": (),
    "haven_memory_budget_bytes": (),
    "haven_memory_budget_refused_total": (),
    "haven_memory_budget_shed_total": (),
    "haven_messages_total": (),
    "haven_deliveries_total": (),
    "haven_bytes_in_total": (),
    "haven_bytes_out_total": (),
    "haven_relay_latency_seconds": (),
    "haven_queue_length": ("queue",),
    "haven_queue_wait_seconds": ("queue",),
    "haven_resumes_total": ("result",),
    "haven_slow_consumer_drops_total": (),
    "haven_request_errors_total": ("code",),
    "haven_limits_hit_total": ("reason",),
    "haven_expensive_requests_total": (),
    "haven_pow_difficulty": (),
    "haven_admission_load": (),
    "haven_draining": (),
    "haven_event_loop_lag_seconds": (),
    "haven_event_loop_lag_observed_seconds": (),
    "haven_ramonly_write_refusals_total": (),
    "haven_cluster_enabled": (),
    "haven_cluster_link_up": (),
    "haven_cluster_peers": (),
    "haven_cluster_forwarded_total": (),
    "haven_cluster_dropped_total": (),
    "haven_cluster_bus_messages_total": ("direction",),
    "haven_cluster_forward_seconds": (),
}


def configured_queues(extra: Mapping[str, Any]) -> tuple[str, ...]:
    """Queue names from the ``[[queues]]`` tables of the config file (the label set)."""
    names: list[str] = []
    tables = extra.get("queues", [])
    if isinstance(tables, list):
        for table in tables:
            name = table.get("name") if isinstance(table, dict) else None
            if isinstance(name, str) and name not in names:
                names.append(name)
    return tuple(names)


class _HubCollector(Collector):
    """Reads the relay's aggregate state at scrape time."""

    def __init__(self, relay: Relay, metrics: Metrics) -> None:
        self.relay = relay
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        relay = self.relay
        hub = relay.hub
        metrics = self.metrics
        yield CounterMetricFamily(
            "haven_bytes_in", "Bytes read from clients", value=metrics.bytes_in.value
        )
        yield CounterMetricFamily(
            "haven_bytes_out", "Bytes written to clients", value=metrics.bytes_out.value
        )
        yield metrics.latency.family(
            "haven_relay_latency_seconds",
            "Time from a client's frame being received to what it caused being written",
        )
        yield GaugeMetricFamily(
            "haven_connections_open", "Open client connections (handshaking included)",
            value=len(relay.connections),
        )  # fmt: skip
        yield GaugeMetricFamily(
            "haven_connections_max", "The max_connections setting",
            value=relay.config.max_connections,
        )  # fmt: skip
        rooms = GaugeMetricFamily("haven_rooms_open", "Rooms open, by kind", labels=["kind"])
        counts = dict.fromkeys(ROOM_KINDS, 0)
        members = 0
        pending = 0
        for room in hub.rooms.values():
            if room.kind in counts:
                counts[room.kind] += 1
            members += len(room.seats)
            pending += len(room.pending)
        for kind, n in counts.items():
            rooms.add_metric([kind], n)
        yield rooms
        yield GaugeMetricFamily("haven_members", "Seats in rooms (present or held)", value=members)
        yield GaugeMetricFamily("haven_seats_held", "Seats held for resume", value=len(hub.held))
        yield GaugeMetricFamily(
            "haven_pending_moderation", "Messages awaiting moderation", value=pending
        )
        memory = hub.memory
        yield GaugeMetricFamily(
            "haven_memory_budget_used_bytes", "Client-held state (estimate)", value=memory.used
        )
        yield GaugeMetricFamily(
            "haven_memory_budget_bytes", "The memory budget", value=memory.limit
        )
        yield CounterMetricFamily(
            "haven_memory_budget_refused", "Requests refused with RELAY_BUSY",
            value=memory.refused,
        )
        yield CounterMetricFamily(
            "haven_memory_budget_shed", "Rings halved or connections dropped over budget",
            value=memory.shed,
        )
        yield CounterMetricFamily(
            "haven_messages", "Room messages accepted", value=hub.stats["messages"]
        )
        yield CounterMetricFamily(
            "haven_deliveries", "Room events queued to members", value=hub.stats["deliveries"]
        )
        yield CounterMetricFamily(
            "haven_rooms_created", "Rooms created", value=hub.stats["rooms_created"]
        )
        closed = CounterMetricFamily(
            "haven_rooms_closed", "Rooms ended, by reason", labels=["reason"]
        )
        for reason, count in hub.rooms_closed.items():
            closed.add_metric([reason], count)
        yield closed
        resumes = CounterMetricFamily("haven_resumes", "Seat resumes", labels=["result"])
        resumes.add_metric(["ok"], hub.stats["resumes"])
        resumes.add_metric(["failed"], hub.stats["resume_failed"])
        yield resumes
        lengths = GaugeMetricFamily(
            "haven_queue_length", "People waiting, per configured intake queue", labels=["queue"]
        )
        current = self.metrics.queue_lengths()
        for name in self.metrics.queues:
            lengths.add_metric([name], current.get(name, 0))
        yield lengths
        yield GaugeMetricFamily(
            "haven_draining", "1 while the relay drains for shutdown", value=int(relay.draining)
        )
        admission = relay.admission
        yield GaugeMetricFamily(
            "haven_pow_difficulty", "Current proof-of-work difficulty (bits)",
            value=relay.pow_difficulty(),
        )  # fmt: skip
        yield GaugeMetricFamily(
            "haven_admission_load", "Load seen by admission control (1.0 = full)",
            value=admission.load,
        )  # fmt: skip
        yield CounterMetricFamily(
            "haven_expensive_requests",
            "Requests that need proof of work under load (create room, help, handoff)",
            value=admission.expensive_total,
        )
        yield CounterMetricFamily(
            "haven_ramonly_write_refusals",
            "File opens for writing refused by the RAM-only guard (should stay 0)",
            value=ramonly.refusals(),
        )
        yield from self._cluster()

    def _cluster(self) -> Iterator[Metric]:
        """The cluster link's aggregate counts (zeros for a single process)."""
        link = self.relay.cluster
        metrics = self.metrics
        yield GaugeMetricFamily(
            "haven_cluster_enabled", "1 when the relay runs as a process of a cluster",
            value=int(link is not None),
        )  # fmt: skip
        yield GaugeMetricFamily(
            "haven_cluster_link_up", "1 while the link to the NATS bus is up (0 alone)",
            value=int(link is not None and link.client.connected),
        )  # fmt: skip
        yield GaugeMetricFamily(
            "haven_cluster_peers", "Other relay processes heard on the bus lately",
            value=len(link.peers_seen) if link is not None else 0,
        )  # fmt: skip
        yield CounterMetricFamily(
            "haven_cluster_forwarded", "Requests forwarded to another process",
            value=link.forwarded if link is not None else 0,
        )  # fmt: skip
        yield CounterMetricFamily(
            "haven_cluster_dropped",
            "Bus messages lost: refused while the bus was down, or failing to open",
            value=metrics.cluster_dropped.value + (link.client.dropped if link else 0),
        )
        bus = CounterMetricFamily(
            "haven_cluster_bus_messages", "Messages on the bus, by direction",
            labels=["direction"],
        )  # fmt: skip
        counts = (link.client.published, link.client.received) if link else (0, 0)
        for direction, count in zip(BUS_DIRECTIONS, counts, strict=True):
            bus.add_metric([direction], count)
        yield bus
        yield metrics.bus_latency.family(
            "haven_cluster_forward_seconds",
            "From forwarding a request to another process to its reply arriving",
        )


class HotCounter:
    """A counter for the per-message path: a plain integer, exported at scrape time.

    prometheus-client's Counter takes a lock on every ``inc`` (about 1 µs here); the
    relay is single-threaded, so the hot path only adds to an int.
    """

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self, amount: int = 1) -> None:
        self.value += amount


class HotHistogram:
    """A histogram for the per-message path: bucket counts in a list, exported at scrape."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last slot is +Inf
        self.total = 0.0

    def observe(self, value: float, n: int = 1) -> None:
        """Count ``n`` observations of ``value`` (a batch of messages written at once)."""
        self.counts[bisect_left(self.bounds, value)] += n
        self.total += value * n

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=self.total)


class _LoopLag:
    """The housekeeping tick's lateness: last value (gauge) and distribution."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.gauge = Gauge(
            "haven_event_loop_lag_seconds", "Lateness of the last 1 s housekeeping tick",
            registry=registry,
        )  # fmt: skip
        self.histogram = Histogram(
            "haven_event_loop_lag_observed_seconds",
            "Lateness of every 1 s housekeeping tick",
            buckets=LAG_BUCKETS, registry=registry,
        )  # fmt: skip

    def set(self, seconds: float) -> None:
        self.gauge.set(seconds)
        self.histogram.observe(seconds)


class Metrics:
    """The relay's metrics, in an injected registry (a fresh one per test)."""

    def __init__(self, relay: Relay, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.handshakes = Counter(
            "haven_handshakes", "Handshakes, by result and fixed reason",
            ["result", "reason"], registry=r,
        )  # fmt: skip
        for reason in HANDSHAKE_REASONS:
            self.handshakes.labels("failed", reason)
        self._handshake_ok = self.handshakes.labels("ok", "ok")
        self.frames_rejected = Counter(
            "haven_frames_rejected", "Frames that failed authentication or padding", registry=r
        )
        self.slow_consumers = Counter(
            "haven_slow_consumer_drops", "Connections dropped as slow consumers", registry=r
        )
        self.errors = Counter(
            "haven_request_errors", "Typed errors sent, by ErrorCode name", ["code"], registry=r
        )
        for code in ErrorCode:
            self.errors.labels(code.name)
        self.limits = Counter(
            "haven_limits_hit", "Requests or connections refused by a limit, by fixed reason",
            ["reason"], registry=r,
        )  # fmt: skip
        self._limit = {reason: self.limits.labels(reason) for reason in LIMIT_REASONS}
        # Hot-path series: plain numbers, exported by the collector at scrape time.
        self.bytes_out = HotCounter()
        self.bytes_in = HotCounter()
        self.latency = HotHistogram(LATENCY_BUCKETS)
        self.cluster_dropped = HotCounter()
        self.bus_latency = HotHistogram(LATENCY_BUCKETS)
        self.loop_lag = _LoopLag(r)
        self.handshake_seconds = Histogram(
            "haven_handshake_duration_seconds",
            "From TCP accept to a completed Noise handshake (successful handshakes)",
            buckets=HANDSHAKE_BUCKETS, registry=r,
        )  # fmt: skip
        self.closes = Counter(
            "haven_connections_closed", "Connections the relay closed, by close code",
            ["code"], registry=r,
        )  # fmt: skip
        self._close = {code: self.closes.labels(code) for code in CLOSE_CODES}
        Gauge(
            "haven_build_info", "Always 1; the labels say what is running", ["version", "python"],
            registry=r,
        ).labels(__version__, platform.python_version()).set(1)
        #: Queue names the operator configured: the only values of the ``queue`` label.
        self.queues = configured_queues(relay.config.extra)
        self.queue_wait = Histogram(
            "haven_queue_wait_seconds", "Time from asking for help to being matched",
            ["queue"], buckets=WAIT_BUCKETS, registry=r,
        )  # fmt: skip
        self._queue_wait = {name: self.queue_wait.labels(name) for name in self.queues}
        self._queue_lengths: Callable[[], Mapping[str, int]] = dict
        ProcessCollector(registry=r)
        r.register(_HubCollector(relay, self))

    # ------------------------------------------------------------ recording API

    def handshake_ok(self, seconds: float) -> None:
        self._handshake_ok.inc()
        self.handshake_seconds.observe(seconds)

    def closed(self, code: int | None) -> None:
        """The relay closed a connection with ``code`` (``None``: without a close frame)."""
        label = "none" if code is None else str(code)
        self._close.get(label, self._close["other"]).inc()

    def handshake_failed(self, reason: str) -> None:
        self.handshakes.labels("failed", reason if reason in HANDSHAKE_REASONS else "noise").inc()

    def frame_rejected(self) -> None:
        self.frames_rejected.inc()

    def request_error(self, code: ErrorCode) -> None:
        """A typed error reply was sent; limit errors also count under their reason."""
        self.errors.labels(code.name).inc()
        reason = _LIMIT_OF_ERROR.get(code)
        if reason is not None:
            self._limit[reason].inc()

    def limit_hit(self, reason: str) -> None:
        """A connection-level limit refused something (``reason`` in LIMIT_REASONS)."""
        self._limit[reason].inc()

    def queue_waited(self, queue: str, seconds: float) -> None:
        """Someone waited ``seconds`` in ``queue`` before being matched.

        Names that are not configured queues are ignored: the label set stays fixed.
        """
        child = self._queue_wait.get(queue)
        if child is not None:
            child.observe(max(0.0, seconds))

    def set_queue_lengths(self, source: Callable[[], Mapping[str, int]]) -> None:
        """Register how to read queue lengths at scrape time: ``source() -> {name: n}``.

        Only configured names are exported; a missing name reads as 0.
        """
        self._queue_lengths = source

    def queue_lengths(self) -> Mapping[str, int]:
        try:
            return self._queue_lengths()
        except Exception:  # a scrape must never take the relay down
            log.exception("queue length source failed")
            return {}

    def render(self) -> bytes:
        return generate_latest(self.registry)


async def serve_metrics(
    relay: Relay, listeners: list[trio.SocketListener], *, task_status: trio.TaskStatus[None]
) -> None:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` (tiny HTTP/1.1 over h11)."""
    async def handler(stream: trio.SocketStream) -> None:
        try:
            await _http(relay, stream)
        except Exception:
            # Whatever goes wrong with one scrape costs that scrape, never the relay
            # (this task runs in the relay's main nursery). Nothing about the peer is
            # logged; the traceback passes the privacy filter.
            log.exception("metrics request failed")

    task_status.started()
    await trio.serve_listeners(handler, listeners)


REQUEST_TIMEOUT = 5.0  #: seconds one scrape connection may take, request and response
#: Methods the health and metrics endpoints answer; anything else gets 405.
_METHODS = (b"GET", b"HEAD")


def _route(relay: Relay, request: h11.Request) -> Answer:
    """Status, body, content type and extra headers for one request (no I/O)."""
    if request.method not in _METHODS:
        return 405, b"method not allowed\n", b"text/plain", [(b"allow", b"GET, HEAD")]
    path = request.target.split(b"?", 1)[0]
    if path == b"/metrics":
        return 200, relay.metrics.render(), b"text/plain; version=0.0.4; charset=utf-8", []
    if path == b"/healthz":
        return 200, b"ok\n", b"text/plain", []
    if path == b"/readyz":
        if relay.cluster is not None and not relay.cluster.ready:
            return 503, b"cluster bus unreachable\n", b"text/plain", []
        ready = not relay.draining and relay.accepting
        return (200, b"ready\n", b"text/plain", []) if ready else (
            503, b"draining\n", b"text/plain", []
        )
    return 404, b"not found\n", b"text/plain", []


async def _http(relay: Relay, stream: trio.abc.Stream) -> None:
    async def route(request: h11.Request) -> Answer:
        return _route(relay, request)

    await answer_one(stream, route, [(b"cache-control", b"no-store")], REQUEST_TIMEOUT)
