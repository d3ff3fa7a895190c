"""Graceful drain: tell everyone, give them the grace period, close with 1001, return."""

from __future__ import annotations

import pytest
import trio
from prometheus_client import CollectorRegistry

from haven.protocol import messages as m
from haven.relay.server import RelayInfo, serve
from tests.conftest import test_config as relay_config

from .wire import Closed, WireClient, port_of

GRACE = 10
RETRY_AFTER = 7


async def start(nursery: trio.Nursery, returned: trio.Event) -> RelayInfo:
    config = relay_config(drain_grace=GRACE, drain_retry_after=RETRY_AFTER)

    async def run(task_status: trio.TaskStatus[RelayInfo]) -> None:
        await serve(config, registry=CollectorRegistry(), task_status=task_status)
        returned.set()

    info: RelayInfo = await nursery.start(run)
    return info


async def test_drain_tells_everyone_then_closes_with_1001(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    returned = trio.Event()
    info = await start(nursery, returned)
    port = port_of(info.url)
    clients = [await WireClient.connect(port, info.public_key) for _ in range(3)]
    try:
        created = await clients[0].call(lambda i: m.CreateRoom(id=i, kind="group"), m.Joined)
        await clients[1].call(lambda i: m.Join(id=i, room=created.seat.room), m.Joined)
        info.relay.drain_requested.set()
        for client in clients:
            draining = await client.event(m.Draining)
            assert draining.retry_after == RETRY_AFTER
        # Nobody new gets in while draining.
        with pytest.raises((Closed, OSError)):
            await WireClient.connect(port, info.public_key, within=GRACE / 2)
        # Those who stay are closed with "going away" once the grace period is over.
        for client in clients:
            assert await client.wait_closed(within=GRACE * 3) == 1001
        with trio.fail_after(GRACE):
            await returned.wait()
    finally:
        for client in clients:
            await client.abort()


async def test_drain_finishes_when_the_last_client_leaves(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    returned = trio.Event()
    info = await start(nursery, returned)
    async with await WireClient.connect(port_of(info.url), info.public_key) as client:
        info.relay.drain_requested.set()
        await client.event(m.Draining)
        await client.close()
    with trio.fail_after(GRACE / 2):  # no need to wait out the grace period
        await returned.wait()
