"""A bug in one request handler costs that request an INTERNAL error, never the relay."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing

from haven import client
from haven.client import errors
from haven.protocol import messages as m
from haven.relay.connection import ClientSocket
from tests.conftest import start_relay

from .conftest import Harness
from .wire import req


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


async def test_connection_bug_is_contained(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception escaping one connection's task ends that connection only."""
    info = await harness.start()
    victim = await harness.client()
    bystander = await harness.client()
    room = await bystander.call(req(m.CreateRoom, kind="group"), m.Joined)
    victim_conn = next(c for c in info.relay.connections if c.peer is not None
                       and not c.peer.seats)  # fmt: skip
    original = ClientSocket._on_frame

    def explode(self: ClientSocket, message: bytes, now: float) -> None:
        if self is victim_conn:
            raise RuntimeError("bug")
        original(self, message, now)

    monkeypatch.setattr(ClientSocket, "_on_frame", explode)
    records = Records()
    logger = logging.getLogger("haven.relay")
    logger.addHandler(records)
    try:
        await victim.send(m.Ping(id=victim.next_id()))
        await victim.wait_closed()
        await trio.testing.wait_all_tasks_blocked()  # the relay logs after it closes
    finally:
        logger.removeHandler(records)
    assert "connection task failed" in records.messages
    # The relay still serves the other connection and accepts new ones.
    await bystander.call(req(m.Send, room=room.seat.room, body=b"still here"), m.Sent)
    newcomer = await harness.client()
    await newcomer.call(req(m.Ping), m.Pong)
