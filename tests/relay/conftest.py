"""Relay test harness: a real relay on 127.0.0.1:0 and raw wire clients that get cleaned up.

Every socket a test opens through the harness is aborted at teardown, so a failing test
leaves no unclosed socket behind (the suite turns ResourceWarnings into errors).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from haven.protocol import messages as m
from haven.relay.server import RelayInfo
from tests.conftest import start_relay

from .wire import RawSocket, WireClient, port_of


class Harness:
    """One relay per test plus the clients the test opened against it."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        self._info: RelayInfo | None = None
        self.sockets: list[RawSocket] = []

    @property
    def info(self) -> RelayInfo:
        assert self._info is not None, "call harness.start() first"
        return self._info

    @property
    def port(self) -> int:
        return port_of(self.info.url)

    async def start(self, **config: Any) -> RelayInfo:
        """Start the relay with test defaults plus ``config``."""
        self._info = await start_relay(self.nursery, **config)
        return self._info

    async def client(self, **kwargs: Any) -> WireClient:
        """A handshaken wire client (kept for cleanup)."""
        client = await WireClient.connect(self.port, self.info.public_key, **kwargs)
        self.sockets.append(client.sock)
        return client

    async def raw(self, **kwargs: Any) -> RawSocket:
        """A bare TCP connection to the relay, nothing sent yet (kept for cleanup)."""
        sock = await RawSocket.open(self.port, **kwargs)
        self.sockets.append(sock)
        return sock

    async def room(
        self, members: int, **create: Any
    ) -> tuple[str, list[WireClient], list[m.Seat]]:
        """A group room (unless ``kind`` says otherwise) with ``members`` wire clients.

        Every member has read the presence events of those who joined after it, so each
        client's event queue starts empty and every member has handled the room's events
        up to ``seats[-1].seq`` (the resume point if it drops now).
        """
        create.setdefault("kind", "group")
        clients = [await self.client() for _ in range(members)]
        first = await clients[0].call(lambda i: m.CreateRoom(id=i, **create), m.Joined)
        code = first.seat.room
        seats = [first.seat]
        for client in clients[1:]:
            joined = await client.call(lambda i: m.Join(id=i, room=code), m.Joined)
            seats.append(joined.seat)
        for k, client in enumerate(clients):
            for _ in range(members - 1 - k):
                await client.event(m.Presence, where=lambda p: p.event == "joined")
        for client in clients:
            assert not client.events, client.events
        return code, clients, seats

    async def aclose(self) -> None:
        for sock in self.sockets:
            await sock.abort()


@pytest.fixture
async def harness(nursery: trio.Nursery) -> AsyncIterator[Harness]:
    h = Harness(nursery)
    try:
        yield h
    finally:
        await h.aclose()
