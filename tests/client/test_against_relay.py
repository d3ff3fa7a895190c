"""The SDK against a real relay on loopback: connect, rooms, events, and resume.

Skipped when ``relay.server`` cannot be imported. A few tests reach into the running
relay (``RelayInfo.relay``) to force what a network would do to a client: drop its
connection with a typed close code, forget its resume tokens, raise the PoW difficulty.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
import trio
from prometheus_client import CollectorRegistry

from haven import client
from haven.client.errors import (
    ConnectFailed,
    ConnectionLost,
    HandshakeFailed,
    RelayClosed,
    ResumeFailed,
    RoomNotFound,
)
from haven.protocol.errors import ErrorCode
from haven.protocol.messages import Deliver, Draining, Presence
from haven.protocol.session import close_code
from haven.relay import config as config_mod
from haven.relay import server

SLOW_CONSUMER_CLOSE = close_code(ErrorCode.SLOW_CONSUMER)


async def start_relay(nursery: trio.Nursery, **overrides: Any) -> Any:
    config = config_mod.Config(port=0, metrics_port=None, **overrides)
    # A registry per relay: several relays run in this one process.
    return await nursery.start(partial(server.serve, config, registry=CollectorRegistry()))


@pytest.fixture
async def relay(nursery: trio.Nursery) -> Any:
    return await start_relay(nursery)


def drop(info: Any, alias: str, code: int = SLOW_CONSUMER_CLOSE) -> None:
    """Make the relay close the connection holding the seat ``alias`` with ``code``."""
    for conn in list(info.relay.connections):
        peer = conn.peer
        if peer is not None and any(s.alias == alias for s in peer.seats.values()):
            conn.close(code, "test: forced drop")
            return
    raise AssertionError(f"no relay connection holds {alias}")


async def next_of(room: client.Room, kind: type[Any]) -> Any:
    with trio.fail_after(5):
        async for event in room.events():
            if isinstance(event, kind):
                return event
    raise AssertionError(f"stream ended before a {kind.__name__}")


async def wait_resumed(conn: client.Connection, count: int = 1) -> None:
    with trio.fail_after(10):
        # Polling a counter: the SDK has no public "resumed" event, by design.
        while conn.resumes < count or not conn.connected:  # noqa: ASYNC110
            await trio.sleep(0.01)


async def test_connect_create_join_send_leave(relay: Any) -> None:
    async with (
        client.connect(relay.url, relay.key_text) as alice,
        client.connect(relay.url, relay.public_key) as bob,
    ):
        assert alice.welcome.version == 1
        await alice.ping()
        room = await alice.create_room(topic="evening check-in")
        assert room.code in alice.rooms
        theirs = await bob.join(room.code)
        assert theirs.code == room.code
        assert theirs.alias != room.alias
        joined = await next_of(room, Presence)
        assert (joined.alias, joined.event) == (theirs.alias, "joined")

        sent = await theirs.send(b"hello")
        assert sent.seq is not None
        got = await next_of(room, Deliver)
        assert (got.body, got.sender, got.seq) == (b"hello", theirs.alias, sent.seq)

        await theirs.leave()
        assert theirs.ended
        assert room.code not in bob.rooms
        assert [e async for e in theirs.events()] == []
        left = await next_of(room, Presence)
        assert (left.alias, left.event) == (theirs.alias, "left")

        with pytest.raises(RoomNotFound):
            await bob.join("0000-0000-0000-0000-0000-0000-0000")
    assert alice.closed
    assert room.ended


async def test_wrong_key_fails_the_handshake(relay: Any) -> None:
    with pytest.raises(HandshakeFailed):
        async with client.connect(relay.url, bytes(range(1, 33))):
            pytest.fail("connected to a relay with another key")


async def test_no_relay_is_connect_failed() -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    with pytest.raises(ConnectFailed):
        async with client.connect(f"ws://127.0.0.1:{port}/", bytes(32), connect_timeout=2):
            pytest.fail("connected to nothing")


async def test_body_exceptions_come_out_unwrapped(relay: Any) -> None:
    with pytest.raises(KeyError):
        async with client.connect(relay.url, relay.public_key):
            raise KeyError("mine")


async def test_resume_after_forced_drop_delivers_each_event_once(relay: Any) -> None:
    async with (
        client.connect(relay.url, relay.public_key) as alice,
        client.connect(relay.url, relay.public_key) as bob,
    ):
        room = await alice.create_room()
        theirs = await bob.join(room.code)
        token = theirs.seat.token
        await room.send(b"m1")
        assert (await next_of(theirs, Deliver)).body == b"m1"

        drop(relay, theirs.alias)  # 4406, as for a slow consumer
        for n in (2, 3, 4):  # sent while bob is away: replayed on resume
            await room.send(b"m%d" % n)
        await wait_resumed(bob)
        assert theirs.seat.resumed
        assert theirs.seat.token != token
        assert bob.rooms[room.code] is theirs
        await room.send(b"m5")
        assert (await theirs.send(b"back")).seq is not None

        bodies = [(await next_of(theirs, Deliver)).body for _ in range(4)]
        assert bodies == [b"m2", b"m3", b"m4", b"m5"]
        events = [await next_of(room, Presence) for _ in range(3)]
        assert [e.event for e in events] == ["joined", "away", "back"]
        assert (await next_of(room, Deliver)).body == b"back"

        # A second drop: the rotated token works too.
        drop(relay, theirs.alias, code=1001)
        await room.send(b"m6")
        await wait_resumed(bob, 2)
        assert (await next_of(theirs, Deliver)).body == b"m6"


async def test_without_auto_resume_the_room_ends_with_relay_closed(relay: Any) -> None:
    async with (
        client.connect(relay.url, relay.public_key) as alice,
        client.connect(relay.url, relay.public_key, auto_resume=False) as bob,
    ):
        room = await alice.create_room()
        theirs = await bob.join(room.code)
        drop(relay, theirs.alias)
        with pytest.raises(RelayClosed) as info, trio.fail_after(5):
            async for _ in theirs.events():
                pass
        assert info.value.error_code is ErrorCode.SLOW_CONSUMER
        assert bob.closed
        with pytest.raises(ConnectionLost):
            await bob.ping()


async def test_resume_failure_ends_the_room_with_resume_failed(relay: Any) -> None:
    async with (
        client.connect(relay.url, relay.public_key) as alice,
        client.connect(relay.url, relay.public_key) as bob,
    ):
        room = await alice.create_room()
        theirs = await bob.join(room.code)
        drop(relay, theirs.alias)
        relay.relay.hub.tokens.pop(theirs.seat.token)  # the relay forgot the seat
        with pytest.raises(ResumeFailed), trio.fail_after(10):
            async for _ in theirs.events():
                pass
        await wait_resumed(bob)  # the connection itself is fine
        assert room.code not in bob.rooms
        await bob.ping()


async def test_proof_of_work_in_a_thread(relay: Any) -> None:
    relay.relay.hub.pow_difficulty = 14  # above the inline limit: solved in a thread
    async with client.connect(relay.url, relay.public_key) as conn:
        assert conn.challenge.difficulty == 14
        async with trio.open_nursery() as nursery:
            for _ in range(5):  # ordinary requests overtaking the solve keep working
                nursery.start_soon(conn.ping)
            room = await conn.create_room()
        assert room.code in conn.rooms
        await conn.ping()  # ids kept increasing past the reserved one


async def test_draining_relay_gives_up_after_resume_timeout(nursery: trio.Nursery) -> None:
    info = await start_relay(nursery, drain_grace=0.2, drain_retry_after=0)
    async with client.connect(info.url, info.public_key, resume_timeout=0.5) as conn:
        room = await conn.create_room()
        info.relay.drain_requested.set()
        with trio.fail_after(10):
            async for event in conn.events():
                if isinstance(event, Draining):
                    break
            with pytest.raises(ConnectionLost):
                async for _ in room.events():
                    pass
        assert conn.closed
