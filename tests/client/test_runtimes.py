"""The SDK's behaviour, proven once per runtime: every scenario runs under Trio and under
asyncio, against a real relay process on loopback, through real sockets.

A scenario is an anyio coroutine using only the public API (``import haven``); the test
runs it with ``anyio.run(..., backend=...)`` for each runtime, so both SDK shells must
pass exactly the same checks: rooms and delivery, typed errors, surviving a network cut
(a TCP proxy resets every connection), resuming a seat and a queue place from a saved
token on a new connection, connection-state events, draining, TLS with an
``ssl_context``, and typed TLS and upgrade failures.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest

import haven
from haven.client.errors import ResumeFailed, RoomNotFound
from haven.protocol import messages as m

from .netkit import Proxy, RelayProcess, relay_process, self_signed

BACKENDS = ["trio", "asyncio"]
E = TypeVar("E", bound=m.Message)


@pytest.fixture(scope="module")
def relay() -> Iterator[RelayProcess]:
    with relay_process() as proc:
        yield proc


def run(backend: str, scenario: Callable[..., Awaitable[None]], *args: Any) -> None:
    async def bounded() -> None:
        with anyio.fail_after(60):
            await scenario(*args)

    anyio.run(bounded, backend=backend)


async def next_of(room: haven.Room, kind: type[E]) -> E:
    with anyio.fail_after(10):
        async for event in room.events():
            if isinstance(event, kind):
                return event
    raise AssertionError(f"the stream ended before a {kind.__name__}")


async def state_reached(conn: haven.Connection, state: haven.ConnState) -> list[str]:
    seen: list[str] = []
    with anyio.fail_after(15):
        async for change in conn.states():
            seen.append(change.value)
            if change is state:
                return seen
    raise AssertionError(f"states ended before {state.value}: {seen}")


# ------------------------------------------------------------------ scenarios


async def _rooms_and_delivery(relay: RelayProcess, tmp: Path) -> None:
    async with (
        haven.connect(relay.url, relay.key) as alice,
        haven.connect(relay.url, relay.key) as bob,
    ):
        assert alice.state is haven.ConnState.CONNECTED
        room = await alice.create_room(topic="evening check-in")
        theirs = await bob.join(room.code)
        assert theirs.code == room.code
        joined = await next_of(room, m.Presence)
        assert (joined.alias, joined.event) == (theirs.alias, "joined")
        for n in range(20):
            await theirs.send(b"m%d" % n)
        bodies = [(await next_of(room, m.Deliver)).body for _ in range(20)]
        assert bodies == [b"m%d" % n for n in range(20)]
        await theirs.leave()
        assert theirs.ended
        left = await next_of(room, m.Presence)
        assert (left.alias, left.event) == (theirs.alias, "left")
        with pytest.raises(RoomNotFound):
            await bob.join("0000-0000-0000-0000-0000-0000-0000")
    assert alice.closed
    assert alice.state is haven.ConnState.CLOSED


async def _wrong_key_and_no_relay(relay: RelayProcess, tmp: Path) -> None:
    with pytest.raises(haven.HandshakeFailed):
        async with haven.connect(relay.url, bytes(range(1, 33))):
            pytest.fail("connected to a relay with another key")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(haven.ConnectFailed):
        async with haven.connect(f"ws://127.0.0.1:{port}/", relay.key, connect_timeout=5):
            pytest.fail("connected to nothing")
    with pytest.raises(KeyError):  # exceptions from the body come out unwrapped
        async with haven.connect(relay.url, relay.key):
            raise KeyError("mine")


async def _a_network_cut_is_survived(relay: RelayProcess, tmp: Path) -> None:
    proxy = Proxy(relay.port)
    async with anyio.create_task_group() as tg:
        await tg.start(proxy.serve)
        url = f"ws://127.0.0.1:{proxy.port}/"
        async with (
            haven.connect(relay.url, relay.key) as alice,
            haven.connect(url, relay.key) as bob,
        ):
            room = await alice.create_room()
            theirs = await bob.join(room.code)
            token = theirs.seat.token
            await room.send(b"m1")
            assert (await next_of(theirs, m.Deliver)).body == b"m1"

            proxy.offline = True
            proxy.cut()  # every connection through the proxy is reset
            for n in (2, 3, 4):  # sent while bob is away: replayed on resume
                await room.send(b"m%d" % n)
            proxy.offline = False
            assert await state_reached(bob, haven.ConnState.RESUMED) == [
                "connected", "reconnecting", "resumed"
            ]
            assert bob.resumes == 1
            assert theirs.seat.token != token  # rotated
            await room.send(b"m5")
            bodies = [(await next_of(theirs, m.Deliver)).body for _ in range(4)]
            assert bodies == [b"m2", b"m3", b"m4", b"m5"]  # each once, in order
            assert (await theirs.send(b"back")).seq is not None
        tg.cancel_scope.cancel()


async def _resume_a_seat_from_a_saved_token(relay: RelayProcess, tmp: Path) -> None:
    async with haven.connect(relay.url, relay.key) as alice:
        room = await alice.create_room()
        async with haven.connect(relay.url, relay.key) as bob:
            theirs = await bob.join(room.code)
            await room.send(b"seen")
            seen = await next_of(theirs, m.Deliver)
            saved_token, saved_seq = theirs.seat.token, seen.seq
        # bob's app restarted: the connection closed without leaving.
        for n in (1, 2):
            await room.send(b"missed%d" % n)
        async with haven.connect(relay.url, relay.key) as bob_again:
            back = await bob_again.resume(saved_token, after=saved_seq)
            assert isinstance(back, haven.Room)
            assert back.code == room.code
            assert back.seat.resumed
            assert back.seat.token != saved_token
            bodies = [(await next_of(back, m.Deliver)).body for _ in range(2)]
            assert bodies == [b"missed1", b"missed2"]
            with pytest.raises(ResumeFailed):  # the old token was rotated away
                await bob_again.resume(saved_token)


async def _resume_a_queue_place_from_a_saved_token(relay: RelayProcess, tmp: Path) -> None:
    async with haven.connect(relay.url, relay.key) as visitor:
        ticket = await visitor.request_help("helpline")
        saved = ticket.token
    async with haven.connect(relay.url, relay.key) as visitor_again:
        back = await visitor_again.resume(saved)
        assert isinstance(back, haven.QueueTicket)
        assert back.queue == "helpline"
        async with haven.connect(relay.url, relay.key) as staff:
            await staff.auth(relay.tokens["staff"])
            await staff.duty("helpline")
            room = await staff.take_next("helpline")
            visitor_room = await back.room()
            assert visitor_room.code == room.code


async def _a_quiet_connection_is_kept_alive(relay: RelayProcess, tmp: Path) -> None:
    async with haven.connect(relay.url, relay.key, keepalive=0.1) as conn:
        await anyio.sleep(1.0)  # quiet: only keepalive pings go out
        link = conn._link
        assert link is not None
        assert link.session.next_id >= 3  # at least two pings were sealed and sent
        await conn.ping()  # and the connection is still in step
    async with haven.connect(relay.url, relay.key, keepalive=0) as quiet:
        await anyio.sleep(0.3)
        assert quiet._link is not None
        assert quiet._link.session.next_id == 1  # keepalive=0: none


async def _without_auto_resume_a_cut_ends_it(relay: RelayProcess, tmp: Path) -> None:
    proxy = Proxy(relay.port)
    async with anyio.create_task_group() as tg:
        await tg.start(proxy.serve)
        url = f"ws://127.0.0.1:{proxy.port}/"
        async with haven.connect(url, relay.key, auto_resume=False) as conn:
            room = await conn.create_room()
            proxy.cut()
            with pytest.raises(haven.ConnectionLost), anyio.fail_after(10):
                async for _ in room.events():
                    pass
            assert conn.closed
            assert conn.state is haven.ConnState.GAVE_UP
            with pytest.raises(haven.ConnectionLost):
                await conn.ping()
        tg.cancel_scope.cancel()


async def _a_seat_that_cannot_be_resumed_ends_typed(relay: RelayProcess, tmp: Path) -> None:
    """Away longer than the relay's grace (1 s here): the connection comes back, the
    room's stream ends with ``ResumeFailed``, and the connection works on."""
    proxy = Proxy(relay.port)
    async with anyio.create_task_group() as tg:
        await tg.start(proxy.serve)
        url = f"ws://127.0.0.1:{proxy.port}/"
        async with (
            haven.connect(relay.url, relay.key) as alice,
            haven.connect(url, relay.key, resume_timeout=30) as bob,
        ):
            room = await alice.create_room()
            theirs = await bob.join(room.code)
            proxy.offline = True
            proxy.cut()
            await anyio.sleep(1.5)  # past the relay's 1 s grace: the seat is gone
            proxy.offline = False
            with pytest.raises(ResumeFailed), anyio.fail_after(20):
                async for _ in theirs.events():
                    pass
            await state_reached(bob, haven.ConnState.RESUMED)
            assert room.code not in bob.rooms
            await bob.ping()
        tg.cancel_scope.cancel()


async def _draining_ends_in_gave_up(relay: RelayProcess, tmp: Path) -> None:
    async with haven.connect(relay.url, relay.key, resume_timeout=1.0) as conn:
        room = await conn.create_room()
        relay.drain()
        with anyio.fail_after(15):
            async for event in conn.events():
                if isinstance(event, m.Draining):
                    break
            with pytest.raises(haven.ConnectionLost):
                async for _ in room.events():
                    pass
        assert conn.closed
        assert conn.state is haven.ConnState.GAVE_UP


async def _wss_with_an_ssl_context(relay: RelayProcess, tmp: Path) -> None:
    cert = self_signed(tmp)
    front = Proxy(relay.port, tls=cert.server)
    async with anyio.create_task_group() as tg:
        await tg.start(front.serve)
        url = f"wss://127.0.0.1:{front.port}/"
        # The system trust store does not know this certificate: a typed error at once.
        with pytest.raises(haven.TLSFailed):
            async with haven.connect(url, relay.key, connect_timeout=30):
                pytest.fail("trusted an unknown certificate")
        async with haven.connect(url, relay.key, ssl_context=cert.trusting_client) as conn:
            room = await conn.create_room()
            assert room.code in conn.rooms
        tg.cancel_scope.cancel()


async def _a_refused_upgrade_is_typed(relay: RelayProcess, tmp: Path) -> None:
    gateway = Proxy(relay.port, refuse_status=502)
    async with anyio.create_task_group() as tg:
        await tg.start(gateway.serve)
        with pytest.raises(haven.UpgradeRefused) as refused:
            async with haven.connect(f"ws://127.0.0.1:{gateway.port}/", relay.key):
                pytest.fail("connected through a refusing gateway")
        assert refused.value.status == 502
        tg.cancel_scope.cancel()


# ---------------------------------------------------------------------- tests

SCENARIOS = [
    _rooms_and_delivery,
    _wrong_key_and_no_relay,
    _a_network_cut_is_survived,
    _resume_a_seat_from_a_saved_token,
    _resume_a_queue_place_from_a_saved_token,
    _wss_with_an_ssl_context,
    _a_refused_upgrade_is_typed,
    _a_quiet_connection_is_kept_alive,
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__.strip("_"))
def test_sdk_behaviour(
    backend: str,
    scenario: Callable[[RelayProcess, Path], Awaitable[None]],
    relay: RelayProcess,
    tmp_path: Path,
) -> None:
    run(backend, scenario, relay, tmp_path)


@pytest.mark.parametrize("backend", BACKENDS)
def test_without_auto_resume_a_cut_ends_the_connection(
    backend: str, relay: RelayProcess, tmp_path: Path
) -> None:
    run(backend, _without_auto_resume_a_cut_ends_it, relay, tmp_path)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_seat_that_cannot_be_resumed_ends_with_resume_failed(
    backend: str, tmp_path: Path
) -> None:
    with relay_process("--resume-grace", "1") as short_grace:
        run(backend, _a_seat_that_cannot_be_resumed_ends_typed, short_grace, tmp_path)


@pytest.mark.parametrize("backend", BACKENDS)
def test_draining_relay_ends_in_gave_up(backend: str, tmp_path: Path) -> None:
    with relay_process() as own:  # this one is drained away
        run(backend, _draining_ends_in_gave_up, own, tmp_path)
