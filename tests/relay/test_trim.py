"""After a housekeeping pass that ends many rooms, the relay trims its heap (once)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from haven.protocol import messages as m
from haven.relay import server as relay_server
from haven.relay.trim import trim_heap

from .conftest import Harness
from .wire import req


def test_trim_heap_is_harmless() -> None:
    data = [bytes(1000) for _ in range(10_000)]
    del data
    assert trim_heap() in (True, False)
    assert trim_heap() in (True, False)


async def test_mass_expiry_trims_once(
    harness: Harness, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[bool] = []

    def spy() -> bool:
        calls.append(trim_heap())
        return calls[-1]

    monkeypatch.setattr(relay_server, "trim_heap", spy)
    monkeypatch.setattr(relay_server, "TRIM_AFTER_ROOMS", 5)
    await harness.start(room_idle_ttl=30)
    client = await harness.client()
    for _ in range(8):
        await client.call(req(m.CreateRoom, kind="group"), m.Joined)
    await trio.sleep(5)
    assert calls == []  # nothing ended yet
    await trio.sleep(40)  # every room passes its idle TTL in the same pass
    assert len(calls) == 1
    assert harness.info.relay.hub.rooms == {}
