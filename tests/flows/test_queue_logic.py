"""Intake-queue logic on the synchronous hub: order, priority, positions, tickets."""

from __future__ import annotations

from haven.protocol import messages as m
from haven.protocol.errors import ErrorCode
from haven.relay import flows
from haven.relay.hub import Peer

from .helpers import Operator
from .hubkit import Kit, error_code


def positions(kit: Kit, *peers: Peer) -> list[list[tuple[int, bool]]]:
    return [
        [(e.position, e.priority) for e in kit.events(p) if isinstance(e, m.QueuePosition)]
        for p in peers
    ]


def test_fifo_with_positions_pushed_as_the_line_moves(operator: Operator) -> None:
    kit = Kit(operator)
    a, b, c = kit.peer(), kit.peer(), kit.peer()
    assert [kit.call(p, m.RequestHelp, queue="helpline").position for p in (a, b, c)] == [1, 2, 3]
    assert kit.call(a, m.CancelHelp, queue="helpline") == m.Ok(id=2)
    assert positions(kit, a, b, c) == [[], [(1, False)], [(2, False)]]
    staff = kit.peer("staff", queues=("helpline",))
    joined = kit.call(staff, m.TakeNext, queue="helpline")
    assert isinstance(joined, m.Joined)
    assert joined.seat.kind == "direct"
    assert joined.seat.members == 2
    matched = [e for e in kit.events(b) if isinstance(e, m.Matched)]
    assert len(matched) == 1
    assert matched[0].seat.room == joined.seat.room
    assert positions(kit, c) == [[(1, False)]]


def test_priority_lane_goes_first(operator: Operator) -> None:
    kit = Kit(operator)
    waiting = kit.peer()
    kit.call(waiting, m.RequestHelp, queue="helpline")
    moderator = kit.peer("moderator", rooms=("*",))
    room = kit.call(moderator, m.CreateRoom, kind="group", listed=True).seat.room
    peer = kit.peer()
    alias = kit.call(peer, m.Join, room=room).seat.alias
    kit.events(moderator)
    assert kit.call(moderator, m.Escalate, room=room, alias=alias, queue="helpline") == m.Ok(
        id=kit.ids[moderator]
    )
    (event,) = [e for e in kit.events(peer) if isinstance(e, m.QueuePosition)]
    assert (event.position, event.priority) == (1, True)
    assert event.token is not None
    assert len(event.token) == 32
    assert positions(kit, waiting) == [[(2, False)]]
    staff = kit.peer("staff", queues=("*",))
    kit.call(staff, m.TakeNext, queue="helpline")
    assert any(isinstance(e, m.Matched) for e in kit.events(peer))
    assert positions(kit, waiting) == [[(1, False)]]
    # The escalated peer kept its group seat as well.
    assert room in peer.seats


def test_bounded_queue_says_when_to_retry(operator: Operator) -> None:
    kit = Kit(operator)
    for _ in range(5):
        kit.call(kit.peer(), m.RequestHelp, queue="helpline")
    reply = kit.call(kit.peer(), m.RequestHelp, queue="helpline")
    assert error_code(reply) == ErrorCode.QUEUE_FULL
    assert reply.retry_after == 60
    assert error_code(kit.call(kit.peer(), m.RequestHelp, queue="nope")) == (
        ErrorCode.QUEUE_NOT_FOUND
    )
    assert error_code(kit.call(kit.peer(), m.CancelHelp, queue="helpline")) == ErrorCode.NOT_QUEUED


def test_asking_again_returns_the_same_place(operator: Operator) -> None:
    kit = Kit(operator)
    a = kit.peer()
    first = kit.call(a, m.RequestHelp, queue="helpline")
    again = kit.call(a, m.RequestHelp, queue="helpline")
    assert (again.position, again.token) == (first.position, first.token)
    assert len(kit.hub.tokens) == 1


def test_dropped_visitor_keeps_its_place_for_the_grace_window(operator: Operator) -> None:
    kit = Kit(operator)
    a, b = kit.peer(), kit.peer()
    token = kit.call(a, m.RequestHelp, queue="helpline").token
    kit.call(b, m.RequestHelp, queue="helpline")
    kit.hub.disconnect(a, kit.now)
    kit.tick(30)
    staff = kit.peer("staff", queues=("helpline",))
    # The absent visitor is passed over, not dropped: staff get the present one.
    kit.call(staff, m.TakeNext, queue="helpline")
    assert any(isinstance(e, m.Matched) for e in kit.events(b))
    back = kit.peer()
    queued = kit.call(back, m.Resume, token=token, after=0)
    assert isinstance(queued, m.Queued)
    assert queued.position == 1
    assert queued.token != token
    assert error_code(kit.call(kit.peer(), m.Resume, token=token, after=0)) == (
        ErrorCode.RESUME_FAILED
    )
    # Past the grace window the place is gone.
    kit.hub.disconnect(back, kit.now)
    kit.tick(kit.config.resume_grace)
    assert error_code(kit.call(kit.peer(), m.Resume, token=queued.token, after=0)) == (
        ErrorCode.RESUME_FAILED
    )
    assert not kit.hub.tokens.get(queued.token)


def test_a_lost_match_is_resumed_as_the_seat(operator: Operator) -> None:
    kit = Kit(operator)
    a = kit.peer()
    token = kit.call(a, m.RequestHelp, queue="helpline").token
    staff = kit.peer("staff", queues=("helpline",))
    room = kit.call(staff, m.TakeNext, queue="helpline").seat.room
    kit.hub.disconnect(a, kit.now)  # the ``matched`` event never arrived
    kit.call(staff, m.Send, room=room, body=b"hello, I'm here")
    back = kit.peer()
    joined = kit.call(back, m.Resume, token=token, after=0)
    assert isinstance(joined, m.Joined)
    assert joined.seat.room == room
    assert joined.seat.resumed
    replay = [e for e in kit.events(back) if isinstance(e, m.Deliver)]
    assert [e.body for e in replay] == [b"hello, I'm here"]


def test_staff_count_and_duty(operator: Operator) -> None:
    kit = Kit(operator)
    visitor = kit.peer()
    assert kit.call(visitor, m.StaffCount, queue="helpline").count == 0
    s1 = kit.peer("staff", queues=("helpline",))
    s2 = kit.peer("staff", queues=("*",))
    kit.call(s1, m.Duty, queue="helpline")
    kit.call(s2, m.Duty, queue="helpline")
    assert kit.call(visitor, m.StaffCount, queue="helpline").count == 2
    kit.call(s2, m.Duty, queue="helpline", on=False)
    kit.hub.disconnect(s1, kit.now)
    assert kit.call(visitor, m.StaffCount, queue="helpline").count == 0
    staff = kit.peer("staff", queues=("helpline",))
    assert error_code(kit.call(staff, m.TakeNext, queue="helpline")) == ErrorCode.QUEUE_EMPTY


def test_aggregate_lengths_and_wait_times_for_metrics(operator: Operator) -> None:
    kit = Kit(operator)
    waits: list[tuple[str, float]] = []
    queues = flows.installed(kit.hub).queues
    queues.on_match.append(lambda name, waited: waits.append((name, waited)))
    for _ in range(3):
        kit.call(kit.peer(), m.RequestHelp, queue="helpline")
    assert queues.lengths() == {"helpline": 3, "other": 0}
    kit.tick(42)
    kit.call(kit.peer("staff", queues=("helpline",)), m.TakeNext, queue="helpline")
    assert queues.lengths() == {"helpline": 2, "other": 0}
    assert waits == [("helpline", 42.0)]


def test_staff_see_lane_counts_and_whether_a_visitor_came_from_the_priority_lane(
    operator: Operator,
) -> None:
    """Staff consoles show waiting counts per lane and flag a crisis-escalated visitor;
    a visitor (or staff of another queue) gets the duty count only."""
    kit = Kit(operator)
    for _ in range(2):
        kit.call(kit.peer(), m.RequestHelp, queue="helpline")
    away = kit.peer()
    kit.call(away, m.RequestHelp, queue="helpline")
    kit.hub.disconnect(away, kit.now)  # held for resume: not counted as waiting
    moderator = kit.peer("moderator", rooms=("*",))
    room = kit.call(moderator, m.CreateRoom, kind="group", listed=True).seat.room
    peer = kit.peer()
    alias = kit.call(peer, m.Join, room=room).seat.alias
    kit.call(moderator, m.Escalate, room=room, alias=alias, queue="helpline")
    staff = kit.peer("staff", queues=("helpline",))
    counts = kit.call(staff, m.StaffCount, queue="helpline")
    assert (counts.waiting, counts.priority) == (2, 1)
    for outsider in (kit.peer(), kit.peer("staff", queues=("other",))):
        reply = kit.call(outsider, m.StaffCount, queue="helpline")
        assert (reply.waiting, reply.priority) == (None, None)
    first = kit.call(staff, m.TakeNext, queue="helpline")
    assert first.priority is True
    second = kit.call(staff, m.TakeNext, queue="helpline")
    assert second.priority is False
    counts = kit.call(staff, m.StaffCount, queue="helpline")
    assert (counts.waiting, counts.priority) == (1, 0)
