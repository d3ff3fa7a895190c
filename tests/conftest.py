"""Shared fixtures: a real relay on 127.0.0.1:0 inside the test's nursery."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
from prometheus_client import CollectorRegistry

from haven.relay.config import Config
from haven.relay.server import RelayInfo, serve


def test_config(**changes: object) -> Config:
    """Defaults for tests: free port, no metrics listener unless asked."""
    base = Config(port=0, metrics_port=None)
    return base.replace(**changes)


@pytest.fixture
async def relay(nursery: trio.Nursery) -> AsyncIterator[RelayInfo]:
    """A relay with test defaults."""
    info: RelayInfo = await nursery.start(lambda task_status: serve(
        test_config(), registry=CollectorRegistry(), task_status=task_status))
    yield info
    info.relay.drain_requested.set()


async def start_relay(nursery: trio.Nursery, **changes: object) -> RelayInfo:
    """Start a relay with ``changes`` applied to the test defaults."""
    config = test_config(**changes)

    async def run(task_status: trio.TaskStatus[RelayInfo]) -> None:
        await serve(config, registry=CollectorRegistry(), task_status=task_status)

    info: RelayInfo = await nursery.start(run)
    return info
