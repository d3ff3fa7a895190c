"""Scheduled rooms: weekly windows in a time zone, across daylight-saving changes.

Calendar time is injected (the flows' clock is anchored at a chosen instant) and
Trio's MockClock moves time, so nothing sleeps on the wall clock.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import trio

from haven.client import errors
from haven.protocol import codes
from haven.protocol import messages as m
from haven.relay import flows
from haven.relay.flows.schedule import Recurrence

from .helpers import Operator, anchor, connect, flows_extra, next_event, relay_with

NY = ZoneInfo("America/New_York")
SUNDAY_AFTERNOON = Recurrence((6,), dt.time(13), dt.time(15), NY)
LINK_CODE = codes.new_room_code()


def ny(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return dt.datetime(year, month, day, hour, minute, tzinfo=NY).timestamp()


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC).timestamp()


def test_windows_keep_local_time_across_the_autumn_change() -> None:
    # 2024-11-03 is a Sunday and the day New York falls back (EDT -> EST at 02:00).
    before = SUNDAY_AFTERNOON.window_at(utc(2024, 10, 27, 17, 30))
    assert before == (utc(2024, 10, 27, 17), utc(2024, 10, 27, 19))  # 13:00 EDT = 17:00 UTC
    saturday_noon = ny(2024, 11, 2, 12)
    assert SUNDAY_AFTERNOON.window_at(saturday_noon) is None
    opens = SUNDAY_AFTERNOON.next_open(saturday_noon)
    assert opens == utc(2024, 11, 3, 18)  # 13:00 EST = 18:00 UTC
    assert opens - saturday_noon == 26 * 3600  # 24 h + 1 h to 13:00 + 1 h gained
    assert SUNDAY_AFTERNOON.window_at(opens) == (opens, opens + 2 * 3600)
    assert SUNDAY_AFTERNOON.window_at(opens - 1) is None


def test_windows_keep_local_time_across_the_spring_change() -> None:
    # 2024-03-10 is a Sunday: New York springs forward (EST -> EDT at 02:00).
    saturday_noon = ny(2024, 3, 9, 12)
    opens = SUNDAY_AFTERNOON.next_open(saturday_noon)
    assert opens == utc(2024, 3, 10, 17)  # 13:00 EDT
    assert opens - saturday_noon == 24 * 3600  # 25 h to 13:00, minus the lost hour
    # A window starting inside the missing hour still opens, with the pre-change offset.
    early = Recurrence((6,), dt.time(2, 30), dt.time(4), NY)
    window = early.window_at(utc(2024, 3, 10, 7, 45))
    assert window == (utc(2024, 3, 10, 7, 30), utc(2024, 3, 10, 8))


def test_overnight_windows_and_description() -> None:
    friday_night = Recurrence((4,), dt.time(22), dt.time(1), NY)
    assert friday_night.window_at(ny(2024, 11, 9, 0, 30)) == (
        ny(2024, 11, 8, 22), ny(2024, 11, 9, 1)
    )
    assert friday_night.window_at(ny(2024, 11, 9, 1)) is None
    assert SUNDAY_AFTERNOON.describe() == "every Sunday 13:00-15:00 America/New_York"


def rooms_config() -> list[dict[str, Any]]:
    return [
        {
            "name": "sunday-circle",
            "topic": "Sunday survivors' circle",
            "days": ["sunday"],
            "start": "13:00",
            "end": "15:00",
            "timezone": "America/New_York",
            "premoderated": True,
            "rules": "No names, no details that identify anyone.",
        },
        {
            "name": "night-line",
            "topic": "Friday night check-in",
            "days": ["fri"],
            "start": dt.time(22),
            "end": dt.time(1),
            "timezone": "America/New_York",
            "listed": False,
            "code": LINK_CODE,
        },
    ]


def retry_between(exc: Any, wall_before: float, wall_after: float, opens: float) -> None:
    """``retry_after`` is the (rounded up) time to ``opens`` at some instant in between."""
    assert opens - wall_after <= exc.retry_after <= opens - wall_before + 1


async def test_scheduled_room_opens_closes_and_is_wiped(
    nursery: trio.Nursery, operator: Operator, autojump_clock: trio.testing.MockClock
) -> None:
    info = await relay_with(nursery, flows_extra(operator, rooms=rooms_config()))
    schedules = flows.installed(info.relay.hub).schedules
    code = schedules.rooms[0].code
    saturday_noon = ny(2024, 11, 2, 12)
    sunday_open = ny(2024, 11, 3, 13)
    assert sunday_open - saturday_noon == 26 * 3600
    async with connect(info) as alice, connect(info) as mod:
        anchor(info, saturday_noon)
        t0 = trio.current_time()
        listing = await alice.directory()
        elapsed = trio.current_time() - t0
        assert [(r.topic, r.open, r.room) for r in listing] == [
            ("Sunday survivors' circle", False, None)
        ]  # the link-only room is not listed
        entry = listing[0]
        assert entry.schedule == "every Sunday 13:00-15:00 America/New_York"
        assert entry.opens_in is not None
        assert 26 * 3600 - elapsed - 1 <= entry.opens_in <= 26 * 3600 + 1
        with pytest.raises(errors.NotOpenYet) as early:
            await alice.join(code)
        wall_now = saturday_noon + (trio.current_time() - t0)
        retry_between(early.value, saturday_noon, wall_now, sunday_open)
        with pytest.raises(errors.NotOpenYet):
            await alice.join(LINK_CODE)

        # Two seconds before the opening; the next housekeeping tick opens the room.
        anchor(info, sunday_open - 2)
        await trio.sleep(5)
        assert code in info.relay.hub.rooms
        (entry,) = await alice.directory()
        assert (entry.open, entry.room, entry.opens_in) == (True, code, None)
        room = await alice.join(code)
        assert room.seat.premoderated
        assert room.seat.rules == "No names, no details that identify anyone."
        await mod.auth(operator.token("moderator", rooms=("sunday-circle",), now=sunday_open))
        moderating = await mod.join(code)
        assert moderating.moderator
        item = (await room.send(b"hello everyone")).item
        assert item is not None
        assert (await next_event(moderating.events(), m.Pending)).item.item == item

        # Ten seconds before the close: at the close, members are told and all is wiped.
        anchor(info, ny(2024, 11, 3, 15) - 10)
        await trio.sleep(15)
        for r in (room, moderating):
            closed = await next_event(r.events(), m.RoomClosed)
            assert closed.reason == "schedule"
        assert code not in info.relay.hub.rooms
        leftovers = [
            v for v in info.relay.hub.tokens.values() if getattr(v, "room", None) is not None
        ]
        assert not [v for v in leftovers if v.room.code == code]
        with pytest.raises(errors.NotOpenYet) as later:
            await alice.join(code)
        week = 7 * 86400 - 2 * 3600
        assert later.value.retry_after is not None
        assert week - 60 <= later.value.retry_after <= week


async def test_link_only_room_and_moderator_close_for_the_window(
    nursery: trio.Nursery, operator: Operator, autojump_clock: trio.testing.MockClock
) -> None:
    info = await relay_with(nursery, flows_extra(operator, rooms=rooms_config()))
    async with connect(info) as alice, connect(info) as mod:
        anchor(info, ny(2024, 11, 8, 23))  # inside Friday 22:00-01:00
        room = await alice.join(LINK_CODE.upper())  # opened on demand, any spelling
        assert room.code == LINK_CODE
        assert room.seat.topic == "Friday night check-in"
        assert [r.topic for r in await alice.directory()] == ["Sunday survivors' circle"]
        await mod.auth(
            operator.token("moderator", rooms=("night-line",), now=ny(2024, 11, 8, 22))
        )
        moderating = await mod.join(LINK_CODE)
        await moderating.close()
        assert (await next_event(room.events(), m.RoomClosed)).reason == "closed"
        await trio.sleep(3)  # ticks inside the window do not reopen it
        assert LINK_CODE not in info.relay.hub.rooms
        with pytest.raises(errors.NotOpenYet) as closed:
            await alice.join(LINK_CODE)
        assert closed.value.retry_after is not None
        assert closed.value.retry_after >= 7 * 86400 - 2 * 3600
