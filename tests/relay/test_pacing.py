"""Replays and slow links are paced by the socket: nothing is queued whole.

Regressions from an attack run at default settings:

* a seat that missed 70 messages of 16 KiB could never resume: the relay queued the
  whole replay at once, passed ``outbound_backlog_bytes`` and closed the resuming
  connection with 4406 before ``joined``, on every retry;
* a member on a slow link (~256 kbit/s) in a busy room was dropped as a slow consumer
  by a burst within the sender's rate limit, then lost its seat for good.

Both now pull room events from the room's ring as the socket drains (``Hub.refill``).
"""

from __future__ import annotations

import trio
import trio.testing
from wsproto.events import BytesMessage, CloseConnection

from haven.protocol import codec
from haven.protocol import messages as m
from haven.protocol.errors import ErrorCode
from haven.protocol.session import close_code

from .conftest import Harness
from .wire import WireClient, req

BODY = 16 * 1024


async def send_paced(client: WireClient, code: str, bodies: list[bytes]) -> list[int]:
    """Send every body, waiting out the room's send budget when told to."""
    acks = []
    for body in bodies:
        while True:
            reply = await client.request(req(m.Send, room=code, body=body))
            if isinstance(reply, m.Error):
                assert reply.code == ErrorCode.RATE_LIMITED, reply
                assert reply.retry_after is not None
                await trio.sleep(reply.retry_after)
                continue
            assert isinstance(reply, m.Sent)
            assert reply.seq is not None
            acks.append(reply.seq)
            break
    return acks


async def test_a_replay_bigger_than_the_outbound_buffer_resumes(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    # Default outbound buffer (1 MiB); a ring large enough to hold 70 x 16 KiB.
    await harness.start(resume_buffer_bytes=4 * 1024 * 1024, room_burst_bytes=2 * 1024 * 1024)
    code, (a, b), (_, seat_b) = await harness.room(2)
    await b.abort()
    await a.event(m.Presence, where=lambda p: p.event == "away")
    bodies = [bytes([k]) * BODY for k in range(70)]
    acks = await send_paced(a, code, bodies)
    assert 70 * (BODY + 16) > 1024 * 1024  # the replay is bigger than the buffer

    back = await harness.client()
    joined = await back.call(req(m.Resume, token=seat_b.token, after=seat_b.seq), m.Joined)
    assert joined.seat.resumed
    got = []
    while len(got) < len(acks):
        ev = await back.event(m.Deliver, within=60)
        got.append((ev.seq, ev.body))
    assert [seq for seq, _ in got] == acks  # every one, once, in order
    assert [body for _, body in got] == bodies
    # And the seat is live again: the next message is pushed as usual.
    live = await send_paced(a, code, [b"after the replay"])
    assert (await back.event(m.Deliver)).seq == live[0]


async def test_a_slow_reader_keeps_its_seat_in_a_room_driven_flat_out(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    # Defaults: 1 MiB outbound buffer, 24 KiB/s room budget, 1 MiB ring.
    await harness.start()
    code, (sender, _other), _ = await harness.room(2)
    # A reader on a slow link: a tiny kernel receive buffer, 4 KiB read every 1/8 s
    # (32 KiB/s, about 256 kbit/s).
    slow = await WireClient.connect(harness.port, harness.info.public_key, rcvbuf=4096)
    harness.sockets.append(slow.sock)
    await slow.call(req(m.Join, room=code), m.Joined)
    count = 120
    bodies = [bytes([k % 251]) * (8 * 1024) for k in range(count)]
    got: list[int] = []
    acks: list[int] = []

    async def read_slowly() -> None:
        sock = slow.sock
        partial: list[bytes] = []
        while len(got) < count:
            data = await sock.stream.receive_some(4096)
            assert data, "the relay hung up on the slow reader"
            sock.ws.receive_data(bytes(data))
            for event in sock.ws.events():
                assert not isinstance(event, CloseConnection), event
                if isinstance(event, BytesMessage):
                    partial.append(bytes(event.data))
                    if event.message_finished:
                        frame = b"".join(partial)
                        partial.clear()
                        msg = codec.decode_server(slow.session.open_envelope(frame))
                        if isinstance(msg, m.Deliver):
                            got.append(msg.seq)
            await trio.sleep(1 / 8)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_slowly)
        acks.extend(await send_paced(sender, code, bodies))
    assert got == acks  # every message exactly once, in order, seat kept


async def test_a_reader_that_stops_reading_is_dropped_and_cannot_resume(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    await harness.start(room_rate_bytes_per_s=10**7, room_burst_bytes=10**7,
                        resume_buffer_bytes=2 * 10**7)
    code, (sender, _other), _ = await harness.room(2)
    stuck = await WireClient.connect(harness.port, harness.info.public_key, rcvbuf=4096)
    harness.sockets.append(stuck.sock)
    seat = (await stuck.call(req(m.Join, room=code), m.Joined)).seat
    body = b"x" * BODY
    await send_paced(sender, code, [body] * 300)  # more than the ring's 256 events
    assert await stuck.sock.wait_closed(within=120) == close_code(ErrorCode.SLOW_CONSUMER)
    again = await harness.client()
    error = await again.request(req(m.Resume, token=seat.token, after=seat.seq))
    assert isinstance(error, m.Error)
    assert error.code == ErrorCode.RESUME_FAILED
