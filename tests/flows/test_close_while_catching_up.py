"""A room that ends while a member is still catching up (its socket congested): the
member gets every event it has not pulled yet, then ``room_closed`` — never the close
first and the rest lost without a word."""

from __future__ import annotations

from haven.protocol import messages as m

from .helpers import Operator
from .hubkit import Kit


def test_close_delivers_the_rest_of_the_ring_before_room_closed(operator: Operator) -> None:
    kit = Kit(operator)
    moderator = kit.peer("moderator", rooms=("*",))
    room = kit.call(moderator, m.CreateRoom, kind="group").seat.room
    reader = kit.peer()
    kit.call(reader, m.Join, room=room)
    kit.events(reader)
    reader.congested = True  # its socket stopped draining: events stay in the ring
    for i in range(5):
        kit.call(moderator, m.Send, room=room, body=f"m{i}".encode())
    assert [e for e in kit.events(reader) if isinstance(e, m.Deliver)] == []
    kit.hub.refill(reader, 1)  # it drains a little: one event pulled
    got = [e for e in kit.events(reader) if isinstance(e, m.Deliver)]
    assert [e.body for e in got] == [b"m0"]
    assert kit.call(moderator, m.CloseRoom, room=room) == m.Ok(id=kit.ids[moderator])
    rest = kit.events(reader)
    assert [type(e).__name__ for e in rest] == ["Deliver"] * 4 + ["RoomClosed"]
    assert [e.body for e in rest[:4]] == [b"m1", b"m2", b"m3", b"m4"]
    assert room not in reader.seats
    assert reader.catching_up is False
