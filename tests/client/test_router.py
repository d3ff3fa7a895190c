"""Routing and exactly-once, in-order delivery of room events across resumes."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given
from hypothesis import strategies as st

from haven.client.router import Route, RouteKind, Router
from haven.protocol.messages import (
    Announcement,
    Challenge,
    ChallengeUpdate,
    CrisisAlert,
    Deliver,
    Denied,
    Draining,
    Error,
    Joined,
    Left,
    Matched,
    Message,
    Moderation,
    Ok,
    Pending,
    PendingItem,
    Presence,
    Queued,
    QueuePosition,
    Removed,
    RoomClosed,
    Seat,
    Sent,
    TypingEvent,
)

ROOM = "room-a"
OTHER = "room-b"


def seat(room: str = ROOM, seq: int = 0, resumed: bool = False) -> Seat:
    return Seat(room=room, alias="calm-owl-1", token=b"t" * 32, seq=seq, members=1,
                kind="group", resumed=resumed)


def deliver(seq: int, room: str = ROOM) -> Deliver:
    return Deliver(room=room, seq=seq, sender="x", body=b"%d" % seq)


def joined_router(seq: int = 0, room: str = ROOM) -> Router:
    router = Router()
    assert router.route(Joined(id=1, seat=seat(room, seq))).kind is RouteKind.REPLY
    return router


def kinds(router: Router, msgs: Sequence[Message]) -> list[RouteKind]:
    return [router.route(m).kind for m in msgs]


def test_replies_route_by_id() -> None:
    router = Router()
    assert router.route(Ok(id=7)) == Route(RouteKind.REPLY, 7)
    assert router.route(Sent(id=8, room=ROOM, seq=3)) == Route(RouteKind.REPLY, 8)
    assert router.route(Error(id=9, code=200, message="")) == Route(RouteKind.REPLY, 9)


def test_error_with_id_zero_is_connection_level() -> None:
    assert Router().route(Error(id=0, code=500, message="")).kind is RouteKind.CONN


def test_connection_events() -> None:
    router = Router()
    challenge = ChallengeUpdate(challenge=Challenge(seed=b"s" * 32, difficulty=3))
    assert router.route(challenge).kind is RouteKind.CONN
    assert router.route(Draining(retry_after=5)).kind is RouteKind.CONN
    assert router.route(QueuePosition(queue="q", position=2)).kind is RouteKind.CONN


def test_fresh_seat_starts_after_its_seq() -> None:
    router = joined_router(seq=5)
    assert kinds(router, [deliver(4), deliver(5), deliver(6)]) == [
        RouteKind.DROP, RouteKind.DROP, RouteKind.ROOM]
    assert router.last_seq(ROOM) == 6
    assert router.duplicates == 2


def test_in_order_with_gaps_passes() -> None:
    router = joined_router()
    msgs: list[Message] = [
        deliver(1),
        Presence(room=ROOM, seq=2, alias="a", event="joined", members=2),
        deliver(4),  # 3 was our own message: never delivered to us
        Announcement(room=ROOM, seq=5, body=b"rules"),
        Moderation(room=ROOM, seq=9, action="locked"),
    ]
    assert kinds(router, msgs) == [RouteKind.ROOM] * 5
    assert router.last_seq(ROOM) == 9


def test_resume_replay_is_deduplicated() -> None:
    router = joined_router()
    for n in (1, 2, 3):
        router.route(deliver(n))
    # Drop; the SDK sends resume(after=3); the relay replays from there (and, worst case,
    # some overlap). The resumed seat must not reset what we have seen.
    assert router.last_seq(ROOM) == 3
    router.route(Joined(id=2, seat=seat(seq=1, resumed=True)))
    assert router.last_seq(ROOM) == 3
    replay = [deliver(2), deliver(3), deliver(4), deliver(5), deliver(4)]
    assert kinds(router, replay) == [
        RouteKind.DROP, RouteKind.DROP, RouteKind.ROOM, RouteKind.ROOM, RouteKind.DROP]
    assert router.duplicates == 3


def test_unsequenced_events_pass_through() -> None:
    router = joined_router(seq=10)
    item = PendingItem(item=1, alias="a", body=b"x")
    msgs: list[Message] = [
        TypingEvent(room=ROOM, alias="a"),
        TypingEvent(room=ROOM, alias="a"),
        Pending(room=ROOM, item=item),
        Denied(room=ROOM, item=1),
        CrisisAlert(room=ROOM, alias="a"),
    ]
    assert kinds(router, msgs) == [RouteKind.ROOM] * 5
    assert router.last_seq(ROOM) == 10


def test_events_for_unknown_rooms_are_dropped() -> None:
    router = joined_router()
    assert router.route(deliver(1, room=OTHER)).kind is RouteKind.DROP
    assert router.route(TypingEvent(room=OTHER, alias="a")).kind is RouteKind.DROP
    assert router.route(RoomClosed(room=OTHER, reason="closed")).kind is RouteKind.DROP
    assert router.strays == 3


def test_rooms_are_independent() -> None:
    router = joined_router(seq=0)
    router.route(Joined(id=2, seat=seat(OTHER, seq=100)))
    assert router.route(deliver(1)).kind is RouteKind.ROOM
    assert router.route(deliver(1, room=OTHER)).kind is RouteKind.DROP
    assert router.route(deliver(101, room=OTHER)) == Route(RouteKind.ROOM, OTHER)


def test_room_end_forgets_the_room() -> None:
    for end in (RoomClosed(room=ROOM, reason="expired"), Removed(room=ROOM)):
        router = joined_router()
        assert router.route(end) == Route(RouteKind.ROOM_END, ROOM)
        assert not router.has_room(ROOM)
        assert router.route(deliver(1)).kind is RouteKind.DROP


def test_left_reply_forgets_the_room() -> None:
    router = joined_router()
    assert router.route(Left(id=3, room=ROOM)) == Route(RouteKind.REPLY, 3)
    assert router.rooms() == []


def test_queue_events_go_to_the_ticket_until_matched() -> None:
    router = Router()
    router.route(Queued(id=1, queue="q", position=3, token=b"k" * 32))
    assert router.route(QueuePosition(queue="q", position=2)) == Route(RouteKind.QUEUE, "q")
    matched = Matched(queue="q", seat=seat(seq=4))
    assert router.route(matched) == Route(RouteKind.QUEUE, "q")
    assert not router.has_queue("q")
    # The matched room is routed at once, before anyone looks at the Matched event.
    assert router.route(deliver(5)).kind is RouteKind.ROOM


def test_matched_without_ticket_still_registers_the_room() -> None:
    router = Router()
    assert router.route(Matched(queue="q", seat=seat(seq=0))).kind is RouteKind.CONN
    assert router.route(deliver(1)).kind is RouteKind.ROOM


@given(
    total=st.integers(1, 60),
    drops=st.lists(st.tuples(st.integers(0, 60), st.integers(0, 10)), max_size=6),
    own=st.sets(st.integers(1, 60)),
)
def test_exactly_once_in_order_across_many_resumes(
    total: int, drops: list[tuple[int, int]], own: set[int]
) -> None:
    """Simulate a relay: events 1..total (minus our own), drops at arbitrary points,
    each resume replaying from ``after`` minus some overlap. The app sees each once."""
    router = joined_router()
    stream = [n for n in range(1, total + 1) if n not in own]
    seen: list[int] = []
    sent_upto = 0
    for cut, overlap in sorted(drops):
        for n in stream:
            if sent_upto < n <= cut and router.route(deliver(n)).kind is RouteKind.ROOM:
                seen.append(n)
        sent_upto = max(sent_upto, cut)
        after = router.last_seq(ROOM)
        router.route(Joined(id=9, seat=seat(seq=after, resumed=True)))
        sent_upto = max(0, after - overlap)  # replay starts at or before ``after``
    for n in stream:
        if n > sent_upto and router.route(deliver(n)).kind is RouteKind.ROOM:
            seen.append(n)
    assert seen == stream
