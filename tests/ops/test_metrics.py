"""Metrics and health endpoints over real HTTP from a real relay (metrics_port=0).

The privacy property under test: the set of exported series depends only on the
configuration, never on traffic. One room or a thousand, the same names and label
sets; and no label value is ever a room code, alias, token, queue ticket or address.
"""

from __future__ import annotations

import base64
import platform
import re

import trio

from haven.protocol import messages as m
from haven.relay import __version__ as relay_version
from haven.relay.metrics import (
    BUS_DIRECTIONS,
    CLOSE_CODES,
    HANDSHAKE_REASONS,
    LIMIT_REASONS,
    SERIES,
)
from haven.relay.server import RelayInfo
from tests.conftest import start_relay

from .helpers import FORGED_ADDRESSES, RawClient, connect, http_get, port_of, scrape

QUEUES = {"queues": [{"name": "helpline"}, {"name": "youth"}]}


async def _client(nursery: trio.Nursery, info: RelayInfo, host: str) -> RawClient:
    return await connect(nursery, port_of(info.url), info.public_key, host)


def _secrets_of(info: RelayInfo, extra: list[str]) -> set[str]:
    """Every per-user or per-room string the relay holds right now, in printable forms."""
    hub = info.relay.hub
    out = set(extra)
    for code, room in hub.rooms.items():
        out.add(code)
        for alias, seat in room.seats.items():
            out.add(alias)
            out.add(seat.token.hex())
            out.add(base64.urlsafe_b64encode(seat.token).rstrip(b"=").decode())
    return out


async def test_health_endpoints_and_readyz_while_draining(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    info = await start_relay(nursery, metrics_port=0, drain_grace=5.0)
    assert info.metrics_url is not None
    url = info.metrics_url
    assert (await http_get(url, "/healthz")).status == 200
    ready = await http_get(url, "/readyz")
    assert (ready.status, ready.body) == (200, b"ready\n")
    assert (await http_get(url, "/nowhere")).status == 404
    text, _, values = await scrape(url)
    assert "# TYPE haven_connections_open gauge" in text
    assert values["haven_draining{}"] == 0

    # A client that stays keeps the relay draining for drain_grace.
    client = await _client(nursery, info, "127.0.0.2")
    info.relay.drain_requested.set()
    await trio.testing.wait_all_tasks_blocked()
    assert info.relay.draining
    not_ready = await http_get(url, "/readyz")
    assert (not_ready.status, not_ready.body) == (503, b"draining\n")
    assert (await http_get(url, "/healthz")).status == 200  # alive, just not ready
    _, _, values = await scrape(url)
    assert values["haven_draining{}"] == 1
    assert isinstance(await client.receive(), m.Draining)
    assert await client.wait_closed() == 1001


async def test_series_are_the_same_for_one_room_and_a_thousand(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    info = await start_relay(nursery, metrics_port=0, max_rooms=2000, extra=QUEUES)
    assert info.metrics_url is not None
    relay = info.relay
    a = await _client(nursery, info, "127.0.0.2")
    b = await _client(nursery, info, "127.0.0.3")
    rid = a.next_id()
    await a.send(m.CreateRoom(id=rid, kind="group", topic="peer support"))
    created = await a.reply(rid)
    assert isinstance(created, m.Joined)
    code = created.seat.room
    rid = b.next_id()
    await b.send(m.Join(id=rid, room=code))
    assert isinstance(await b.reply(rid), m.Joined)
    rid = a.next_id()
    await a.send(m.Send(id=rid, room=code, body=b"a message"))
    assert isinstance(await a.reply(rid), m.Sent)
    rid = b.next_id()
    await b.send(m.RequestHelp(id=rid, queue="helpline"))
    queued = await b.reply(rid)
    assert isinstance(queued, m.Queued)
    ticket = queued.token

    _, one_room, values = await scrape(info.metrics_url)
    assert values["haven_queue_length{queue=helpline}"] == 1  # read from the queue flow
    assert values["haven_queue_length{queue=youth}"] == 0

    hub = relay.hub
    now = trio.current_time()
    for i in range(999):
        peer = hub.connect(now)
        room = hub.new_room(now, kind="direct" if i % 3 == 0 else "group", topic=f"t{i}")
        hub.add_seat(peer, room, now)
    relay.metrics.queue_waited("helpline", 42.0)
    relay.metrics.queue_waited(ticket.hex(), 3.0)  # not a configured queue: ignored
    relay.metrics.queue_waited(code, 3.0)
    _, many_rooms, values = await scrape(info.metrics_url)

    assert one_room == many_rooms
    assert values["haven_rooms_open{kind=group}"] + values["haven_rooms_open{kind=direct}"] == 1000
    assert values["haven_queue_wait_seconds_count{queue=helpline}"] == 1

    forbidden = _secrets_of(info, [ticket.hex(), code, *a.local[:1], *b.local[:1]])
    forbidden |= {str(a.local[1]), str(b.local[1]), *FORGED_ADDRESSES}
    label_values = {value for _, labels in many_rooms for _, value in labels}
    assert len(forbidden) > 2000
    for value in label_values:
        assert value not in forbidden
        assert "127.0.0." not in value
    # The only label values are the fixed sets (and the configured queue names).
    allowed = {
        "ok", "failed", "direct", "group", "helpline", "youth",
        *HANDSHAKE_REASONS, *LIMIT_REASONS, *BUS_DIRECTIONS,
    }  # fmt: skip
    from haven.protocol.errors import ErrorCode

    allowed |= {c.name for c in ErrorCode}
    allowed |= set(CLOSE_CODES) | set(info.relay.hub.rooms_closed)
    allowed |= {relay_version, platform.python_version()}  # haven_build_info
    le_free = {v for _, labels in many_rooms for k, v in labels if k != "le"}
    assert le_free <= allowed


async def test_every_documented_series_is_exported_with_its_labels(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    info = await start_relay(nursery, metrics_port=0, extra=QUEUES)
    assert info.metrics_url is not None
    _, series, _ = await scrape(info.metrics_url)
    haven = {(name, labels) for name, labels in series if name.startswith("haven_")}
    for family, labels in SERIES.items():
        matching = [
            (name, ls) for name, ls in haven
            if name == family or name.startswith(family + "_")
        ]  # fmt: skip
        assert matching, family
        for _, ls in matching:
            assert {k for k, _ in ls} - {"le"} == set(labels), family
    documented = tuple(SERIES)
    for name, _ in haven:
        # prometheus-client adds a standard ``_created`` timestamp to counters/histograms.
        base = name.removesuffix("_created")
        assert base.startswith(documented) or base + "_total" in SERIES, name


async def test_queue_lengths_are_read_at_scrape_time_for_configured_queues_only(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    info = await start_relay(nursery, metrics_port=0, extra=QUEUES)
    assert info.metrics_url is not None
    metrics = info.relay.metrics
    lengths = {"helpline": 3, "made-up": 9}
    metrics.set_queue_lengths(lambda: lengths)
    _, series, values = await scrape(info.metrics_url)
    assert values["haven_queue_length{queue=helpline}"] == 3
    assert values["haven_queue_length{queue=youth}"] == 0
    assert not any(("queue", "made-up") in labels for _, labels in series)
    lengths["helpline"] = 5
    _, _, values = await scrape(info.metrics_url)
    assert values["haven_queue_length{queue=helpline}"] == 5

    def broken() -> dict[str, int]:
        raise RuntimeError("queue source failed")

    metrics.set_queue_lengths(broken)
    _, _, values = await scrape(info.metrics_url)  # the scrape survives, reading zeros
    assert values["haven_queue_length{queue=helpline}"] == 0


async def test_limits_and_errors_are_counted_by_fixed_reason(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    info = await start_relay(nursery, metrics_port=0, rate_burst=2, rate_per_s=1.0)
    assert info.metrics_url is not None
    a = await _client(nursery, info, "127.0.0.4")
    codes = []
    for _ in range(4):
        rid = a.next_id()
        await a.send(m.Ping(id=rid))
        reply = await a.reply(rid)
        codes.append(getattr(reply, "code", None))
    assert codes.count(400) == 2  # RATE_LIMITED twice
    _, _, values = await scrape(info.metrics_url)
    assert values["haven_limits_hit_total{reason=rate}"] == 2
    assert values["haven_request_errors_total{code=RATE_LIMITED}"] == 2
    assert values["haven_handshakes_total{reason=ok,result=ok}"] == 1
    assert values["haven_bytes_in_total{}"] > 0
    assert values["haven_bytes_out_total{}"] > 0


async def test_no_created_series_and_build_info(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    info = await start_relay(nursery, metrics_port=0, extra=QUEUES)
    assert info.metrics_url is not None
    text, _, values = await scrape(info.metrics_url)
    # No *_created series (a third of all samples, each a timestamp).
    assert not re.search(r"^\w+_created[{ ]", text, re.MULTILINE)
    assert values[
        f"haven_build_info{{python={platform.python_version()},version={relay_version}}}"
    ] == 1
