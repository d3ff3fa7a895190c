"""A seat resumed by another connection while its old one is still open: the old one is
told (``room_closed`` with reason ``taken_over``) instead of silently going deaf."""

from __future__ import annotations

import trio
import trio.testing

from haven.protocol import messages as m

from .conftest import Harness
from .wire import req


async def test_the_old_connection_is_told_of_a_takeover(
    harness: Harness, autojump_clock: trio.testing.MockClock
) -> None:
    await harness.start()
    code, (a, b), (_, seat_b) = await harness.room(2)
    thief_or_new_tab = await harness.client()
    joined = await thief_or_new_tab.call(
        req(m.Resume, token=seat_b.token, after=seat_b.seq), m.Joined
    )
    assert joined.seat.resumed
    closed = await b.event(m.RoomClosed)
    assert (closed.room, closed.reason) == (code, "taken_over")
    # The room goes on for the others, and the seat now lives on the new connection.
    await a.call(req(m.Send, room=code, body=b"still here"), m.Sent)
    assert (await thief_or_new_tab.event(m.Deliver)).body == b"still here"
    error = await b.request(req(m.Send, room=code, body=b"me?"))
    assert isinstance(error, m.Error)
