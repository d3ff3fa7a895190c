"""The helpline flows across relay processes: intake queues, staff, warm handoff,
moderation, crisis escalation, scheduled rooms and the directory, with every party on a
different process of one cluster (real relays, real nats-server, the Python SDK)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from haven import client
from haven.client import errors
from haven.protocol import codes
from haven.protocol import messages as m
from haven.relay import flows
from tests.flows.helpers import Operator, flows_extra, next_event

from .clusterkit import start_cluster, until
from .natskit import NatsServer, nats_server


@pytest.fixture
def operator() -> Operator:
    return Operator("central", Ed25519PrivateKey.generate())


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[NatsServer]:
    with nats_server(tmp_path) as s:
        yield s


def connect(info: Any) -> Any:
    return client.connect(info.url, info.key_text)


async def cluster_roles(nursery: trio.Nursery, bus: NatsServer, tmp_path: Path,
                        operator: Operator, **sections: Any) -> tuple[Any, Any, Any]:  # fmt: skip
    """Three processes: (the leader, which holds the shared space; two others)."""
    infos = await start_cluster(nursery, bus.url, tmp_path, 3,
                                extra=flows_extra(operator, **sections))  # fmt: skip
    leader = infos[0].relay.cluster.leader()
    first = next(i for i in infos if i.relay.cluster.tag == leader)
    others = [i for i in infos if i is not first]
    return first, others[0], others[1]


async def test_a_queue_served_by_staff_on_another_process(
    nursery: trio.Nursery, bus: NatsServer, tmp_path: Path, operator: Operator
) -> None:
    lead, b, c = await cluster_roles(nursery, bus, tmp_path, operator)
    async with connect(c) as staff, connect(b) as first, connect(c) as second, connect(
        lead
    ) as third:
        assert await first.staff_count("helpline") == 0
        await staff.auth(operator.token("staff", queues=("helpline",)))
        await staff.duty("helpline")
        assert await first.staff_count("helpline") == 1  # one queue, seen from B
        t1 = await first.request_help("helpline")
        t2 = await second.request_help("helpline")
        t3 = await third.request_help("helpline")
        assert (t1.position, t2.position, t3.position) == (1, 2, 3)  # one line
        await t2.cancel()
        assert (await next_event(t3.events(), m.QueuePosition)).position == 2

        room = await staff.take_next("helpline")
        visitor_room = await t1.room()
        assert visitor_room.code == room.code
        assert (await next_event(t3.events(), m.QueuePosition)).position == 1
        await visitor_room.send(b"I don't know where to start")
        got = await next_event(room.events(), m.Deliver)
        assert got.body == b"I don't know where to start"
        await room.send(b"take your time")
        assert (await next_event(visitor_room.events(), m.Deliver)).body == b"take your time"
        # The room was made by the queue's process; B and C only relay for their clients.
        assert room.code in lead.relay.hub.rooms
        assert room.code not in b.relay.hub.rooms
        assert room.code not in c.relay.hub.rooms

        # Warm handoff: the responder is on a third process.
        async with connect(b) as responder:
            await responder.auth(operator.token("responder"))
            invite = await room.handoff_invite()
            theirs = await responder.handoff_accept(invite.code)
            assert theirs.code == room.code
            assert theirs.seat.members == 3
            with pytest.raises(errors.HandoffCodeInvalid):
                await responder.handoff_accept(invite.code)  # one-time, cluster-wide


async def test_moderation_and_crisis_escalation_across_processes(
    nursery: trio.Nursery, bus: NatsServer, tmp_path: Path, operator: Operator
) -> None:
    lead, b, c = await cluster_roles(nursery, bus, tmp_path, operator)
    async with (
        connect(b) as mod,
        connect(c) as peer,
        connect(lead) as bystander,
        connect(c) as staff,
    ):
        await mod.auth(operator.token("moderator", rooms=("*",)))
        await staff.auth(operator.token("staff", queues=("helpline",)))
        room = await mod.create_room(topic="peer support")  # homed on B
        assert room.code in b.relay.hub.rooms
        assert room.moderator  # claims verified on B count on the room's home
        mine = await peer.join(room.code)
        others = await bystander.join(room.code)

        await room.mute(others.alias)
        assert (await next_event(mine.events(), m.Moderation)).action == "muted"
        with pytest.raises(errors.Muted):
            await others.send(b"hello?")
        with pytest.raises(errors.Unauthorized):
            await others.escalate(mine.alias, "helpline")

        await mine.crisis()
        alert = await next_event(room.events(), m.CrisisAlert)
        assert alert.alias == mine.alias
        # The queue lives on the leader; the member's connection is on C; the room on B.
        await room.escalate(mine.alias, "helpline")
        moved = await next_event(peer.events(), m.QueuePosition)
        assert (moved.queue, moved.position, moved.priority) == ("helpline", 1, True)
        escalated = peer.tickets["helpline"]
        direct = await staff.take_next("helpline")
        matched = await escalated.room()
        assert matched.code == direct.code
        assert direct.code in lead.relay.hub.rooms
        assert room.code in peer.rooms  # the member keeps the group seat
        with pytest.raises(errors.QueueNotFound):
            await room.escalate(mine.alias, "no-such-queue")


async def test_listed_rooms_and_the_directory_are_one_for_the_cluster(
    nursery: trio.Nursery, bus: NatsServer, tmp_path: Path, operator: Operator
) -> None:
    lead, b, c = await cluster_roles(nursery, bus, tmp_path, operator)
    async with connect(b) as mod, connect(c) as visitor:
        await mod.auth(operator.token("moderator", rooms=("*",)))
        listed = await mod.create_room(topic="open circle", listed=True)
        assert listed.code in lead.relay.hub.rooms  # listed rooms live on the leader
        rooms = await visitor.directory()
        assert [r.room for r in rooms if r.open] == [listed.code]
        joined = await visitor.join(listed.code)
        await joined.send(b"hi all")
        assert (await next_event(listed.events(), m.Deliver)).body == b"hi all"


async def test_a_scheduled_room_opens_once_on_the_leader(
    nursery: trio.Nursery, bus: NatsServer, tmp_path: Path, operator: Operator
) -> None:
    code = codes.new_room_code()
    scheduled = {"name": "sunday-circle", "topic": "Sunday circle", "days": ["sunday"],
                 "start": "13:00", "end": "15:00", "timezone": "America/New_York",
                 "code": code}  # fmt: skip
    lead, b, c = await cluster_roles(nursery, bus, tmp_path, operator, rooms=[scheduled])
    sunday_2pm = dt.datetime(2024, 11, 10, 14, tzinfo=ZoneInfo("America/New_York"))
    for info in (lead, b, c):  # every process's calendar: inside the window
        flows.installed(info.relay.hub).clock.set(sunday_2pm.timestamp(), trio.current_time())
    await until(lambda: code in lead.relay.hub.rooms)
    async with connect(b) as one, connect(c) as two:
        listed = [r for r in await one.directory() if r.room == code]
        assert [r.open for r in listed] == [True]
        mine, theirs = await one.join(code), await two.join(code)
        await mine.send(b"hello from B")
        assert (await next_event(theirs.events(), m.Deliver)).body == b"hello from B"
    assert code not in b.relay.hub.rooms  # opened once, on the leader
    assert code not in c.relay.hub.rooms


async def test_proof_of_work_asked_by_the_leader_is_solved_for_the_clients_own_seed(
    nursery: trio.Nursery, bus: NatsServer, tmp_path: Path, operator: Operator
) -> None:
    lead, b, _ = await cluster_roles(nursery, bus, tmp_path, operator)
    lead.relay.hub.pow_difficulty = 8  # the leader is under load; B is not
    async with connect(b) as visitor:
        assert visitor.challenge.difficulty == 0  # B asked for none at the handshake
        seed = visitor.challenge.seed
        ticket = await visitor.request_help("helpline")  # refused, solved, retried
        assert ticket.position == 1
        assert visitor.challenge.difficulty == 8
        # One seed per connection, whichever process checks: the leader asked for the
        # proof against the seed B gave, so a proof made for one process holds at both.
        assert visitor.challenge.seed == seed
