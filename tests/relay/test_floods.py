"""Floods that cost the relay only what the rules allow, and end only the flooder.

Regressions from an attack run: zero-length continuation frames grew the relay without
bound (only payload bytes were counted); a request re-sent with the same id was answered
forever without being charged; refused requests were answered at any rate. Each test
keeps a healthy room next to the flooder and checks it still works afterwards.
"""

from __future__ import annotations

import trio
from wsproto.frame_protocol import Opcode

from haven.protocol import codec
from haven.protocol import messages as m
from haven.protocol.errors import ErrorCode
from haven.protocol.session import close_code
from haven.relay.connection import MAX_FRAGMENTS
from haven.relay.hub import MAX_STRIKES

from .conftest import Harness
from .test_hostile import setup
from .wire import Closed

CLOSE_TOO_BIG = 1009
CLOSE_RATE = close_code(ErrorCode.RATE_LIMITED)


def _frame(opcode: Opcode, payload: bytes, fin: bool) -> bytes:
    """One masked client frame (mask of zeros: the payload stays as it is)."""
    head = bytes(((0x80 if fin else 0) | opcode, 0x80 | len(payload))) + b"\0\0\0\0"
    assert len(payload) < 126
    return head + payload


async def test_empty_continuation_frames_close_the_flooder(harness: Harness) -> None:
    healthy = await setup(harness)
    flooder = await harness.client()
    start = _frame(Opcode.BINARY, b"", fin=False)
    empty = _frame(Opcode.CONTINUATION, b"", fin=False)
    # Far more empty fragments than allowed, in one write: the relay must not keep them.
    await flooder.sock.send_raw(start + empty * (MAX_FRAGMENTS * 50))
    assert await flooder.sock.wait_closed(within=20) == CLOSE_TOO_BIG
    await healthy.check()


async def test_few_fragments_still_make_a_message(harness: Harness) -> None:
    """A message in a few fragments is still one message (the cap is far above that)."""
    await harness.start()
    client = await harness.client()
    sealed = client.session.seal_envelope(codec.encode(m.Ping(id=1)))
    client.last_id = 1
    pieces = [sealed[i : i + 100] for i in range(0, len(sealed), 100)]
    assert 1 < len(pieces) <= MAX_FRAGMENTS
    data = b""
    for k, piece in enumerate(pieces):
        opcode = Opcode.BINARY if k == 0 else Opcode.CONTINUATION
        fin = k == len(pieces) - 1
        data += _frame(opcode, piece, fin)
    await client.sock.send_raw(data)
    assert isinstance(await client.reply(1), m.Pong)


async def test_ping_flood_is_charged_and_closed(harness: Harness) -> None:
    healthy = await setup(harness)
    flooder = await harness.client()
    flooder.sock.answer_pings = False
    burst = flooder.welcome.limits.burst
    ping = _frame(Opcode.PING, b"x", fin=True)
    await flooder.sock.send_raw(ping * (burst + MAX_STRIKES + 10))
    assert await flooder.sock.wait_closed(within=20) == CLOSE_RATE
    await healthy.check()


async def test_reused_id_is_charged_then_closed(harness: Harness) -> None:
    healthy = await setup(harness)
    flooder = await harness.client()
    burst = flooder.welcome.limits.burst
    first = await flooder.call(lambda i: m.Ping(id=i), m.Pong)
    assert first is not None
    envelope = codec.encode(m.Ping(id=flooder.last_id))  # the same id again and again
    codes: list[int] = []
    closed: Closed | None = None
    for _ in range(burst + MAX_STRIKES + 10):
        try:
            await flooder.send_envelope(envelope)
            msg = await flooder.receive(within=20)
        except Closed as exc:
            closed = exc
            break
        assert isinstance(msg, m.Error)
        codes.append(msg.code)
    if closed is None:
        closed = Closed(await flooder.sock.wait_closed(within=20))
    assert closed.code == CLOSE_RATE
    # Charged: the bucket ran dry after about one burst of reused ids.
    assert ErrorCode.BAD_REQUEST_ID in codes
    assert ErrorCode.RATE_LIMITED in codes
    assert codes.count(ErrorCode.BAD_REQUEST_ID) <= burst + 10  # a few tokens refill meanwhile
    assert len(codes) <= burst + MAX_STRIKES + 10  # a few tokens refill meanwhile
    await healthy.check()


async def test_a_client_that_backs_off_is_never_closed(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    await harness.start(rate_per_s=10, rate_burst=5)
    client = await harness.client()
    refused = 0
    for _ in range(60):
        rid = client.next_id()
        await client.send(m.Ping(id=rid))
        reply = await client.reply(rid)
        if isinstance(reply, m.Error):
            assert reply.code == ErrorCode.RATE_LIMITED
            assert reply.retry_after is not None
            refused += 1
            await trio.sleep(reply.retry_after)
    assert refused > 0
    assert isinstance(await client.call(lambda i: m.Ping(id=i), m.Pong), m.Pong)

