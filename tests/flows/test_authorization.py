"""Every privileged operation refuses connections without the right live token.

Through a real relay and the SDK, so the typed errors are what a client really sees.
"""

from __future__ import annotations

import time

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from haven import client
from haven.client import errors
from haven.protocol import codes

from .helpers import Operator, connect, flows_extra, relay_with


async def group_room(info: object, operator: Operator, conn: client.Connection) -> client.Room:
    await conn.auth(operator.token("moderator", rooms=("*",)))
    return await conn.create_room(topic="circle", listed=True, premoderated=True)


async def test_a_peer_cannot_moderate(nursery: trio.Nursery, operator: Operator) -> None:
    info = await relay_with(nursery, flows_extra(operator))
    async with connect(info) as mod, connect(info) as peer:
        room = await group_room(info, operator, mod)
        mine = await peer.join(room.code)
        item = (await mine.send(b"hi")).item
        assert item is not None
        for action in (
            lambda: mine.approve(item),
            lambda: mine.edit(item, b"x"),
            lambda: mine.deny(item),
            mine.pending_list,
            lambda: mine.mute(room.alias),
            lambda: mine.remove(room.alias),
            mine.lock,
            mine.close,
            lambda: mine.announce(b"x"),
            lambda: mine.escalate(room.alias, "helpline"),
        ):
            with pytest.raises(errors.Unauthorized):
                await action()
        with pytest.raises(errors.Unauthorized):
            await peer.create_room(topic="mine", listed=True)
        with pytest.raises(errors.Unauthorized):
            await peer.take_next("helpline")
        with pytest.raises(errors.Unauthorized):
            await peer.duty("helpline")
        with pytest.raises(errors.Unauthorized):
            await peer.handoff_accept("42-aardvark-adroitness-baboon")
        # ... and nothing happened: the item still waits.
        assert [i.item for i in await room.pending_list()] == [item]


async def test_a_moderator_of_room_a_cannot_act_in_room_b(
    nursery: trio.Nursery, operator: Operator
) -> None:
    info = await relay_with(nursery, flows_extra(operator))
    async with connect(info) as owner, connect(info) as mod_a, connect(info) as peer:
        room_a = await group_room(info, operator, owner)
        room_b = await owner.create_room(topic="other circle", listed=True, premoderated=True)
        await mod_a.auth(operator.token("moderator", rooms=(room_a.code,)))
        a = await mod_a.join(room_a.code)
        assert a.moderator
        b = await mod_a.join(room_b.code)
        assert not b.moderator
        theirs = await peer.join(room_b.code)
        item = (await theirs.send(b"hello")).item
        assert item is not None
        for action in (
            lambda: b.approve(item),
            lambda: b.deny(item),
            b.pending_list,
            lambda: b.mute(theirs.alias),
            lambda: b.remove(theirs.alias),
            b.lock,
            b.close,
            lambda: b.announce(b"x"),
            lambda: b.escalate(theirs.alias, "helpline"),
        ):
            with pytest.raises(errors.Forbidden):
                await action()
        # Room A works; a room-scoped token may not create listed rooms.
        await a.lock()
        with pytest.raises(errors.Unauthorized):
            await mod_a.create_room(topic="new", listed=True)


async def test_staff_for_queue_x_cannot_take_from_queue_y(
    nursery: trio.Nursery, operator: Operator
) -> None:
    info = await relay_with(nursery, flows_extra(operator))
    async with connect(info) as staff, connect(info) as visitor:
        await staff.auth(operator.token("staff", queues=("male-survivors",)))
        await visitor.request_help("helpline")
        with pytest.raises(errors.Forbidden):
            await staff.take_next("helpline")
        with pytest.raises(errors.Forbidden):
            await staff.duty("helpline")
        with pytest.raises(errors.QueueEmpty):
            await staff.take_next("male-survivors")


async def test_responders_can_only_accept_handoffs(
    nursery: trio.Nursery, operator: Operator
) -> None:
    info = await relay_with(nursery, flows_extra(operator))
    async with connect(info) as responder, connect(info) as visitor, connect(info) as mod:
        await responder.auth(operator.token("responder"))
        await visitor.request_help("helpline")
        room = await group_room(info, operator, mod)
        mine = await responder.join(room.code)
        assert not mine.moderator
        with pytest.raises(errors.Forbidden):
            await responder.take_next("helpline")
        with pytest.raises(errors.Forbidden):
            await responder.duty("helpline")
        with pytest.raises(errors.Forbidden):
            await mine.lock()
        direct = await responder.create_room(kind="direct")
        with pytest.raises(errors.Forbidden):
            await direct.handoff_invite()
        with pytest.raises(errors.HandoffCodeInvalid):
            await responder.handoff_accept(codes.new_spoken_code())


async def test_expired_untrusted_and_invalid_tokens_are_refused(
    nursery: trio.Nursery, operator: Operator, autojump_clock: trio.testing.MockClock
) -> None:
    stranger = Operator("stranger", Ed25519PrivateKey.generate())
    info = await relay_with(nursery, flows_extra(operator), idle_timeout=100_000.0)
    async with connect(info) as conn, connect(info) as visitor:
        with pytest.raises(errors.TokenExpired):
            await conn.auth(operator.token("staff", queues=("*",), now=time.time() - 7200,
                                           ttl=3600))  # fmt: skip
        with pytest.raises(errors.TokenUntrusted):
            await conn.auth(stranger.token("staff", queues=("*",)))
        with pytest.raises(errors.TokenInvalid):
            await conn.auth("hv1.not.a-token")
        with pytest.raises(errors.TokenInvalid):
            await conn.auth(b"\xff" * 10)
        # A token that expires mid-shift stops working without a reconnect.
        await conn.auth(operator.token("staff", queues=("*",), ttl=120))
        await visitor.request_help("helpline")
        await conn.duty("helpline")
        await trio.sleep(130)
        with pytest.raises(errors.TokenExpired):
            await conn.take_next("helpline")


async def test_spoken_codes_cannot_be_brute_forced_by_concurrent_guessers(
    nursery: trio.Nursery, operator: Operator
) -> None:
    """Twenty responders guess at once, in the code's own bucket (the worst case).

    After five wrong guesses the code is locked for everyone, including the responder
    who finally presents the right one.
    """
    info = await relay_with(nursery, flows_extra(operator))
    async with connect(info) as staff, connect(info) as visitor, connect(info) as honest:
        await staff.auth(operator.token("staff", queues=("helpline",)))
        await honest.auth(operator.token("responder"))
        await visitor.request_help("helpline")
        staff_room = await staff.take_next("helpline")
        code = (await staff_room.handoff_invite()).code
        number = code.split("-")[0]
        outcomes: list[str] = []

        async def guesser(i: int) -> None:
            async with connect(info) as conn:
                await conn.auth(operator.token("responder"))
                for _j in range(3):
                    words = codes.new_spoken_code().split("-")[1:]
                    guess = "-".join([number, *words])
                    if guess == code:  # pragma: no cover - probability ~ 1e-6
                        continue
                    try:
                        await conn.handoff_accept(guess)
                    except errors.HandoffCodeInvalid:
                        outcomes.append("invalid")
                    except errors.HandoffCodeLocked:  # pragma: no cover - wrong guesses
                        outcomes.append("locked")

        async with trio.open_nursery() as guessers:
            for i in range(20):
                guessers.start_soon(guesser, i)
        assert outcomes.count("invalid") == 60
        with pytest.raises(errors.HandoffCodeLocked):
            await honest.handoff_accept(code)
        # The room was never entered: the visitor and staff are still alone.
        assert len(info.relay.hub.rooms[staff_room.code].seats) == 2
        # Staff issue a fresh code; it works.
        fresh = (await staff_room.handoff_invite()).code
        assert (await honest.handoff_accept(fresh)).code == staff_room.code
