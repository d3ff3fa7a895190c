"""A moderator's pending list always fits one envelope, however large the bodies."""

from __future__ import annotations

from haven.protocol import codec
from haven.protocol import messages as m

from .helpers import Operator
from .hubkit import Kit


def test_pending_list_is_cut_to_fit_and_says_so(operator: Operator) -> None:
    kit = Kit(operator, moderation={"max_pending": 50, "max_pending_per_author": 5})
    moderator = kit.peer("moderator", rooms=("*",))
    group = kit.call(moderator, m.CreateRoom, kind="group", premoderated=True).seat.room
    body = b"x" * kit.config.max_body_bytes  # 16 KiB: four fill one reply's budget
    for _ in range(3):
        peer = kit.peer()
        kit.call(peer, m.Join, room=group)
        for _ in range(3):
            assert kit.call(peer, m.Send, room=group, body=body).item is not None
    assert len(kit.hub.rooms[group].pending) == 9

    first = kit.call(moderator, m.PendingList, room=group)
    assert isinstance(first, m.PendingItems)
    assert first.more
    assert 0 < len(first.items) < 9
    assert len(codec.encode(first)) <= codec.MAX_ENVELOPE  # it really goes on the wire
    for item in first.items:
        assert isinstance(kit.call(moderator, m.Approve, room=group, item=item.item), m.Ok)

    rest = kit.call(moderator, m.PendingList, room=group)
    assert [i.item for i in rest.items] == sorted(i.item for i in rest.items)
    assert len(first.items) + len(rest.items) <= 9
    if not rest.more:
        assert len(first.items) + len(rest.items) == 9
