"""The handshake is driven by the bytes as they come, whatever the reads look like.

The relay's read loop hands each read to the connection (``ClientSocket.on_readable``):
an upgrade request may arrive a byte at a time, or the request, pings and Noise
message 1 may all arrive in one read. Either way the relay must answer each in order
and open the session.
"""

from __future__ import annotations

import os
import struct

import trio
import trio.testing

from haven.protocol import SUBPROTOCOL
from haven.protocol import messages as m
from haven.protocol.session import ClientSession, ReplyReceived, Welcomed
from haven.protocol.websocket import unmask
from haven.relay.server import RelayInfo

from .conftest import Harness

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
REQUEST = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: " + SUBPROTOCOL.encode() + b"\r\n\r\n"
)


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A final, masked client frame (RFC 6455 section 5.2)."""
    mask = os.urandom(4)
    size = len(payload)
    head = bytes((0x80 | opcode, 0x80 | size)) if size < 126 else (
        bytes((0x80 | opcode, 0x80 | 126)) + struct.pack("!H", size)
    )  # fmt: skip
    return head + mask + unmask(payload, mask)


class ServerReader:
    """The relay's answer: the 101 head, then its unmasked frames."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.data = b""

    async def _more(self) -> None:
        with trio.fail_after(10):
            chunk = await self.stream.receive_some(65536)
        assert chunk, "the relay closed the connection"
        self.data += chunk

    async def head(self) -> bytes:
        while b"\r\n\r\n" not in self.data:
            await self._more()
        head, _, self.data = self.data.partition(b"\r\n\r\n")
        return head

    async def frame(self) -> tuple[int, bytes]:
        while True:
            if len(self.data) >= 2:
                size, at = self.data[1] & 0x7F, 2
                assert size < 127, "no frame here is that large"
                if size == 126 and len(self.data) >= 4:
                    size, at = struct.unpack("!H", self.data[2:4])[0], 4
                if at + size <= len(self.data) and (at == 4 or size < 126):
                    opcode, payload = self.data[0] & 0x0F, self.data[at : at + size]
                    self.data = self.data[at + size :]
                    return opcode, payload
            await self._more()


async def _connect(harness: Harness) -> trio.SocketStream:
    stream = await trio.open_tcp_stream("127.0.0.1", harness.port)
    harness.nursery.start_soon(_close_later, stream)
    return stream


async def _close_later(stream: trio.SocketStream) -> None:
    try:
        await trio.sleep_forever()
    finally:
        stream.socket.close()


async def test_everything_in_one_write(harness: Harness) -> None:
    """Upgrade request, a ping, Noise message 1 and another ping in one write: the
    relay answers 101, pong, message 2, pong, in that order, and the session works."""
    info = await harness.start()
    stream = await _connect(harness)
    session = ClientSession(info.public_key)
    hello = session.start()
    await stream.send_all(
        REQUEST + client_frame(0x9, b"one") + client_frame(0x2, hello) + client_frame(0x9, b"two")
    )
    reader = ServerReader(stream)
    head = await reader.head()
    assert head.startswith(b"HTTP/1.1 101 ")
    assert await reader.frame() == (0xA, b"one")
    opcode, msg2 = await reader.frame()
    assert opcode == 0x2
    assert isinstance(session.receive(msg2), Welcomed)
    assert await reader.frame() == (0xA, b"two")
    await stream.send_all(client_frame(0x2, session.send(m.Ping(id=session.take_id()))))
    opcode, sealed = await reader.frame()
    assert opcode == 0x2
    event = session.receive(sealed)
    assert isinstance(event, ReplyReceived)
    assert isinstance(event.reply, m.Pong)


async def test_a_byte_at_a_time(harness: Harness) -> None:
    """The upgrade request and message 1 arriving a byte per read are put together."""
    info = await harness.start()
    stream = await _connect(harness)
    session = ClientSession(info.public_key)
    hello = session.start()
    for byte in REQUEST + client_frame(0x2, hello):
        await stream.send_all(bytes((byte,)))
        await trio.testing.wait_all_tasks_blocked()  # the relay reads it alone
    reader = ServerReader(stream)
    assert (await reader.head()).startswith(b"HTTP/1.1 101 ")
    opcode, msg2 = await reader.frame()
    assert opcode == 0x2
    assert isinstance(session.receive(msg2), Welcomed)
    assert len(info.relay.pending) == 0


def _failed(info: RelayInfo, reason: str) -> float:
    value = info.relay.metrics.registry.get_sample_value(
        "haven_handshakes_total", {"result": "failed", "reason": reason}
    )
    return value or 0.0


async def test_each_failed_handshake_counts_under_its_reason(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    """Evicted for a newer socket, gone before the end, a bad upgrade request, a text
    message, out of time: one count each, under its own reason."""
    info = await harness.start(max_pending_handshakes=2, handshake_timeout=30)
    first = await _connect(harness)  # sends nothing: evicted by the third
    await trio.testing.wait_all_tasks_blocked()
    second = await _connect(harness)
    await trio.testing.wait_all_tasks_blocked()
    third = await _connect(harness)
    await trio.testing.wait_all_tasks_blocked()
    await second.send_all(REQUEST[:20])
    await second.send_eof()  # gone in the middle of the request
    await third.send_all(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await ServerReader(third).head()).startswith(b"HTTP/1.1 405 ")
    fourth = await _connect(harness)
    await fourth.send_all(REQUEST + client_frame(0x1, b"hello"))
    reader = ServerReader(fourth)
    await reader.head()
    assert (await reader.frame())[0] == 0x8  # closed: 1003, binary messages only
    await trio.testing.wait_all_tasks_blocked()
    assert _failed(info, "evicted") == 1
    assert _failed(info, "eof") == 1
    assert _failed(info, "websocket") == 2
    assert _failed(info, "timeout") == 0
    fifth = await _connect(harness)
    await fifth.send_all(REQUEST)
    await trio.sleep(31)
    assert _failed(info, "timeout") == 1
    assert len(info.relay.pending) == 0
    with trio.fail_after(5):
        assert await first.receive_some(10) == b""  # the evicted socket was closed
