"""The relay's read loop (relay/poller.py): one task reads every established connection.

What it must keep: every connection is read (one read per ready socket per batch, so a
flood on one cannot hold up another), every connection leaves the loop however it ends,
and a descriptor number reused by a new connection reaches the new one only.
"""

from __future__ import annotations

import os
import select
import socket
import struct

import trio
import trio.testing

from haven.protocol import codec
from haven.protocol import messages as m
from haven.relay.connection import RECEIVE_SIZE, ClientSocket

from .conftest import Harness
from .wire import WireClient, req


def _conn_of(harness: Harness, client: WireClient) -> ClientSocket:
    """The relay's end of ``client`` (matched by the ports of the loopback pair)."""
    mine = client.sock.stream.socket.getsockname()
    for conn in harness.info.relay.connections:
        if conn.fd < 0:
            continue
        with socket.socket(fileno=os.dup(conn.fd)) as end:
            if end.getpeername() == mine:
                return conn
    raise AssertionError("no such connection")


def _readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def _write_now(client: WireClient, data: bytes) -> bytes:
    """Put as much of ``data`` on the wire as the socket takes without yielding (so the
    relay cannot read in between); return the rest."""
    fd = client.sock.stream.socket.fileno()
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            break
    return bytes(view)


async def test_one_read_per_socket_per_batch(harness: Harness) -> None:
    """A connection with a lot queued gets one read per batch; a small request that
    became ready at the same time is answered in that same batch."""
    info = await harness.start(rate_per_s=1e9, rate_burst=10**9)
    flooder = await harness.client()
    bystander = await harness.client()
    pings = [flooder.session.seal_envelope(codec.encode(m.Ping(id=flooder.next_id())))
             for _ in range(3 * RECEIVE_SIZE // 256)]  # fmt: skip
    flood = b"".join(flooder.sock.frame_bytes(p) for p in pings)
    assert len(flood) > 2 * RECEIVE_SIZE
    flooder_end = _conn_of(harness, flooder)
    bystander_fd = bystander.sock.stream.socket.fileno()
    ping = bystander.session.seal_envelope(codec.encode(m.Ping(id=bystander.next_id())))
    poller = info.relay.poller
    assert poller is not None
    # No yield from here to the assertions: the relay's own loop cannot run meanwhile.
    rest = _write_now(flooder, flood)
    assert len(flood) - len(rest) > RECEIVE_SIZE
    assert not _write_now(bystander, bystander.sock.frame_bytes(ping))
    assert not _readable(bystander_fd)
    assert poller.handle_ready() == 2
    assert _readable(bystander_fd)  # answered in the first batch
    assert _readable(flooder_end.fd)  # while most of the flood is still unread
    # Then the rest of the flood is read in later batches: every ping is answered.
    await flooder.sock.send_raw(rest)
    assert isinstance(await bystander.reply(bystander.last_id), m.Pong)
    for rid in range(1, flooder.last_id + 1):
        assert isinstance(await flooder.reply(rid), m.Pong)


def _reset(client: WireClient) -> None:
    raw = client.sock.stream.socket
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw.close()


async def test_every_ending_leaves_the_loop(harness: Harness) -> None:
    """Closed by the client, reset, half-closed, closed by the relay: each connection
    is taken out of the read loop; new ones (reusing the numbers) are read as usual."""
    info = await harness.start(max_message_bytes=4096)
    relay = info.relay
    poller = relay.poller
    assert poller is not None
    code, clients, _seats = await harness.room(8)
    assert len(poller) == 8
    await clients[0].close()  # a close frame
    _reset(clients[1])  # a TCP reset
    clients[2].sock.stream.socket.shutdown(socket.SHUT_WR)  # end of stream, still open
    await clients[3].sock.send_text("hello")  # text: the relay closes with 1003
    await clients[4].sock.send_bytes(b"x" * 5000)  # too big: the relay closes with 1009
    await clients[5].sock.send_bytes(b"not a sealed frame")  # fails authentication
    assert await clients[3].wait_closed() == 1003
    assert await clients[4].wait_closed() == 1009
    await clients[5].wait_closed()
    with trio.fail_after(10):
        while len(relay.connections) > 2:  # noqa: ASYNC110 (relay state, no event)
            await trio.sleep(0.01)
    await trio.testing.wait_all_tasks_blocked()
    assert len(poller) == 2
    # The survivors still talk, and newcomers (on freed descriptor numbers) join in.
    newcomers = [await harness.client() for _ in range(6)]
    assert len(poller) == 8
    for newcomer in newcomers:
        await newcomer.call(req(m.Join, room=code), m.Joined)
    sent = await clients[6].call(req(m.Send, room=code, body=b"still here"), m.Sent)
    for client in [clients[7], *newcomers]:
        event = await client.event(m.Deliver, where=lambda d: d.seq == sent.seq)
        assert event.body == b"still here"
    for client in [clients[6], clients[7], *newcomers]:
        await client.close()
    with trio.fail_after(10):
        while relay.connections:  # noqa: ASYNC110 (relay state, no event)
            await trio.sleep(0.01)
    assert len(poller) == 0
