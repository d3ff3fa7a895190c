"""Issue 9 items 11, 12, 15 over a real relay on loopback.

* 12: every moderator- and staff-only request checks the caller's role before it looks
  the room (or queue) up, so a caller without a token gets the identical error for a
  live room and a nonexistent one: no liveness oracle.
* 15: ``authed`` carries the queues and rooms the token covers (protocol §7.4).
* 11: wrong handoff guesses are charged to every live code, whatever part they vary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from haven.protocol import codes
from haven.protocol import messages as m
from haven.protocol.errors import ErrorCode
from haven.relay import tokens

from .conftest import Harness

KEY = Ed25519PrivateKey.generate()


def extra() -> dict[str, Any]:
    return {
        "issuers": [{"name": "ops", "public_key": tokens.public_key_text(KEY.public_key())}],
        "queues": [{"name": "helpline"}],
    }


def token(role: str, **scopes: Any) -> bytes:
    return tokens.issue(KEY, role=role, ttl=3600, now=time.time(), **scopes).encode()


#: Every moderator- or staff-only request, built for a given room code.
ROOM_REQUESTS: list[Callable[[str], Callable[[int], m.Message]]] = [
    lambda r: lambda i: m.PendingList(id=i, room=r),
    lambda r: lambda i: m.Approve(id=i, room=r, item=1),
    lambda r: lambda i: m.Edit(id=i, room=r, item=1, body=b"x"),
    lambda r: lambda i: m.Deny(id=i, room=r, item=1),
    lambda r: lambda i: m.Mute(id=i, room=r, alias="someone"),
    lambda r: lambda i: m.Remove(id=i, room=r, alias="someone"),
    lambda r: lambda i: m.Lock(id=i, room=r),
    lambda r: lambda i: m.CloseRoom(id=i, room=r),
    lambda r: lambda i: m.Announce(id=i, room=r, body=b"x"),
    lambda r: lambda i: m.Escalate(id=i, room=r, alias="someone", queue="helpline"),
    lambda r: lambda i: m.HandoffInvite(id=i, room=r),
]

QUEUE_REQUESTS: list[Callable[[str], Callable[[int], m.Message]]] = [
    lambda q: lambda i: m.Duty(id=i, queue=q),
    lambda q: lambda i: m.TakeNext(id=i, queue=q),
]


def shape(reply: m.Message) -> tuple[Any, ...]:
    assert isinstance(reply, m.Error), reply
    return (reply.code, reply.message, reply.retry_after)


async def test_no_token_caller_learns_nothing_about_room_liveness(harness: Harness) -> None:
    await harness.start(extra=extra())
    owner = await harness.client()
    await owner.call(lambda i: m.Auth(id=i, token=token("moderator", rooms=("*",))), m.Authed)
    live = (await owner.call(lambda i: m.CreateRoom(id=i, kind="group"), m.Joined)).seat.room
    # A member without a token, inside the live room, and an outsider.
    member = await harness.client()
    await member.call(lambda i: m.Join(id=i, room=live), m.Joined)
    outsider = await harness.client()
    ended = await harness.client()
    gone = (await ended.call(lambda i: m.CreateRoom(id=i, kind="group"), m.Joined)).seat.room
    await ended.call(lambda i: m.Leave(id=i, room=gone), m.Left)
    unknown = codes.new_room_code()
    for build in ROOM_REQUESTS:
        for caller in (member, outsider):
            seen = {shape(await caller.request(build(code))) for code in (live, gone, unknown)}
            assert len(seen) == 1, (build(live)(1), seen)
            assert next(iter(seen))[0] == ErrorCode.UNAUTHORIZED
    for qbuild in QUEUE_REQUESTS:
        seen = {shape(await outsider.request(qbuild(q))) for q in ("helpline", "no-such-queue")}
        assert len(seen) == 1, seen
        assert next(iter(seen))[0] == ErrorCode.UNAUTHORIZED
    # The live room is untouched by all of that.
    await member.call(lambda i: m.Send(id=i, room=live, body=b"still here"), m.Sent)


async def test_authed_carries_what_the_token_covers(harness: Harness) -> None:
    await harness.start(extra=extra())
    conn = await harness.client()
    staff = await conn.call(
        lambda i: m.Auth(id=i, token=token("staff", queues=("helpline", "other"))), m.Authed
    )
    assert (staff.role, staff.queues, staff.rooms) == ("staff", ("helpline", "other"), ())
    mod = await conn.call(
        lambda i: m.Auth(id=i, token=token("moderator", rooms=("evening-circle", "*"))),
        m.Authed,
    )
    assert (mod.role, mod.queues, mod.rooms) == ("moderator", (), ("evening-circle", "*"))


async def test_handoff_code_locks_after_five_wrong_guesses_of_any_number(
    nursery: Any,
) -> None:
    """Item 11: guesses spread over the 99 number parts still lock the code after 5."""
    from haven import client
    from haven.client import errors
    from tests.conftest import start_relay

    info = await start_relay(nursery, extra=extra())
    async with (
        client.connect(info.url, info.key_text) as staff,
        client.connect(info.url, info.key_text) as visitor,
        client.connect(info.url, info.key_text) as guesser,
        client.connect(info.url, info.key_text) as responder,
    ):
        await staff.auth(token("staff", queues=("helpline",)))
        await visitor.request_help("helpline")
        room = await staff.take_next("helpline")
        code = (await room.handoff_invite()).code
        number = int(code.split("-")[0])
        await guesser.auth(token("responder"))
        for k in range(codes.SPOKEN_CODE_MAX_ATTEMPTS):
            other = 1 + (number + k) % codes.SPOKEN_CODE_MAX_NUMBER  # never the code's number
            guess = "-".join([str(other), *codes.new_spoken_code().split("-")[1:]])
            with pytest.raises(errors.HavenRequestError) as wrong:
                await guesser.handoff_accept(guess)
            assert wrong.value.code == ErrorCode.HANDOFF_CODE_INVALID
        await responder.auth(token("responder"))
        with pytest.raises(errors.HavenRequestError) as locked:
            await responder.handoff_accept(code)
        assert locked.value.code == ErrorCode.HANDOFF_CODE_LOCKED


async def _auth_reply(harness: Harness, text: bytes) -> m.Message:
    conn = await harness.client()
    return await conn.request(lambda i: m.Auth(id=i, token=text))


def aud_token(audience: str | None) -> bytes:
    return tokens.issue(
        KEY, role="staff", ttl=3600, now=time.time(), queues=("helpline",), audience=audience
    ).encode()


async def test_a_relay_with_an_audience_accepts_only_its_own_tokens(harness: Harness) -> None:
    """Item 13: the same issuer's token for another deployment is refused."""
    await harness.start(extra=extra(), token_audience="north")
    assert isinstance(await _auth_reply(harness, aud_token("north")), m.Authed)
    for other in ("south", None):
        reply = await _auth_reply(harness, aud_token(other))
        assert isinstance(reply, m.Error), reply
        assert reply.code == ErrorCode.TOKEN_UNTRUSTED


async def test_a_relay_without_an_audience_refuses_bound_tokens(harness: Harness) -> None:
    await harness.start(extra=extra())
    assert isinstance(await _auth_reply(harness, aud_token(None)), m.Authed)
    reply = await _auth_reply(harness, aud_token("north"))
    assert isinstance(reply, m.Error), reply
    assert reply.code == ErrorCode.TOKEN_UNTRUSTED
