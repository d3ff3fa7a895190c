"""Capacity that is cheap to take is not: idle sockets and a filling queue.

Regressions from an attack run: TCP connections that never sent a byte counted toward
``max_connections`` (and skipped the handshake rate limit), and 100 idle connections
filled the helpline queue in 13 s without ever being asked for proof of work.
"""

from __future__ import annotations

import trio
import trio.testing

from haven.protocol import messages as m
from haven.protocol.errors import ErrorCode

from .conftest import Harness
from .wire import req


async def test_idle_sockets_neither_fill_the_cap_nor_keep_clients_out(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    info = await harness.start(max_connections=3, max_pending_handshakes=4,
                               handshake_timeout=600)
    idle = [await harness.raw() for _ in range(10)]
    await trio.testing.wait_all_tasks_blocked()
    assert len(info.relay.pending) <= 4
    clients = [await harness.client() for _ in range(3)]  # the whole session cap
    for client in clients:
        await client.call(req(m.Ping), m.Pong)
    assert len(idle) == 10


async def test_a_filling_queue_asks_for_proof_of_work(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    await harness.start(extra={"queues": [{"name": "helpline", "max_length": 10}]},
                        pow_expensive_per_s=1000, pow_min_difficulty=8)
    visitors = [await harness.client() for _ in range(7)]
    for visitor in visitors[:5]:
        await visitor.call(req(m.RequestHelp, queue="helpline"), m.Queued)
    await trio.sleep(3)  # a few housekeeping passes: the queue is half full
    error = await visitors[5].request(req(m.RequestHelp, queue="helpline"))
    assert isinstance(error, m.Error)
    assert error.code == ErrorCode.POW_REQUIRED
