"""Every limit the relay enforces, each with its typed error, over real loopback.

Limits are set small in each test's config so they bite quickly; all waiting happens
on the autojump clock, so timeouts, TTLs and token buckets cost no wall time.
"""

from __future__ import annotations

import math

import pytest
import trio

from haven.protocol import codes
from haven.protocol import messages as m
from haven.protocol.errors import ErrorCode
from haven.protocol.session import close_code

from .conftest import Harness
from .wire import Closed, WireClient

SERVER_FULL_CLOSE = close_code(ErrorCode.SERVER_FULL)
SLOW_CONSUMER_CLOSE = close_code(ErrorCode.SLOW_CONSUMER)
IDLE_CLOSE = close_code(ErrorCode.IDLE_TIMEOUT)


async def ping(client: WireClient) -> None:
    """The connection is alive and answering."""
    await client.call(lambda i: m.Ping(id=i), m.Pong)


# ---------------------------------------------------------------- connections


async def test_max_connections_closes_with_server_full(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    await harness.start(max_connections=2)
    first = await harness.client()
    second = await harness.client()
    with pytest.raises(Closed) as refused:
        await harness.client()
    assert refused.value.code == SERVER_FULL_CLOSE
    await ping(first)
    await ping(second)
    # The cap counts open connections: when one goes, a newcomer fits again.
    await first.close()
    await trio.sleep(1)
    third = await harness.client()
    await ping(third)


async def test_slow_consumer_is_dropped_and_the_room_keeps_flowing(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    await harness.start(outbound_backlog_bytes=64 * 1024, rate_per_s=100_000,
                        rate_burst=100_000, close_timeout=60,
                        room_rate_bytes_per_s=10**9, room_burst_bytes=10**9,
                        resume_buffer_bytes=10**9)
    sender = await harness.client()
    created = await sender.call(lambda i: m.CreateRoom(id=i, kind="group"), m.Joined)
    code = created.seat.room
    reader = await harness.client()
    await reader.call(lambda i: m.Join(id=i, room=code), m.Joined)
    # A tiny kernel receive buffer, and the test never reads this socket until the end.
    slow = await harness.client(rcvbuf=4096)
    slow_seat = (await slow.call(lambda i: m.Join(id=i, room=code), m.Joined)).seat
    body = bytes(range(256)) * 60  # about 15 KiB per message
    acks: list[int] = []
    received: list[int] = []
    dropped = trio.Event()
    caught_up = trio.Event()
    sending_done = False

    async def read_all() -> None:
        while True:
            msg = await reader.next_message(within=math.inf)
            if isinstance(msg, m.Deliver):
                received.append(msg.seq)
            elif isinstance(msg, m.Presence) and (msg.alias, msg.event) == (slow_seat.alias,
                                                                             "away"):
                dropped.set()
            if sending_done and len(received) == len(acks):
                caught_up.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_all)
        extra = 0
        while extra < 20:  # keep going for a while after the drop
            sent = await sender.call(lambda i: m.Send(id=i, room=code, body=body), m.Sent)
            assert sent.seq is not None
            acks.append(sent.seq)
            assert len(acks) < 5000, "the slow consumer was never dropped"
            if dropped.is_set():
                extra += 1
        sending_done = True
        if len(received) < len(acks):
            with trio.fail_after(60):
                await caught_up.wait()
        nursery.cancel_scope.cancel()
    assert received == acks, "the healthy member missed messages"
    # Only now does the slow client read: what was queued, then the typed close.
    assert await slow.wait_closed(within=120) == SLOW_CONSUMER_CLOSE
    await ping(sender)


async def test_handshake_timeout_silent_tcp(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    await harness.start(handshake_timeout=6)
    sock = await harness.raw()
    with trio.move_on_after(3) as still_open:
        await sock.wait_closed()
    assert still_open.cancelled_caught, "closed before the handshake timeout"
    assert await sock.wait_closed(within=10) is None  # no WebSocket yet: a bare close


async def test_handshake_timeout_without_noise_message(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    await harness.start(handshake_timeout=6)
    sock = await harness.raw()
    await sock.upgrade()
    with trio.move_on_after(3) as still_open:
        await sock.wait_closed()
    assert still_open.cancelled_caught, "closed before the handshake timeout"
    await sock.wait_closed(within=10)


async def test_idle_timeout_closes_quiet_clients_only(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    await harness.start(idle_timeout=10, ping_interval=3)
    quiet = await harness.client()
    quiet.sock.answer_pings = False
    lively = await harness.client()  # answers every ping while it reads
    async with trio.open_nursery() as nursery:
        async def read_lively() -> None:
            with trio.move_on_after(40) as idle:
                await lively.wait_closed(within=math.inf)
            assert idle.cancelled_caught, "a client answering pings was closed as idle"

        nursery.start_soon(read_lively)
        assert await quiet.wait_closed(within=60) == IDLE_CLOSE
    await ping(lively)


# ---------------------------------------------------------------- rooms


async def test_max_rooms_on_the_relay(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    await harness.start(max_rooms=2)
    a, b = await harness.client(), await harness.client()
    first = await a.call(lambda i: m.CreateRoom(id=i, kind="group"), m.Joined)
    await b.call(lambda i: m.CreateRoom(id=i, kind="direct"), m.Joined)
    err = await b.error(lambda i: m.CreateRoom(id=i, kind="group"), ErrorCode.TOO_MANY_ROOMS)
    assert err.retry_after is None
    # A room ends when its last member leaves, which frees a place.
    await a.call(lambda i: m.Leave(id=i, room=first.seat.room), m.Left)
    await b.call(lambda i: m.CreateRoom(id=i, kind="group"), m.Joined)


async def test_max_rooms_per_connection(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    await harness.start(max_rooms_per_connection=2)
    a, b = await harness.client(), await harness.client()
    other = await b.call(lambda i: m.CreateRoom(id=i, kind="group"), m.Joined)
    await a.call(lambda i: m.CreateRoom(id=i, kind="group"), m.Joined)
    await a.call(lambda i: m.CreateRoom(id=i, kind="group"), m.Joined)
    await a.error(lambda i: m.CreateRoom(id=i, kind="group"), ErrorCode.TOO_MANY_ROOMS)
    await a.error(lambda i: m.Join(id=i, room=other.seat.room), ErrorCode.TOO_MANY_ROOMS)
    await ping(a)


async def test_members_per_room(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    await harness.start(max_members=3, max_members_limit=4)
    owner = await harness.client()
    group = await owner.call(lambda i: m.CreateRoom(id=i, kind="group"), m.Joined)
    direct = await owner.call(lambda i: m.CreateRoom(id=i, kind="direct"), m.Joined)
    capped = await owner.call(lambda i: m.CreateRoom(id=i, kind="group", max_members=2),
                              m.Joined)
    await owner.error(lambda i: m.CreateRoom(id=i, kind="group", max_members=5),
                      ErrorCode.BAD_FIELD)
    others = [await harness.client() for _ in range(3)]
    for client in others[:2]:
        await client.call(lambda i: m.Join(id=i, room=group.seat.room), m.Joined)
    await others[2].error(lambda i: m.Join(id=i, room=group.seat.room), ErrorCode.ROOM_FULL)
    await others[0].call(lambda i: m.Join(id=i, room=direct.seat.room), m.Joined)
    await others[1].error(lambda i: m.Join(id=i, room=direct.seat.room), ErrorCode.ROOM_FULL)
    await others[0].call(lambda i: m.Join(id=i, room=capped.seat.room), m.Joined)
    await others[1].error(lambda i: m.Join(id=i, room=capped.seat.room), ErrorCode.ROOM_FULL)


async def test_body_size(harness: Harness, autojump_clock: trio.testing.MockClock) -> None:
    await harness.start(max_body_bytes=1024)
    code, (a, b), _ = await harness.room(2)
    assert a.welcome.limits.max_body == 1024
    await a.error(lambda i: m.Send(id=i, room=code, body=b"x" * 1025), ErrorCode.TOO_LARGE)
    await a.call(lambda i: m.Send(id=i, room=code, body=b"x" * 1024), m.Sent)
    got = await b.event(m.Deliver)
    assert len(got.body) == 1024


@pytest.mark.parametrize("size", [16401, 40000, 70000])
async def test_websocket_message_size(
    harness: Harness, autojump_clock: trio.testing.MockClock, size: int
) -> None:
    """A WebSocket message above max_message_bytes closes with 1009, in one piece or many."""
    await harness.start(max_message_bytes=16400)
    client = await harness.client()
    await client.sock.send_bytes(bytes(size))
    assert await client.wait_closed() == 1009


async def test_request_rate(harness: Harness, autojump_clock: trio.testing.MockClock) -> None:
    await harness.start(rate_per_s=1, rate_burst=3)
    client = await harness.client()
    for _ in range(3):
        await ping(client)
    err = await client.error(lambda i: m.Ping(id=i), ErrorCode.RATE_LIMITED)
    assert err.retry_after is not None
    assert err.retry_after >= 1
    await trio.sleep(err.retry_after)
    await ping(client)


async def test_typing_rate(harness: Harness, autojump_clock: trio.testing.MockClock) -> None:
    await harness.start(typing_interval=2)
    code, (a, b), seats = await harness.room(2)
    await a.call(lambda i: m.Typing(id=i, room=code), m.Ok)
    err = await a.error(lambda i: m.Typing(id=i, room=code), ErrorCode.RATE_LIMITED)
    assert err.retry_after is not None
    assert err.retry_after >= 1
    await trio.sleep(err.retry_after)
    await a.call(lambda i: m.Typing(id=i, room=code), m.Ok)
    await ping(b)
    typing = [e for e in b.events if isinstance(e, m.TypingEvent)]
    assert [(t.room, t.alias) for t in typing] == [(code, seats[0].alias)] * 2


# ---------------------------------------------------------------- requests


async def test_request_ids_must_increase(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    await harness.start()
    client = await harness.client()
    for rid, expected in [(5, m.Pong), (5, m.Error), (4, m.Error), (6, m.Pong)]:
        await client.send(m.Ping(id=rid))
        reply = await client.reply(rid)
        assert isinstance(reply, expected), (rid, reply)
        if isinstance(reply, m.Error):
            assert reply.code == ErrorCode.BAD_REQUEST_ID


async def test_room_codes_and_membership(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    await harness.start()
    code, (a, _b), _ = await harness.room(2)
    stranger = await harness.client()
    await stranger.error(lambda i: m.Join(id=i, room=codes.new_room_code()),
                         ErrorCode.ROOM_NOT_FOUND)
    alphabet = codes.ROOM_CODE_ALPHABET
    typo = alphabet[(alphabet.index(code[0]) + 1) % len(alphabet)] + code[1:]
    await stranger.error(lambda i: m.Join(id=i, room=typo), ErrorCode.BAD_CODE)
    await stranger.error(lambda i: m.Join(id=i, room="not a code"), ErrorCode.BAD_CODE)
    await stranger.error(lambda i: m.Send(id=i, room=code, body=b"hi"), ErrorCode.NOT_A_MEMBER)
    await stranger.error(lambda i: m.Typing(id=i, room=code), ErrorCode.NOT_A_MEMBER)
    await stranger.error(lambda i: m.Leave(id=i, room=code), ErrorCode.NOT_A_MEMBER)
    await a.error(lambda i: m.Join(id=i, room=code), ErrorCode.ALREADY_MEMBER)
    # Codes are case- and separator-tolerant: the same room, spelled differently.
    await stranger.call(lambda i: m.Join(id=i, room=code.upper()), m.Joined)


async def test_room_idle_ttl(harness: Harness, autojump_clock: trio.testing.MockClock) -> None:
    await harness.start()
    code, (a, b), _ = await harness.room(2, idle_ttl=30)
    for client in (a, b):
        closed = await client.event(m.RoomClosed, within=60)
        assert (closed.room, closed.reason) == (code, "expired")
    assert code not in harness.info.relay.hub.rooms
    await a.error(lambda i: m.Send(id=i, room=code, body=b"x"), ErrorCode.NOT_A_MEMBER)
    await b.error(lambda i: m.Join(id=i, room=code), ErrorCode.ROOM_NOT_FOUND)


async def test_room_hard_ttl_despite_activity(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    await harness.start()
    code, (a, b), _ = await harness.room(2, idle_ttl=5, hard_ttl=20)
    for _ in range(30):  # traffic every 2 s keeps the idle TTL away, never the hard one
        reply = await a.request(lambda i: m.Send(id=i, room=code, body=b"."))
        if isinstance(reply, m.Error):
            assert reply.code == ErrorCode.NOT_A_MEMBER
            break
        await trio.sleep(2)
    else:
        raise AssertionError("the hard TTL never ended the room")
    closed = await a.event(m.RoomClosed)
    assert (closed.room, closed.reason) == (code, "expired")
    closed = await b.event(m.RoomClosed)
    assert closed.reason == "expired"
    await b.error(lambda i: m.Join(id=i, room=code), ErrorCode.ROOM_NOT_FOUND)


async def test_config_caps_room_ttls(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    """A creator cannot ask for a room to outlive the relay's own room TTL."""
    await harness.start(room_idle_ttl=10)
    code, (a,), _ = await harness.room(1, idle_ttl=3600)
    closed = await a.event(m.RoomClosed, within=30)
    assert (closed.room, closed.reason) == (code, "expired")
