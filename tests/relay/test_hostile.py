"""Hostile clients: each misbehaviour ends (at most) that one connection, nothing else.

Every test runs a healthy two-member room next to the hostile client and checks, after
the attack, that the room still carries messages both ways. The handshake timeout is
set far beyond the waits here, so a close observed in time came from the relay noticing
the misbehaviour, not from a timer.
"""

from __future__ import annotations

import os

import msgpack
import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from haven.protocol import codec
from haven.protocol import messages as m
from haven.protocol.errors import ErrorCode
from haven.protocol.noise import public_bytes
from haven.protocol.session import close_code

from .conftest import Harness
from .wire import Closed, RawSocket, WireClient, req

HANDSHAKE_FAILED_CLOSE = close_code(ErrorCode.HANDSHAKE_FAILED)
DECRYPT_FAILED_CLOSE = close_code(ErrorCode.DECRYPT_FAILED)
BAD_PADDING_CLOSE = close_code(ErrorCode.BAD_PADDING)
UNSUPPORTED_VERSION_CLOSE = close_code(ErrorCode.UNSUPPORTED_VERSION)
PROMPTLY = 20  # seconds (Trio clock); the handshake timeout below is far longer


class Healthy:
    """A two-member room that must keep working whatever happens next to it."""

    def __init__(self, code: str, a: WireClient, b: WireClient) -> None:
        self.code, self.a, self.b = code, a, b
        self.count = 0

    async def check(self) -> None:
        for sender, receiver in ((self.a, self.b), (self.b, self.a)):
            self.count += 1
            body = b"still fine %d" % self.count
            await sender.call(req(m.Send, room=self.code, body=body), m.Sent)
            got = await receiver.event(m.Deliver)
            assert got.body == body


async def setup(harness: Harness) -> Healthy:
    await harness.start(handshake_timeout=600)
    code, (a, b), _ = await harness.room(2)
    healthy = Healthy(code, a, b)
    await healthy.check()
    return healthy


# ---------------------------------------------------------------- before the session


async def test_garbage_before_the_upgrade(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    healthy = await setup(harness)
    sock = await harness.raw()
    await sock.send_raw(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n")
    assert await sock.wait_closed(within=PROMPTLY) is None
    await healthy.check()


@pytest.mark.parametrize("noise", [os.urandom(96), b"\x00" * 48, b"short"])
async def test_garbage_as_noise_message_one(
    harness: Harness, autojump_clock: trio.testing.MockClock, noise: bytes
) -> None:
    healthy = await setup(harness)
    sock = await harness.raw()
    await sock.upgrade()
    await sock.send_bytes(noise)
    assert await sock.wait_closed(within=PROMPTLY) == HANDSHAKE_FAILED_CLOSE
    await healthy.check()


async def test_wrong_relay_key(harness: Harness, autojump_clock: trio.testing.MockClock) -> None:
    healthy = await setup(harness)
    wrong = public_bytes(X25519PrivateKey.generate().public_key())
    with pytest.raises(Closed) as refused:
        await WireClient.connect(harness.port, wrong, within=PROMPTLY)
    assert refused.value.code == HANDSHAKE_FAILED_CLOSE
    await healthy.check()


@pytest.mark.parametrize("subprotocols", [["haven.v0"], [], ["chat", "superchat"]])
async def test_wrong_subprotocol(
    harness: Harness, autojump_clock: trio.testing.MockClock, subprotocols: list[str]
) -> None:
    healthy = await setup(harness)
    sock = await harness.raw()
    accept = await sock.upgrade(subprotocols)
    assert getattr(accept, "subprotocol", None) is None
    assert await sock.wait_closed(within=PROMPTLY) == UNSUPPORTED_VERSION_CLOSE
    await healthy.check()


async def test_text_message_during_handshake(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    healthy = await setup(harness)
    sock = await harness.raw()
    await sock.upgrade()
    await sock.send_text("hello?")
    assert await sock.wait_closed(within=PROMPTLY) == 1003
    await healthy.check()


async def test_replayed_handshake(harness: Harness, autojump_clock: trio.testing.MockClock
                                  ) -> None:
    """Replaying a recorded session gets a fresh transcript; its frames then fail."""
    healthy = await setup(harness)
    victim = await harness.client()
    created = await victim.call(lambda i: m.CreateRoom(id=i, kind="group"), m.Joined)
    await victim.call(lambda i: m.Send(id=i, room=created.seat.room, body=b"secret"), m.Sent)
    attacker = await harness.raw()
    await attacker.upgrade()
    await attacker.send_bytes(victim.hello_message)
    answer = await attacker.receive_message(within=PROMPTLY)
    assert isinstance(answer, bytes)  # the relay answers: it cannot tell it is a replay...
    for frame in victim.sent_frames:  # ...but the recorded frames are useless now
        await attacker.send_bytes(frame)
    assert await attacker.wait_closed(within=PROMPTLY) == DECRYPT_FAILED_CLOSE
    # The victim's session is untouched.
    await victim.call(lambda i: m.Ping(id=i), m.Pong)
    await healthy.check()


# ---------------------------------------------------------------- inside the session


@pytest.mark.parametrize("position", [0, 40, -1])
async def test_bit_flipped_frame(
    harness: Harness, autojump_clock: trio.testing.MockClock, position: int
) -> None:
    healthy = await setup(harness)
    client = await harness.client()
    await client.call(lambda i: m.Ping(id=i), m.Pong)
    frame = bytearray(client.session.seal_envelope(codec.encode(m.Ping(id=client.next_id()))))
    frame[position] ^= 0x04
    await client.sock.send_bytes(bytes(frame))
    assert await client.wait_closed(within=PROMPTLY) == DECRYPT_FAILED_CLOSE
    await healthy.check()


async def test_truncated_noise_frame(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    healthy = await setup(harness)
    client = await harness.client()
    frame = client.session.seal_envelope(codec.encode(m.Ping(id=client.next_id())))
    await client.sock.send_bytes(frame[:-20])
    assert await client.wait_closed(within=PROMPTLY) == BAD_PADDING_CLOSE
    await healthy.check()


async def test_truncated_websocket_frame(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    """Half a WebSocket frame and then end-of-stream: the relay hangs up on that client."""
    healthy = await setup(harness)
    client = await harness.client()
    created = await client.call(lambda i: m.CreateRoom(id=i, kind="group"), m.Joined)
    frame = client.session.seal_envelope(codec.encode(m.Ping(id=client.next_id())))
    wire = client.sock.frame_bytes(frame)
    await client.sock.send_raw(wire[: len(wire) // 2])
    await client.sock.stream.send_eof()
    await client.wait_closed(within=PROMPTLY)
    # Its seat is held for resume like any other drop, so the room still exists.
    assert created.seat.room in harness.info.relay.hub.rooms
    await healthy.check()


async def test_text_message_in_session(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    healthy = await setup(harness)
    client = await harness.client()
    await client.sock.send_text("{\"t\": \"ping\", \"id\": 1}")
    assert await client.wait_closed(within=PROMPTLY) == 1003
    await healthy.check()


async def test_oversize_websocket_message(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    healthy = await setup(harness)
    client = await harness.client()
    await client.sock.send_bytes(os.urandom(70_000))
    assert await client.wait_closed(within=PROMPTLY) == 1009
    await healthy.check()


@pytest.mark.parametrize(
    ("envelope", "code", "rid"),
    [
        (b"\xc1 not msgpack", ErrorCode.MALFORMED, 0),
        (msgpack.packb([1, 2, 3]), ErrorCode.MALFORMED, 0),
        (msgpack.packb({"t": "send", "id": 9, "room": 42}), ErrorCode.BAD_FIELD, 9),
        (msgpack.packb({"t": "ping", "id": -1}), ErrorCode.BAD_FIELD, 0),
        (msgpack.packb({"t": "launch", "id": 9}), ErrorCode.UNKNOWN_TYPE, 9),
        (msgpack.packb({"t": "deliver", "id": 9}), ErrorCode.UNKNOWN_TYPE, 9),
        (msgpack.packb({"id": 9}), ErrorCode.UNKNOWN_TYPE, 9),
    ],
)
async def test_bad_envelope_gets_a_typed_error_and_the_connection_stays(
    harness: Harness, autojump_clock: trio.testing.MockClock,
    envelope: bytes, code: ErrorCode, rid: int,
) -> None:
    healthy = await setup(harness)
    client = await harness.client()
    await client.send_envelope(envelope)
    client.last_id = 9
    error = await client.reply(rid)
    assert isinstance(error, m.Error)
    assert (error.code, error.id) == (code, rid)
    assert error.message
    await client.call(lambda i: m.Ping(id=i), m.Pong)
    await healthy.check()


# ------------------------------------------------------ the upgrade and the framing


async def _http_answer(sock: RawSocket) -> bytes:
    """Everything the relay writes before it hangs up (an HTTP refusal, no WebSocket)."""
    out = b""
    with trio.fail_after(PROMPTLY):
        while chunk := await sock.stream.receive_some(4096):
            out += chunk
    return out


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 426),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 7\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            426,
        ),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 431),
    ],
)
async def test_requests_that_are_not_upgrades_get_an_http_status(
    harness: Harness, autojump_clock: trio.testing.MockClock, head: bytes, status: int
) -> None:
    """The WebSocket port answers plain HTTP with a status (once wsproto hung up
    silently), and the relay goes on serving."""
    healthy = await setup(harness)
    sock = await harness.raw()
    await sock.send_raw(head)
    answer = await _http_answer(sock)
    assert answer.startswith(b"HTTP/1.1 %d " % status), answer[:80]
    assert b"Connection: close" in answer
    await healthy.check()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\x82\x05hello", 1002),  # unmasked client frame
        (b"\xc2\x80\0\0\0\0", 1002),  # RSV1 set, no extension agreed
        (b"\x83\x80\0\0\0\0", 1002),  # reserved opcode
        (b"\x88\x82\0\0\0\0\x03\xed", 1002),  # close code 1005 is not for the wire
    ],
)
async def test_framing_violations_close_with_the_rfc_code(
    harness: Harness, autojump_clock: trio.testing.MockClock, frame: bytes, code: int
) -> None:
    healthy = await setup(harness)
    client = await harness.client()
    await client.sock.send_raw(frame)
    assert await client.sock.wait_closed(within=PROMPTLY) == code
    await healthy.check()


async def test_frames_before_a_bad_one_are_still_served(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    """One read holding a good request and then a bad frame: the request is answered,
    then the connection closes with 1002."""
    await setup(harness)
    client = await harness.client()
    sealed = client.session.seal_envelope(codec.encode(m.Ping(id=1)))
    client.last_id = 1
    await client.sock.send_raw(client.sock.frame_bytes(sealed) + b"\x82\x01x")
    assert isinstance(await client.reply(1), m.Pong)
    assert await client.sock.wait_closed(within=PROMPTLY) == 1002
