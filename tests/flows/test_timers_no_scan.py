"""Timers with every flow built, as the relay builds its hub: nothing scans every room.

``tests/relay/test_hub.py`` shows it for plain rooms; here the flows hold timed state
too (a held queue place, a handoff code, a held message, a crisis flag, a removed
member's token, a scheduled room). With 10,000 idle rooms, the hub's rooms and held
seats are swapped for containers that fail on any iteration: a timer pass, whether
nothing or something is due, may look things up by key but never walk them all.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NoReturn

from haven.protocol import messages as m
from haven.relay import flows
from haven.relay.rooms import Room, Seat

from .helpers import Operator
from .hubkit import Kit

IDLE_ROOMS = 10_000
GRACE = 60.0
IDLE_TTL = 3600.0
PENDING_TTL = 600.0


def _walked() -> NoReturn:
    raise AssertionError("a timer pass walked every room or held seat")


class NoWalkDict(dict[str, Room]):
    """The hub's rooms: lookups by code are fine, iteration fails the test."""

    def __iter__(self) -> Iterator[str]:
        _walked()

    def keys(self) -> Any:
        _walked()

    def values(self) -> Any:
        _walked()

    def items(self) -> Any:
        _walked()


class NoWalkSet(set[Seat]):
    """The hub's held seats: membership is fine, iteration fails the test."""

    def __iter__(self) -> Iterator[Seat]:
        _walked()


def test_a_timer_pass_walks_no_room_with_every_flow_built(operator: Operator) -> None:
    kit = Kit(
        operator,
        relay={"max_rooms": IDLE_ROOMS + 10, "resume_grace": GRACE, "room_idle_ttl": IDLE_TTL},
        moderation={"pending_ttl": int(PENDING_TTL)},
        rooms=[{"name": "circle", "topic": "Sunday circle", "days": ["sunday"],
                "start": "13:00", "end": "15:00", "timezone": "America/New_York"}],
    )  # fmt: skip
    hub = kit.hub
    for _ in range(IDLE_ROOMS):
        kit.call(kit.peer(), m.CreateRoom, kind="group")
    # Timed state in every flow.
    away = kit.peer()
    place = kit.call(away, m.RequestHelp, queue="helpline").token
    hub.disconnect(away, kit.now)  # the place is held for the grace window
    kit.call(kit.peer(), m.RequestHelp, queue="helpline")
    staff = kit.peer("staff", queues=("helpline",))
    direct = kit.call(staff, m.TakeNext, queue="helpline").seat.room
    assert isinstance(kit.call(staff, m.HandoffInvite, room=direct), m.Handoff)
    moderator = kit.peer("moderator", rooms=("*",))
    group = kit.call(moderator, m.CreateRoom, kind="group", premoderated=True).seat.room
    member, removed = kit.peer(), kit.peer()
    kit.call(member, m.Join, room=group)
    item = kit.call(member, m.Send, room=group, body=b"held for review").item
    assert item is not None
    kit.call(member, m.Crisis, room=group)
    alias = kit.call(removed, m.Join, room=group).seat.alias
    kit.call(moderator, m.Remove, room=group, alias=alias)
    ext = flows.installed(hub)
    moderation = ext.moderation
    assert ext.queues.matched
    assert ext.handoffs.by_code
    assert moderation.removed_tokens
    assert moderation.with_pending
    assert ext.crisis.last_flag
    hub.out.clear()
    assert len(hub.rooms) == IDLE_ROOMS + 2

    hub.rooms = NoWalkDict(hub.rooms)
    hub.held = NoWalkSet(hub.held)

    hub.handle_timers(kit.now)  # the schedule's first look (its bounded list only)
    first = hub.next_deadline()
    assert first is not None
    assert first > kit.now
    hub.handle_timers(first - 0.5)  # nothing due: nothing touched, nothing ended
    assert len(hub.rooms) == IDLE_ROOMS + 2
    assert hub.tokens.get(place) is not None

    # Every deadline before the rooms' idle TTL, one pass each, as the relay wakes.
    passes = 0
    while (due := hub.next_deadline()) is not None and due < IDLE_TTL:
        hub.handle_timers(due)
        passes += 1
    assert passes < 20  # one wake-up per deadline, not one per second or per room
    assert hub.tokens.get(place) is None  # the held place gave up
    assert not ext.queues.matched  # the matched place's token is forgotten
    assert not ext.handoffs.by_code  # the spoken code expired
    assert not moderation.removed_tokens
    assert not moderation.with_pending  # the held message expired
    assert not ext.crisis.last_flag
    assert len(hub.rooms) == IDLE_ROOMS + 2

    hub.handle_timers(IDLE_TTL)  # every room idles out, each by its own timer
    assert not hub.rooms
    # The scheduled room opens at its window (Sunday 13:00 New York = 18:00 UTC).
    opens = hub.next_deadline()
    assert opens == 9 * 3600.0
    hub.handle_timers(opens)
    assert [room.topic for room in dict.values(hub.rooms)] == ["Sunday circle"]
