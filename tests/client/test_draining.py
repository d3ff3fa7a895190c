"""The SDK acts on ``draining``: it leaves at once, so a drain ends as soon as clients have
gone, and it reconnects after ``retry_after`` to whatever relay then answers.

Regression: the SDK ignored ``draining`` and waited to be closed, so every drain took the
full ``drain_grace`` (10 s) even with only well-behaved clients.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from prometheus_client import CollectorRegistry

from haven import client
from haven.client import errors
from haven.relay.server import RelayInfo, serve
from tests.conftest import test_config as relay_config

GRACE = 60.0
RETRY_AFTER = 3


async def _relay(nursery: trio.Nursery, key: X25519PrivateKey, port: int,
                 returned: trio.Event) -> RelayInfo:
    config = relay_config(port=port, drain_grace=GRACE, drain_retry_after=RETRY_AFTER,
                         resume_grace=120.0)  # fmt: skip

    async def run(task_status: trio.TaskStatus[RelayInfo]) -> None:
        await serve(config, static_key=key, registry=CollectorRegistry(), task_status=task_status)
        returned.set()

    info: RelayInfo = await nursery.start(run)
    return info


async def test_sdk_leaves_on_draining_and_reconnects(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    key = X25519PrivateKey.generate()
    first_done = trio.Event()
    info = await _relay(nursery, key, 0, first_done)
    port = int(info.url.rsplit(":", 1)[1])
    async with client.connect(info.url, info.key_text) as a, \
            client.connect(info.url, info.key_text) as b:  # fmt: skip
        room = await a.create_room(kind="group")
        theirs = await b.join(room.code)
        await room.send(b"before the drain")

        started = trio.current_time()
        info.relay.drain_requested.set()
        with trio.fail_after(GRACE):
            await first_done.wait()
        took = trio.current_time() - started
        # Well-behaved clients left at once: the drain did not wait out its grace.
        assert took < GRACE / 4, took

        # A relay comes back on the same address (a restart): the SDK reconnects after
        # retry_after; the seats lived in the old process's RAM, so resuming them fails
        # with a typed error and the rooms end, instead of hanging.
        await trio.sleep(1)
        second_done = trio.Event()
        await _relay(nursery, key, port, second_done)
        with trio.fail_after(60):
            await a.ping()  # requests wait until the SDK has reconnected
        assert a.connected
        assert trio.current_time() - started >= RETRY_AFTER
        with trio.fail_after(60), pytest.raises(errors.ResumeFailed):
            async for _ in theirs.events():
                pass
        assert theirs.ended
