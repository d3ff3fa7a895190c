"""1:1 helpline end to end through a real relay and the SDK: queue, match, handoff."""

from __future__ import annotations

import pytest
import trio

from haven.client import errors
from haven.protocol import messages as m
from haven.protocol.codes import SPOKEN_CODE_TTL_S, parse_spoken_code

from .helpers import Operator, connect, flows_extra, next_event, relay_with


async def test_visitor_waits_sees_the_line_move_and_is_taken(
    nursery: trio.Nursery, operator: Operator
) -> None:
    info = await relay_with(nursery, flows_extra(operator))
    async with (
        connect(info) as staff,
        connect(info) as first,
        connect(info) as second,
        connect(info) as third,
    ):
        assert await first.staff_count("helpline") == 0
        authed = await staff.auth(operator.token("staff", queues=("helpline",)))
        assert authed.role == "staff"
        await staff.duty("helpline")
        assert await first.staff_count("helpline") == 1
        t1 = await first.request_help("helpline")
        t2 = await second.request_help("helpline")
        t3 = await third.request_help("helpline")
        assert (t1.position, t2.position, t3.position) == (1, 2, 3)
        await t2.cancel()
        moved = await next_event(t3.events(), m.QueuePosition)
        assert moved.position == 2
        assert t3.position == 2

        room = await staff.take_next("helpline")
        assert room.seat.kind == "direct"
        assert room.seat.members == 2
        visitor_room = await t1.room()
        assert visitor_room.code == room.code
        assert visitor_room.alias != room.alias
        assert (await next_event(t3.events(), m.QueuePosition)).position == 1

        await visitor_room.send(b"I don't know where to start")
        got = await next_event(room.events(), m.Deliver)
        assert (got.sender, got.body) == (visitor_room.alias, b"I don't know where to start")
        await room.send(b"that's okay, take your time")
        got = await next_event(visitor_room.events(), m.Deliver)
        assert got.body == b"that's okay, take your time"

        # The second staff-taken visitor lands in their own room.
        other = await staff.take_next("helpline")
        assert other.code != room.code
        assert (await t3.room()).code == other.code
        with pytest.raises(errors.QueueEmpty):
            await staff.take_next("helpline")


async def test_full_queue_and_unknown_queue_are_typed(
    nursery: trio.Nursery, operator: Operator
) -> None:
    info = await relay_with(nursery, flows_extra(operator))
    async with connect(info) as a, connect(info) as b:
        for _ in range(3):
            async with connect(info) as visitor:
                await visitor.request_help("helpline")
                # Closing without cancel is a drop: the place is held for the grace window.
        await a.request_help("male-survivors")
        with pytest.raises(errors.QueueFull) as full:
            await b.request_help("helpline")
        assert full.value.retry_after == 90
        with pytest.raises(errors.QueueNotFound):
            await b.request_help("nobody-here")
        with pytest.raises(errors.NotQueued):
            await b.cancel_help("helpline")


async def test_a_dropped_visitor_resumes_its_place(
    nursery: trio.Nursery, operator: Operator, autojump_clock: trio.testing.MockClock
) -> None:
    info = await relay_with(nursery, flows_extra(operator))
    async with connect(info) as staff, connect(info) as visitor, connect(info) as later:
        await staff.auth(operator.token("staff", queues=("helpline",)))
        ticket = await visitor.request_help("helpline")
        behind = await later.request_help("helpline")
        old_token = ticket.token
        # The relay drops the visitor's connection; the SDK reconnects and resumes.
        for conn in list(info.relay.connections):
            if conn.peer is not None and "helpline" in conn.peer.tickets and (
                conn.peer.tickets["helpline"].token == old_token
            ):
                conn.close(4406, "test: dropped")
        with trio.fail_after(30):
            # The SDK offers no event for "resumed"; poll its counter (virtual time).
            while visitor.resumes < 1 or not visitor.connected:  # noqa: ASYNC110
                await trio.sleep(0.05)
        assert ticket.token != old_token
        assert ticket.position == 1
        assert behind.position == 2
        room = await staff.take_next("helpline")
        assert (await ticket.room()).code == room.code


async def test_warm_handoff_to_a_responder(
    nursery: trio.Nursery, operator: Operator
) -> None:
    info = await relay_with(nursery, flows_extra(operator))
    async with connect(info) as staff, connect(info) as visitor, connect(info) as responder:
        await staff.auth(operator.token("staff", queues=("helpline",)))
        await responder.auth(operator.token("responder"))
        ticket = await visitor.request_help("helpline")
        staff_room = await staff.take_next("helpline")
        room = await ticket.room()

        invite = await staff_room.handoff_invite()
        assert invite.room == room.code
        assert invite.expires_in == SPOKEN_CODE_TTL_S
        assert parse_spoken_code(invite.code) == invite.code
        spoken = invite.code.replace("-", " ").upper()  # as typed after a phone call
        theirs = await responder.handoff_accept(spoken)
        assert theirs.code == room.code
        assert theirs.seat.members == 3
        joined = await next_event(room.events(), m.Presence)
        assert (joined.event, joined.alias, joined.members) == ("joined", theirs.alias, 3)

        await staff_room.leave()
        left = await next_event(room.events(), m.Presence)
        assert (left.event, left.alias, left.members) == ("left", staff_room.alias, 2)
        await room.send(b"still here?")
        assert (await next_event(theirs.events(), m.Deliver)).body == b"still here?"

        # One-time: the code is spent.
        async with connect(info) as another:
            await another.auth(operator.token("responder"))
            with pytest.raises(errors.HandoffCodeInvalid):
                await another.handoff_accept(invite.code)


async def test_handoff_code_expires_and_direct_room_admits_one_extra(
    nursery: trio.Nursery, operator: Operator, autojump_clock: trio.testing.MockClock
) -> None:
    info = await relay_with(nursery, flows_extra(operator), resume_grace=3600.0)
    async with (
        connect(info) as staff,
        connect(info) as visitor,
        connect(info) as r1,
        connect(info) as r2,
    ):
        await staff.auth(operator.token("staff", queues=("helpline",)))
        for r in (r1, r2):
            await r.auth(operator.token("responder"))
        await visitor.request_help("helpline")
        staff_room = await staff.take_next("helpline")
        stale = await staff_room.handoff_invite()
        await trio.sleep(SPOKEN_CODE_TTL_S + 2)
        with pytest.raises(errors.HandoffCodeInvalid):
            await r1.handoff_accept(stale.code)
        await r1.handoff_accept((await staff_room.handoff_invite()).code)
        with pytest.raises(errors.RoomFull):
            await r2.handoff_accept((await staff_room.handoff_invite()).code)
