"""Resume over real loopback: exactly once, in order, across abrupt drops; the grace window.

A drop here is the TCP connection vanishing with no WebSocket close, the way a phone
changing networks looks to the relay. Events the client had not yet *processed* when
its socket died (still in the kernel buffer, or parsed but not consumed) count as lost:
the resume point is the last sequence number the client really handled, and the relay
must make up exactly the rest.
"""

from __future__ import annotations

import random

import trio
import trio.testing

from haven.protocol import messages as m
from haven.protocol.errors import ErrorCode

from .conftest import Harness
from .wire import WireClient, req

MESSAGES_PER_SENDER = 30
DROPS = 5


async def keep_sending(client: WireClient, code: str, tag: str,
                       acks: dict[int, bytes]) -> None:
    """Send bodies one after another, yielding now and then so drops interleave."""
    for k in range(MESSAGES_PER_SENDER):
        body = f"{tag}-{k}".encode()
        sent = await client.call(req(m.Send, room=code, body=body), m.Sent)
        assert sent.seq is not None
        acks[sent.seq] = body
        if k % 3 == 0:
            await trio.sleep(0.05)


async def test_exactly_once_across_repeated_drops(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    await harness.start()
    code, (a, b, c), (seat_a, _, seat_c) = await harness.room(3)
    acks: dict[int, bytes] = {}
    seen: list[tuple[int, bytes]] = []
    token = seat_a.token
    last_seq = seat_c.seq  # a has handled the presence events up to c's arrival
    rng = random.Random(7)
    replayed = 0  # acked deliveries that can only have reached a through a resume

    async def dropper() -> None:
        nonlocal a, token, last_seq, replayed
        for _ in range(DROPS):
            # Handle a few deliveries, then lose the connection abruptly.
            for _ in range(rng.randint(1, 6)):
                ev = await a.event(m.Deliver)
                seen.append((ev.seq, ev.body))
                last_seq = ev.seq
            await a.abort()
            await trio.sleep(rng.choice([0, 0.5, 3]))
            old = token
            replayed += sum(1 for seq in list(acks) if seq > last_seq)
            a = await harness.client()
            joined = await a.call(req(m.Resume, token=old, after=last_seq), m.Joined)
            assert joined.seat.resumed
            assert joined.seat.room == code
            assert joined.seat.alias == seat_a.alias
            assert joined.seat.token != old, "the resume token must rotate"
            token = joined.seat.token
            # The old token is dead for everyone, including its former holder.
            stranger = await harness.client()
            await stranger.error(req(m.Resume, token=old, after=0), ErrorCode.RESUME_FAILED)
            await stranger.close()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(keep_sending, b, code, "b", acks)
        nursery.start_soon(keep_sending, c, code, "c", acks)
        nursery.start_soon(dropper)

    expected = [(seq, acks[seq]) for seq in sorted(acks)]
    while len(seen) < len(expected):
        ev = await a.event(m.Deliver)
        seen.append((ev.seq, ev.body))
    assert seen == expected, "every acked message exactly once, in order"
    assert replayed > DROPS, "the drops cost nothing: the test did not exercise replay"
    await a.call(lambda i: m.Ping(id=i), m.Pong)
    assert not [e for e in a.events if isinstance(e, m.Deliver)], "a duplicate was delivered"
    # The others saw the dropped member go away and come back, never leave.
    for other in (b, c):
        await other.call(lambda i: m.Ping(id=i), m.Pong)
        kinds = [e.event for e in other.events if isinstance(e, m.Presence)]
        assert kinds.count("away") == DROPS
        assert kinds.count("back") == DROPS
        assert "left" not in kinds


async def test_seat_released_after_grace_window(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    grace = 20
    await harness.start(resume_grace=grace)
    code, (early, late, stay), seats = await harness.room(3)
    await early.abort()
    await late.abort()
    for _ in range(2):
        await stay.event(m.Presence, where=lambda p: p.event == "away")
    await trio.sleep(grace - 3)
    # Still inside the window: the seat comes back.
    back = await harness.client()
    joined = await back.call(lambda i: m.Resume(id=i, token=seats[0].token, after=seats[0].seq),
                             m.Joined)
    assert joined.seat.resumed
    await stay.event(m.Presence, where=lambda p: p.event == "back")
    # The other held seat is released once its window ends, and the room is told.
    left = await stay.event(m.Presence, where=lambda p: p.event == "left")
    assert left.alias == seats[1].alias
    assert left.members == 2
    retry = await harness.client()
    await retry.error(lambda i: m.Resume(id=i, token=seats[1].token, after=seats[1].seq),
                      ErrorCode.RESUME_FAILED)
    # The resumed member is a full member again: it receives new messages.
    await stay.call(lambda i: m.Send(id=i, room=code, body=b"still here"), m.Sent)
    got = await back.event(m.Deliver)
    assert got.body == b"still here"


async def test_resume_fails_typed_when_the_buffer_overflowed(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    await harness.start(resume_buffer=8)
    code, (a, b), (seat_a, _) = await harness.room(2)
    await a.abort()
    await b.event(m.Presence, where=lambda p: p.event == "away")
    for k in range(10):
        await b.call(req(m.Send, room=code, body=b"%d" % k), m.Sent)
    again = await harness.client()
    err = await again.error(lambda i: m.Resume(id=i, token=seat_a.token, after=seat_a.seq),
                            ErrorCode.RESUME_FAILED)
    assert err.message  # says what to do (join again), never a silent gap
    left = await b.event(m.Presence, where=lambda p: p.event == "left")
    assert left.alias == seat_a.alias
    # The seat is gone for good: the token stays dead.
    await again.error(lambda i: m.Resume(id=i, token=seat_a.token, after=seat_a.seq),
                      ErrorCode.RESUME_FAILED)


async def test_resume_within_buffer_replays_in_order(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    await harness.start(resume_buffer=8)
    code, (a, b), (seat_a, seat_b) = await harness.room(2)
    await a.abort()
    bodies = [b"%d" % k for k in range(6)]
    for body in bodies:
        await b.call(req(m.Send, room=code, body=body), m.Sent)
    again = await harness.client()
    # a had handled everything up to b's arrival (harness.room reads those presences).
    joined = await again.call(lambda i: m.Resume(id=i, token=seat_a.token, after=seat_b.seq),
                              m.Joined)
    assert joined.seat.seq == seat_b.seq
    replayed = [await again.event(m.Deliver) for _ in bodies]
    assert [d.body for d in replayed] == bodies
    # b's presence events for a (away/back) are not a's own: a sees none about itself.
    await again.call(lambda i: m.Ping(id=i), m.Pong)
    assert not [e for e in again.events if isinstance(e, m.Presence)]


async def test_resume_survives_a_joined_lost_with_its_connection(harness: Harness) -> None:
    """A client whose resume reply (with the new token) died with the connection still
    holds only the token it presented: that token works once more while the seat is
    held, and every acked message still arrives exactly once."""
    info = await harness.start()
    code, (a, b), seats = await harness.room(2)
    token, after = seats[0].token, seats[1].seq
    await a.abort()
    await b.call(req(m.Send, room=code, body=b"one"), m.Sent)

    doomed = await harness.client()
    await doomed.send(m.Resume(id=doomed.next_id(), token=token, after=after))
    await trio.testing.wait_all_tasks_blocked()  # the relay resumed and rotated the token
    seat = info.relay.hub.tokens[token]
    never_seen = seat.token
    assert never_seen != token
    await doomed.abort()  # ... and the reply is lost with the connection
    await trio.testing.wait_all_tasks_blocked()
    assert seat.peer is None  # held again
    await b.call(req(m.Send, room=code, body=b"two"), m.Sent)

    again = await harness.client()
    joined = await again.call(req(m.Resume, token=token, after=after), m.Joined)
    assert joined.seat.resumed
    assert joined.seat.token not in (token, never_seen)
    assert never_seen not in info.relay.hub.tokens
    bodies = [(await again.event(m.Deliver)).body for _ in range(2)]
    assert bodies == [b"one", b"two"]
    # The token that never reached the client is gone; the one presented is dead while
    # the seat is connected.
    stranger = await harness.client()
    await stranger.error(req(m.Resume, token=token, after=0), ErrorCode.RESUME_FAILED)
