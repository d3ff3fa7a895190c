"""Room ordering over real loopback: one sequence, the same order for every member.

All members send at once, so the relay really interleaves them; the assertions then
check the invariant from the sequence numbers alone: the relay's ``sent`` acks define
one global order, and every member must see exactly the others' messages in it.
"""

from __future__ import annotations

import pytest
import trio

from haven.protocol import messages as m

from .conftest import Harness
from .wire import WireClient, req

PER_MEMBER = 12


async def send_all(client: WireClient, code: str, index: int, acks: dict[int, tuple[int, bytes]]
                   ) -> None:
    """Send PER_MEMBER bodies, recording the seq of each ack; acks must increase."""
    last = 0
    for k in range(PER_MEMBER):
        body = f"m{index}-{k}".encode()
        sent = await client.call(req(m.Send, room=code, body=body), m.Sent)
        assert sent.room == code
        assert sent.item is None
        assert sent.seq is not None
        assert sent.seq > last
        last = sent.seq
        acks[sent.seq] = (index, body)


@pytest.mark.parametrize("size", [2, 10])
async def test_every_member_sees_the_others_in_one_order(
    harness: Harness, autojump_clock: trio.testing.MockClock, size: int
) -> None:
    await harness.start()
    code, clients, seats = await harness.room(size)
    aliases = [s.alias for s in seats]
    assert len(set(aliases)) == size
    acks: dict[int, tuple[int, bytes]] = {}
    async with trio.open_nursery() as nursery:
        for index, client in enumerate(clients):
            nursery.start_soon(send_all, client, code, index, acks)
    assert len(acks) == size * PER_MEMBER

    order = sorted(acks)
    for index, client in enumerate(clients):
        expected = [(seq, acks[seq][1]) for seq in order if acks[seq][0] != index]
        got: list[tuple[int, bytes]] = []
        while len(got) < len(expected):
            ev = await client.event(m.Deliver)
            assert ev.room == code
            assert ev.sender != aliases[index], "a member got its own message back"
            assert ev.sender == aliases[acks[ev.seq][0]]
            got.append((ev.seq, ev.body))
        assert got == expected
        assert [s for s, _ in got] == sorted({s for s, _ in got}), "seq not strictly increasing"
        # Nothing else is on the way: a ping round trip flushes the connection.
        await client.call(lambda i: m.Ping(id=i), m.Pong)
        assert not [e for e in client.events if isinstance(e, m.Deliver)]


async def test_seq_counts_presence_and_messages_together(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    """Presence and messages share the room sequence, so a resume point is one number."""
    await harness.start()
    a = await harness.client()
    created = await a.call(lambda i: m.CreateRoom(id=i, kind="group"), m.Joined)
    code = created.seat.room
    b = await harness.client()
    joined = await b.call(lambda i: m.Join(id=i, room=code), m.Joined)
    presence = await a.event(m.Presence)
    assert presence.event == "joined"
    assert presence.alias == joined.seat.alias
    assert presence.members == 2
    assert joined.seat.seq == presence.seq  # b's view starts after its own join
    sent = await b.call(lambda i: m.Send(id=i, room=code, body=b"hello"), m.Sent)
    assert sent.seq == presence.seq + 1
    deliver = await a.event(m.Deliver)
    assert (deliver.seq, deliver.body, deliver.sender) == (sent.seq, b"hello", joined.seat.alias)
