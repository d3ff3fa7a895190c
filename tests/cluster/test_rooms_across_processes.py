"""Rooms whose members sit on different relay processes of one cluster (real relays,
real nats-server, the Python SDK as the client)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from haven import client
from haven.client.errors import RateLimited, RelayBusy, RoomNotFound
from haven.protocol.errors import ErrorCode
from haven.protocol.messages import Deliver, Presence

from .clusterkit import deliveries, next_of, start_cluster, until
from .natskit import NatsServer, nats_server


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[NatsServer]:
    with nats_server(tmp_path) as s:
        yield s


async def test_a_room_spans_two_processes(
    nursery: trio.Nursery, bus: NatsServer, tmp_path: Path
) -> None:
    a, b = await start_cluster(nursery, bus.url, tmp_path, 2)
    async with (
        client.connect(a.url, a.public_key) as alice,
        client.connect(b.url, b.public_key) as bob,
    ):
        room = await alice.create_room(topic="across")
        assert room.code in a.relay.hub.rooms
        assert room.code not in b.relay.hub.rooms  # the room lives on its home only
        theirs = await bob.join(room.code)
        assert theirs.alias != room.alias
        joined = await next_of(room, Presence)
        assert (joined.alias, joined.event) == (theirs.alias, "joined")

        sent = await theirs.send(b"from bob on B")
        got = await next_of(room, Deliver)
        assert (got.body, got.sender, got.seq) == (b"from bob on B", theirs.alias, sent.seq)
        back = await room.send(b"from alice on A")
        got = await next_of(theirs, Deliver)
        assert (got.body, got.seq) == (b"from alice on A", back.seq)
        await theirs.typing()

        await theirs.leave()
        left = await next_of(room, Presence)
        assert (left.alias, left.event) == (theirs.alias, "left")
        # A code no process holds: NATS says "no responders", the client a typed error.
        with pytest.raises(RoomNotFound):
            await bob.join("0000-0000-0000-0000-0000-0000-0000")
        assert b.relay.cluster.forwarded >= 4
    # bob's connection is gone: so is the proxy standing for it on A.
    await until(lambda: not a.relay.cluster.proxies)


async def test_one_order_and_exactly_once_across_three_processes(
    nursery: trio.Nursery, bus: NatsServer, tmp_path: Path
) -> None:
    relays = await start_cluster(nursery, bus.url, tmp_path, 3)
    async with (
        client.connect(relays[0].url, relays[0].public_key) as c0,
        client.connect(relays[1].url, relays[1].public_key) as c1,
        client.connect(relays[2].url, relays[2].public_key) as c2,
    ):
        home = await c0.create_room(kind="group")
        rooms = [home, await c1.join(home.code), await c2.join(home.code)]
        per_member = 30

        async def talk(room: client.Room, who: int) -> None:
            for i in range(per_member):
                await room.send(b"%d:%d" % (who, i))

        async with trio.open_nursery() as senders:
            for who, room in enumerate(rooms):
                senders.start_soon(talk, room, who)

        seen = [
            [(d.seq, d.body) for d in await deliveries(room, 2 * per_member)] for room in rooms
        ]
        everything = sorted({x for got in seen for x in got})
        assert len(everything) == 3 * per_member  # each message once, one seq each
        for got in seen:
            assert got == sorted(got)  # one seq order for everyone
            assert len(set(got)) == len(got)  # exactly once
        seqs = [s for s, _ in everything]
        assert len(set(seqs)) == len(seqs)


async def test_requests_to_a_remote_room_keep_their_reply_order(
    nursery: trio.Nursery, bus: NatsServer, tmp_path: Path
) -> None:
    a, b = await start_cluster(nursery, bus.url, tmp_path, 2)
    async with (
        client.connect(a.url, a.public_key) as alice,
        client.connect(b.url, b.public_key) as bob,
    ):
        room = await alice.create_room()
        theirs = await bob.join(room.code)
        # Local and remote requests interleaved on one connection, all in flight at once.
        async with trio.open_nursery() as n:
            for i in range(20):
                n.start_soon(theirs.send, b"m%d" % i)
                n.start_soon(bob.ping)
        bodies = [d.body for d in await deliveries(room, 20)]
        assert sorted(bodies) == sorted(b"m%d" % i for i in range(20))


async def test_resume_on_another_process(
    nursery: trio.Nursery, bus: NatsServer, tmp_path: Path
) -> None:
    a, b, c = await start_cluster(nursery, bus.url, tmp_path, 3)
    async with client.connect(a.url, a.public_key) as alice:
        room = await alice.create_room()
        async with client.connect(b.url, b.public_key, auto_resume=False) as bob:
            theirs = await bob.join(room.code)
            token = theirs.seat.token
            first = await room.send(b"m1")
            assert (await next_of(theirs, Deliver)).body == b"m1"
            assert (await next_of(room, Presence)).event == "joined"
        # bob's connection to B is gone: his seat on A is held; he comes back through C.
        await until(lambda: not a.relay.cluster.proxies)
        assert (await next_of(room, Presence)).event == "away"
        for n in (2, 3, 4):
            await room.send(b"m%d" % n)
        async with client.connect(c.url, c.public_key) as bob_again:
            back = await bob_again.resume(token, after=first.seq)
            assert isinstance(back, client.Room)
            assert back.seat.resumed
            bodies = [d.body for d in await deliveries(back, 3)]
            assert bodies == [b"m2", b"m3", b"m4"]
            await room.send(b"m5")
            assert (await next_of(back, Deliver)).body == b"m5"
            assert (await next_of(room, Presence)).event == "back"
            # The old token is spent; the new one names the same home.
            assert back.seat.token != token
            assert back.seat.token[:8] == token[:8]


async def test_bus_down_refuses_remote_work_with_a_typed_error_and_recovers(
    nursery: trio.Nursery, bus: NatsServer, tmp_path: Path
) -> None:
    a, b = await start_cluster(nursery, bus.url, tmp_path, 2)
    async with (
        client.connect(a.url, a.public_key) as alice,
        client.connect(b.url, b.public_key) as bob,
    ):
        room = await alice.create_room()
        theirs = await bob.join(room.code)
        bus.stop()
        await until(lambda: not b.relay.cluster.ready and not a.relay.cluster.ready)
        with pytest.raises(RelayBusy) as failed:
            await theirs.send(b"while the bus is down")
        assert failed.value.code is ErrorCode.RELAY_BUSY
        assert failed.value.retry_after is not None
        mine = await alice.create_room()  # local work goes on
        assert mine.code in a.relay.hub.rooms
        during = await room.send(b"while the bus is down")  # bob's copy cannot leave A
        bus.start()
        await until(lambda: b.relay.cluster.ready and a.relay.cluster.ready)
        await b.relay.cluster.client.flush()
        await a.relay.cluster.client.flush()
        sent = await theirs.send(b"after the restart")
        got = await next_of(room, Deliver)
        assert (got.body, got.seq) == (b"after the restart", sent.seq)
        # bob's room is on A: once B's link was back, his connection was closed so that
        # he resumed, and what A sent while the bus was down was replayed, once.
        assert bob.resumes >= 1
        got = await next_of(theirs, Deliver)
        assert (got.body, got.seq) == (b"while the bus is down", during.seq)


async def test_a_bus_message_lost_in_transit_is_made_good_by_a_resume(
    nursery: trio.Nursery, bus: NatsServer, tmp_path: Path
) -> None:
    """Frames a home sends each origin are numbered; a gap (a message the bus lost) makes
    the origin's affected members resume before anything later is delivered, so each
    message still arrives exactly once and in order."""
    a, b = await start_cluster(nursery, bus.url, tmp_path, 2)
    async with (
        client.connect(a.url, a.public_key) as alice,
        client.connect(b.url, b.public_key) as bob,
    ):
        room = await alice.create_room()
        theirs = await bob.join(room.code)
        await room.send(b"m1")
        assert (await next_of(theirs, Deliver)).body == b"m1"

        link_a = a.relay.cluster
        towards_b = link_a.subject("node", b.relay.cluster.tag)
        real_publish = link_a.client.publish
        lost: list[bytes] = []

        def lossy(subject: bytes, payload: bytes, reply: bytes | None = None) -> None:
            if subject == towards_b and not lost:
                lost.append(payload)  # gone in transit: never reaches NATS
                return
            real_publish(subject, payload, reply)

        link_a.client.publish = lossy  # type: ignore[method-assign]
        await room.send(b"m2")  # bob's copy is lost
        await room.send(b"m3")  # B sees the gap: bob resumes first
        bodies = [d.body for d in await deliveries(theirs, 2)]
        assert bodies == [b"m2", b"m3"]
        assert lost
        assert bob.resumes == 1
        await room.send(b"m4")
        assert (await next_of(theirs, Deliver)).body == b"m4"


async def test_a_lost_gone_is_found_by_the_homes_check(
    nursery: trio.Nursery, bus: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection's end announced on a bus that loses the message: the room's home
    asks the origin which of its proxied connections still exist, and lets go of the
    rest (the member shows as away, its seat held for resume)."""
    from haven.cluster import link as link_module

    monkeypatch.setattr(link_module, "CHECK_EVERY", 0.2)
    a, b = await start_cluster(nursery, bus.url, tmp_path, 2)
    async with client.connect(a.url, a.public_key) as alice:
        room = await alice.create_room()
        link_b = b.relay.cluster
        towards_a = link_b.subject("node", a.relay.cluster.tag)
        real_publish = link_b.client.publish
        lost: list[bytes] = []

        def lossy(subject: bytes, payload: bytes, reply: bytes | None = None) -> None:
            if subject == towards_a and armed and not lost:
                lost.append(payload)  # the gone, lost in transit
                return
            real_publish(subject, payload, reply)

        armed = False
        link_b.client.publish = lossy  # type: ignore[method-assign]
        async with client.connect(b.url, b.public_key, auto_resume=False) as bob:
            await bob.join(room.code)
            assert (await next_of(room, Presence)).event == "joined"
            armed = True
        assert (await next_of(room, Presence)).event == "away"
        assert lost
        await until(lambda: not a.relay.cluster.proxies)


async def test_the_homes_limits_and_memory_budget_reach_members_elsewhere(
    nursery: trio.Nursery, bus: NatsServer, tmp_path: Path
) -> None:
    """Limits hold across processes: the rate limit is charged where the client is
    connected, and a room's home refuses new state near its memory budget; the member on
    the other process gets the same typed errors as one on the home."""
    a, b = await start_cluster(nursery, bus.url, tmp_path, 2, rate_per_s=5.0, rate_burst=10)
    async with (
        client.connect(a.url, a.public_key) as alice,
        client.connect(b.url, b.public_key) as bob,
    ):
        room = await alice.create_room()
        theirs = await bob.join(room.code)
        waits: list[float | None] = []
        for i in range(20):  # well past the burst, faster than the refill
            try:
                await theirs.send(b"m%d" % i)
            except RateLimited as exc:
                waits.append(exc.retry_after)
        assert waits
        assert None not in waits
        await trio.sleep(2.5)  # the bucket refills

        memory = a.relay.hub.memory
        memory.limit = int(memory.used / 0.9)  # the home is at its soft mark
        async with client.connect(b.url, b.public_key) as carol:
            with pytest.raises(RelayBusy):
                await carol.join(room.code)
        memory.limit = 1 << 40
        assert (await theirs.send(b"room for more")).seq is not None


async def test_a_resume_on_another_process_replays_more_than_one_refill(
    nursery: trio.Nursery, bus: NatsServer, tmp_path: Path
) -> None:
    """A seat that missed more than one refill's worth (128 KiB) of the ring gets all of
    it, once and in order, when it resumes through another process."""
    a, b = await start_cluster(nursery, bus.url, tmp_path, 2)
    async with client.connect(a.url, a.public_key) as alice:
        room = await alice.create_room()
        async with client.connect(b.url, b.public_key, auto_resume=False) as bob:
            theirs = await bob.join(room.code)
            token, after = theirs.seat.token, theirs.seat.seq
        await until(lambda: not a.relay.cluster.proxies)
        bodies = [b"%03d" % i + bytes(3069) for i in range(60)]  # 180 KiB in all
        for body in bodies:
            await room.send(body)
        async with client.connect(b.url, b.public_key) as bob_again:
            back = await bob_again.resume(token, after=after)
            assert isinstance(back, client.Room)
            got = [d.body for d in await deliveries(back, len(bodies))]
            assert got == bodies
