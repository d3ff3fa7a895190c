"""Crisis escalation end to end: flag, alert by alias, priority lane, 1:1 room."""

from __future__ import annotations

import pytest
import trio

from haven.client import errors
from haven.protocol import messages as m

from .helpers import Operator, connect, flows_extra, next_event, relay_with


async def test_crisis_flag_escalation_and_priority_match(
    nursery: trio.Nursery, operator: Operator
) -> None:
    info = await relay_with(nursery, flows_extra(operator))
    async with (
        connect(info) as mod,
        connect(info) as peer,
        connect(info) as bystander,
        connect(info) as waiting,
        connect(info) as staff,
    ):
        await mod.auth(operator.token("moderator", rooms=("*",)))
        await staff.auth(operator.token("staff", queues=("helpline",)))
        room = await mod.create_room(topic="peer support", listed=True)
        mine = await peer.join(room.code)
        others = await bystander.join(room.code)
        ticket = await waiting.request_help("helpline")
        assert ticket.position == 1

        await mine.crisis()
        await mine.crisis()  # pressed twice: acknowledged, alerted once
        alert = await next_event(room.events(), m.CrisisAlert)
        assert alert == m.CrisisAlert(room=room.code, alias=mine.alias)
        with pytest.raises(errors.Unauthorized):
            await others.escalate(mine.alias, "helpline")
        with pytest.raises(errors.QueueNotFound):
            await room.escalate(mine.alias, "no-such-queue")
        with pytest.raises(errors.MemberNotFound):
            await room.escalate("nobody-here-00", "helpline")

        await room.escalate(mine.alias, "helpline")
        moved = await next_event(peer.events(), m.QueuePosition)
        assert (moved.queue, moved.position, moved.priority) == ("helpline", 1, True)
        assert moved.token is not None
        # The SDK turns the escalation into a resumable ticket of its own.
        escalated = peer.tickets["helpline"]
        assert escalated.priority
        assert escalated.token == moved.token
        assert (await next_event(ticket.events(), m.QueuePosition)).position == 2

        direct = await staff.take_next("helpline")
        matched = await escalated.room()
        assert matched.code == direct.code
        assert matched.seat.kind == "direct"
        assert direct.code in peer.rooms
        assert room.code in peer.rooms
        await peer.rooms[direct.code].send(b"I need to talk to someone")
        assert (await next_event(direct.events(), m.Deliver)).body == b"I need to talk to someone"
        assert (await next_event(ticket.events(), m.QueuePosition)).position == 1
        # Only one alert reached the moderator for the double press.
        await mine.send(b"marker")
        async for event in room.events():
            assert not isinstance(event, m.CrisisAlert)
            if isinstance(event, m.Deliver) and event.body == b"marker":
                break
