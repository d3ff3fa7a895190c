"""The SDK closes its socket when the relay drops it abruptly, whatever the timing.

Regression: a link that dropped just before the application closed the connection was
no longer "current", so neither side closed its socket (a ResourceWarning, an error
under this suite's warning filter). The race needs repetitions to show up.
"""

from __future__ import annotations

import gc
from typing import Any

import pytest
import trio

from haven import client
from haven.relay.connection import ClientSocket
from tests.conftest import start_relay


@pytest.mark.parametrize("attempt", range(10))
async def test_abrupt_drop_leaves_no_socket_open(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch, attempt: int
) -> None:
    info = await start_relay(nursery)
    async with client.connect(info.url, info.public_key, auto_resume=False) as conn:
        victim = next(iter(info.relay.connections))
        original = ClientSocket._on_frame

        def explode(self: ClientSocket, message: bytes, now: float) -> Any:
            if self is victim:
                raise RuntimeError("relay-side bug: the connection task dies")
            return original(self, message, now)

        monkeypatch.setattr(ClientSocket, "_on_frame", explode)
        with pytest.raises(client.ConnectionLost):
            await conn.ping()
    gc.collect()  # an unclosed socket would surface here as an error
