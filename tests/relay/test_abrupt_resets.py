"""Peers that vanish with a TCP reset, both at once, while the relay writes to them.

Found by the connection-setup benchmark: when both members of a room reset their
connections together, the relay could still be flushing a presence event to a
connection whose task was already ending. Starting a writer for it then failed ("the
nursery is closed to new arrivals") and the connection task died with a logged error.
Every reset must end its connection quietly, whatever the relay was doing.
"""

from __future__ import annotations

import logging
import os
import socket
import struct

import trio
import trio.testing

from haven.protocol import messages as m
from haven.relay.connection import CLOSED

from .conftest import Harness
from .test_internal_error import Records
from .wire import WireClient, req


def _reset(*clients: WireClient) -> None:
    """Close with RST (SO_LINGER 0), all at once without yielding, as when both ends of
    a conversation lose their network together (or a load generator hangs up a pair)."""
    for client in clients:
        raw = client.sock.stream.socket
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    for client in clients:
        client.sock.stream.socket.close()


async def test_pairs_resetting_together_end_quietly(harness: Harness) -> None:
    info = await harness.start()
    records = Records()
    logger = logging.getLogger("haven.relay")
    logger.addHandler(records)
    try:
        for _ in range(40):
            first = await harness.client()
            second = await harness.client()
            joined = await first.call(req(m.CreateRoom, kind="direct"), m.Joined)
            await second.call(req(m.Join, room=joined.seat.room), m.Joined)
            await first.call(req(m.Send, room=joined.seat.room, body=b"hello"), m.Sent)
            _reset(first, second)
        with trio.fail_after(10):
            while info.relay.connections:  # noqa: ASYNC110 (relay state, no event to wait on)
                await trio.sleep(0.01)
        await trio.testing.wait_all_tasks_blocked()
    finally:
        logger.removeHandler(records)
    assert "connection task failed" not in records.messages
    newcomer = await harness.client()
    await newcomer.call(req(m.Ping), m.Pong)


async def test_a_closed_connection_never_writes_to_its_old_descriptor(
    harness: Harness,
) -> None:
    """Once a connection's socket is closed the kernel may give its number to the next
    connection at once. Bytes still queued for the old one must go nowhere: written to
    the reused number they would reach a stranger."""
    info = await harness.start()
    first = await harness.client()
    (old,) = info.relay.connections
    number = old.fd
    await first.sock.abort()
    with trio.fail_after(10):
        while info.relay.connections:  # noqa: ASYNC110 (relay state, no event to wait on)
            await trio.sleep(0.01)
    assert old.fd == CLOSED
    second = await harness.client()
    # The lowest free number is the old one: the new connection's sockets (the test's
    # end or the relay's) now hold it, so a stray write would land on one of them.
    os.fstat(number)
    old.buf.append(b"\x82\x05stray")  # as if a delivery had been queued for it late
    old.kick(0.0)
    old.close(1000, "late")
    await trio.testing.wait_all_tasks_blocked()
    await second.call(req(m.Ping), m.Pong)  # stray bytes would break its framing
