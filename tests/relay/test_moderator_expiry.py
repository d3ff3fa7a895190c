"""Issue 9 item 10: moderator power ends with the token and never passes through resume.

Over a real relay on loopback. Token expiry is reached by re-anchoring the relay's wall
clock (``anchor``), not by waiting. "Did not receive" is checked without timing: the relay
handles a connection's frames in order, so anything it sent the seat before answering a
later ``ping`` arrives before the ``pong``.
"""

from __future__ import annotations

import time
from typing import Any

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from haven.protocol import messages as m
from haven.relay import tokens
from tests.flows.helpers import anchor

from .conftest import Harness
from .wire import WireClient

KEY = Ed25519PrivateKey.generate()
T0 = time.time()


def extra() -> dict[str, Any]:
    return {"issuers": [{"name": "ops", "public_key": tokens.public_key_text(KEY.public_key())}]}


def mod_token(ttl: float) -> bytes:
    return tokens.issue(KEY, role="moderator", ttl=ttl, now=T0, rooms=("*",)).encode()


async def quiet(client: WireClient, kind: type[m.Message]) -> None:
    """Assert ``client`` was sent no ``kind`` before its next ``pong``."""
    await client.call(lambda i: m.Ping(id=i), m.Pong)
    assert not [e for e in client.events if isinstance(e, kind)], client.events


async def test_expired_moderator_loses_every_power(harness: Harness) -> None:
    info = await harness.start(extra=extra())
    anchor(info, T0)
    old = await harness.client()
    await old.call(lambda i: m.Auth(id=i, token=mod_token(600)), m.Authed)
    made = await old.call(
        lambda i: m.CreateRoom(id=i, kind="group", premoderated=True), m.Joined
    )
    room, old_alias = made.seat.room, made.seat.alias
    live = await harness.client()
    await live.call(lambda i: m.Auth(id=i, token=mod_token(7200)), m.Authed)
    await live.call(lambda i: m.Join(id=i, room=room), m.Joined)
    member = await harness.client()
    await member.call(lambda i: m.Join(id=i, room=room), m.Joined)

    anchor(info, T0 + 601)  # the old moderator's token has expired; the live one has not
    # Held messages go to the live moderator only.
    sent = await member.call(lambda i: m.Send(id=i, room=room, body=b"hello"), m.Sent)
    assert sent.item is not None
    await live.event(m.Pending)
    await quiet(old, m.Pending)
    # So do crisis alerts.
    await member.call(lambda i: m.Crisis(id=i, room=room), m.Ok)
    await live.event(m.CrisisAlert)
    await quiet(old, m.CrisisAlert)
    # Its own messages are pre-moderated now.
    own = await old.call(lambda i: m.Send(id=i, room=room, body=b"mine"), m.Sent)
    assert own.item is not None
    assert own.seq is None
    # And a live moderator can remove it.
    await live.call(lambda i: m.Remove(id=i, room=room, alias=old_alias), m.Ok)


async def test_resumed_moderator_seat_has_no_power_until_fresh_auth(harness: Harness) -> None:
    info = await harness.start(extra=extra())
    anchor(info, T0)
    first = await harness.client()
    await first.call(lambda i: m.Auth(id=i, token=mod_token(7200)), m.Authed)
    made = await first.call(
        lambda i: m.CreateRoom(id=i, kind="group", premoderated=True), m.Joined
    )
    room, seat_token, seq = made.seat.room, made.seat.token, made.seat.seq
    member = await harness.client()
    await member.call(lambda i: m.Join(id=i, room=room), m.Joined)
    await first.event(m.Presence)
    await first.abort()

    second = await harness.client()  # a new connection, no token
    resumed = await second.call(
        lambda i: m.Resume(id=i, token=seat_token, after=seq + 1), m.Joined
    )
    assert not resumed.seat.moderator  # the seat says what it can do now
    held = await second.call(lambda i: m.Send(id=i, room=room, body=b"x"), m.Sent)
    assert held.item is not None
    assert held.seq is None
    sent = await member.call(lambda i: m.Send(id=i, room=room, body=b"y"), m.Sent)
    assert sent.item is not None
    await member.call(lambda i: m.Crisis(id=i, room=room), m.Ok)
    await quiet(second, m.Pending)
    await quiet(second, m.CrisisAlert)

    await second.call(lambda i: m.Auth(id=i, token=mod_token(7200)), m.Authed)
    direct = await second.call(lambda i: m.Send(id=i, room=room, body=b"z"), m.Sent)
    assert direct.seq is not None
    assert direct.item is None
    with trio.fail_after(10):
        await member.call(lambda i: m.Send(id=i, room=room, body=b"w"), m.Sent)
        await second.event(m.Pending)
