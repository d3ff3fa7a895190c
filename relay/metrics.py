"""Aggregate-only Prometheus metrics and the health endpoints, on their own listener.

Privacy rule: no label carries a code, alias, room, address, token or anything per
user. Labels come from fixed, small sets defined here (``HANDSHAKE_REASONS``, room
kinds, ``ErrorCode`` names, configured queue names); a test checks that the exported
series are the same for one room and for a thousand.

Counts that the synchronous core already keeps (rooms, members, messages) are read at
scrape time by a collector, so the per-message path pays nothing for them; only the
latency histogram is observed on the hot path, once per written batch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import h11
import trio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from protocol.errors import ErrorCode

if TYPE_CHECKING:
    from .server import Relay

log = logging.getLogger("haven.metrics")

#: Why a handshake failed: the complete, fixed label set.
HANDSHAKE_REASONS = ("timeout", "eof", "websocket", "noise", "version", "capacity", "draining")
#: Latency buckets (seconds) for relay latency, received to written.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class _HubCollector(Collector):
    """Reads the relay's aggregate state at scrape time."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def collect(self) -> Iterator[Metric]:
        relay = self.relay
        hub = relay.hub
        yield GaugeMetricFamily(
            "haven_connections_open", "Open client connections", value=len(relay.connections)
        )
        rooms = GaugeMetricFamily("haven_rooms_open", "Rooms open, by kind", labels=["kind"])
        counts = {"direct": 0, "group": 0}
        members = 0
        pending = 0
        for room in hub.rooms.values():
            counts[room.kind] = counts.get(room.kind, 0) + 1
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
        yield CounterMetricFamily(
            "haven_messages", "Room messages accepted", value=hub.stats["messages"]
        )
        yield CounterMetricFamily(
            "haven_deliveries", "Room events queued to members", value=hub.stats["deliveries"]
        )
        yield CounterMetricFamily(
            "haven_rooms_created", "Rooms created", value=hub.stats["rooms_created"]
        )
        resumes = CounterMetricFamily("haven_resumes", "Seat resumes", labels=["result"])
        resumes.add_metric(["ok"], hub.stats["resumes"])
        resumes.add_metric(["failed"], hub.stats["resume_failed"])
        yield resumes
        yield GaugeMetricFamily(
            "haven_draining", "1 while the relay drains for shutdown", value=int(relay.draining)
        )
        yield GaugeMetricFamily(
            "haven_pow_difficulty", "Current proof-of-work difficulty (bits)",
            value=relay.pow_difficulty(),
        )  # fmt: skip


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
        self.bytes_out = Counter("haven_bytes_out", "Bytes written to clients", registry=r)
        self.bytes_in = Counter("haven_bytes_in", "Bytes read from clients", registry=r)
        self.latency = Histogram(
            "haven_relay_latency_seconds",
            "Time from a frame being queued to it being written to the socket",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.loop_lag = Gauge(
            "haven_event_loop_lag_seconds", "Lateness of the relay's 1 s housekeeping tick",
            registry=r,
        )  # fmt: skip
        r.register(_HubCollector(relay))

    def handshake_ok(self) -> None:
        self._handshake_ok.inc()

    def handshake_failed(self, reason: str) -> None:
        self.handshakes.labels("failed", reason if reason in HANDSHAKE_REASONS else "noise").inc()

    def frame_rejected(self) -> None:
        self.frames_rejected.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


async def serve_metrics(
    relay: Relay, listeners: list[trio.SocketListener], *, task_status: trio.TaskStatus[None]
) -> None:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` (tiny HTTP/1.1 over h11)."""
    task_status.started()
    await trio.serve_listeners(lambda s: _http(relay, s), listeners)


async def _http(relay: Relay, stream: trio.abc.Stream) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=8192)
    try:
        with trio.move_on_after(5):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(8192)
                    conn.receive_data(data)
                    if not data:
                        return
                    continue
                if not isinstance(event, h11.Request):
                    return
                path = event.target.split(b"?", 1)[0]
                status, body, ctype = 404, b"not found\n", b"text/plain"
                if path == b"/metrics":
                    status, body = 200, relay.metrics.render()
                    ctype = b"text/plain; version=0.0.4; charset=utf-8"
                elif path == b"/healthz":
                    status, body = 200, b"ok\n"
                elif path == b"/readyz":
                    ready = not relay.draining and relay.accepting
                    status, body = (200, b"ready\n") if ready else (503, b"draining\n")
                headers = [
                    (b"content-type", ctype),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ]
                out = conn.send(h11.Response(status_code=status, headers=headers))
                out = (out or b"") + (conn.send(h11.Data(data=body)) or b"")
                out += conn.send(h11.EndOfMessage()) or b""
                await stream.send_all(out)
                return
    except (h11.RemoteProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
        return
    finally:
        await trio.aclose_forcefully(stream)
