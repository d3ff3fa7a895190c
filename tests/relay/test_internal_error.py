"""A bug in one request handler costs that request an INTERNAL error, never the relay."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio

import client
from client import errors
from protocol import messages as m
from tests.conftest import start_relay


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def test_handler_bug_is_contained(nursery: trio.Nursery) -> None:
    info = await start_relay(nursery)
    hub = info.relay.hub
    healthy = hub.handlers[m.Ping]

    def broken(peer: Any, req: Any, now: float) -> None:
        raise KeyError("room 1n9v-gwxp-atjj-vdmm-23t2-re5q-nvyd from 127.0.0.1:5555")

    async with client.connect(info.url, info.public_key) as conn:
        room = await conn.create_room()
        hub.handlers[m.Ping] = broken
        records = Records()
        logger = logging.getLogger("haven.hub")
        logger.addHandler(records)
        try:
            with pytest.raises(errors.InternalError):
                await conn.ping()
        finally:
            logger.removeHandler(records)
        hub.handlers[m.Ping] = healthy
        await conn.ping()  # the same connection still works
        await room.send(b"still here")
    assert any("request handler failed: Ping" in text for text in records.messages)
