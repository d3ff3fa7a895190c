"""Moderated group rooms end to end: pre-moderation, mute, remove, lock, close, rules."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from haven import client
from haven.client import errors
from haven.protocol import messages as m

from .helpers import Operator, connect, flows_extra, next_event, relay_with

RULES = "Be kind. What is shared here stays here."


async def moderated_room(
    conn: client.Connection, operator: Operator, **kwargs: Any
) -> client.Room:
    await conn.auth(operator.token("moderator", rooms=("*",)))
    return await conn.create_room(
        topic="evening circle", listed=True, premoderated=True, rules=RULES, **kwargs
    )


async def events_until(
    room: client.Room, body: bytes | None, presence: str | None = None
) -> list[Any]:
    """Every event of ``room`` up to the delivery of ``body`` (or a presence event)."""
    seen: list[Any] = []
    with trio.fail_after(10):
        async for event in room.events():
            seen.append(event)
            if isinstance(event, m.Deliver) and event.body == body:
                return seen
            if isinstance(event, m.Presence) and event.event == presence:
                return seen
    raise AssertionError("stream ended")


async def test_premoderation_approve_edit_deny(nursery: trio.Nursery, operator: Operator) -> None:
    info = await relay_with(nursery, flows_extra(operator))
    async with connect(info) as mod, connect(info) as alice, connect(info) as bob:
        room = await moderated_room(mod, operator)
        assert room.moderator
        listed = await alice.directory()
        assert [(r.room, r.topic, r.premoderated) for r in listed] == [
            (room.code, "evening circle", True)
        ]
        a = await alice.join(room.code)
        b = await bob.join(room.code)
        assert a.seat.rules == RULES
        assert a.seat.premoderated
        assert not a.moderator

        sent = await a.send(b"first message")
        assert sent.seq is None
        assert sent.item is not None
        pending = await next_event(room.events(), m.Pending)
        assert (pending.item.item, pending.item.alias, pending.item.body) == (
            sent.item, a.alias, b"first message"
        )
        assert [i.item for i in await room.pending_list()] == [sent.item]
        await room.approve(pending)
        for stream in (a.events(), b.events()):
            got = await next_event(stream, m.Deliver)
            assert (got.sender, got.body, got.edited) == (a.alias, b"first message", False)

        second = await b.send(b"my full name is ...")
        await room.edit(second.item, b"[name removed by a moderator]")
        got = await next_event(a.events(), m.Deliver)
        edited = (b.alias, b"[name removed by a moderator]", True)
        assert (got.sender, got.body, got.edited) == edited

        third = await a.send(b"something harmful")
        await room.deny(third.item, reason="please keep to the ground rules")
        denied = await next_event(a.events(), m.Denied)
        assert (denied.item, denied.reason) == (third.item, "please keep to the ground rules")
        with pytest.raises(errors.ItemNotFound):
            await room.approve(third.item)
        # Bob was told nothing about the denied message.
        await room.send(b"moderator marker")
        seen = await events_until(b, b"moderator marker")
        assert [e.body for e in seen if isinstance(e, m.Deliver)] == [
            b"[name removed by a moderator]", b"moderator marker"
        ]
        assert not [e for e in seen if isinstance(e, m.Denied | m.Pending)]
        assert await room.pending_list() == []


async def test_pending_items_are_bounded_and_expire(
    nursery: trio.Nursery, operator: Operator, autojump_clock: trio.testing.MockClock
) -> None:
    extra = flows_extra(
        operator, moderation={"max_pending_per_author": 2, "pending_ttl": 120}
    )
    info = await relay_with(nursery, extra, resume_grace=3600.0, room_idle_ttl=36000.0)
    async with connect(info) as mod, connect(info) as alice:
        room = await moderated_room(mod, operator)
        a = await alice.join(room.code)
        first = await a.send(b"one")
        await a.send(b"two")
        with pytest.raises(errors.PendingFull) as full:
            await a.send(b"three")
        assert full.value.retry_after is not None
        assert 0 < full.value.retry_after <= 120
        await trio.sleep(125)
        denied = await next_event(a.events(), m.Denied)
        assert denied.item == first.item
        assert denied.reason is not None
        assert "expired" in denied.reason
        assert await room.pending_list() == []
        assert (await a.send(b"three")).item is not None


async def test_mute_remove_lock_announce_close(nursery: trio.Nursery, operator: Operator) -> None:
    info = await relay_with(nursery, flows_extra(operator))
    async with (
        connect(info) as mod,
        connect(info) as alice,
        connect(info) as bob,
        connect(info) as carol,
    ):
        await mod.auth(operator.token("moderator", rooms=("*",)))
        room = await mod.create_room(topic="open circle", listed=True, rules=RULES)
        a = await alice.join(room.code)
        b = await bob.join(room.code)

        await room.mute(a.alias)
        muted = await next_event(b.events(), m.Moderation)
        assert (muted.action, muted.alias) == ("muted", a.alias)
        with pytest.raises(errors.Muted):
            await a.send(b"hello?")
        await room.mute(a.alias, muted=False)
        assert (await next_event(b.events(), m.Moderation)).action == "unmuted"
        await a.send(b"thanks")

        token = b.seat.token
        await room.remove(b.alias)
        assert isinstance(await next_event(b.events(), m.Removed), m.Removed)
        seen = await events_until(a, None, presence="removed")
        assert (seen[-1].event, seen[-1].alias) == ("removed", b.alias)
        with pytest.raises(errors.RemovedError):
            await bob.request(lambda i: m.Resume(id=i, token=token, after=0))
        with pytest.raises(errors.RemovedError):
            await bob.join(room.code)
        with pytest.raises(errors.Forbidden):
            await room.remove(room.alias)  # moderators cannot be removed

        await room.lock()
        assert (await next_event(a.events(), m.Moderation)).action == "locked"
        with pytest.raises(errors.RoomLocked):
            await carol.join(room.code)
        await room.lock(False)
        c = await carol.join(room.code)
        assert c.seat.rules == RULES

        sent = await room.announce(b"ten minutes left")
        ann = await next_event(c.events(), m.Announcement)
        assert (ann.body, ann.seq) == (b"ten minutes left", sent.seq)

        await room.close()
        for r in (a, c):
            closed = await next_event(r.events(), m.RoomClosed)
            assert closed.reason == "closed"
        assert room.code not in info.relay.hub.rooms
