"""Scheduled group rooms: open on a weekly window in a time zone, wiped at the close.

Each ``[[rooms]]`` entry of the config is a room that exists only during its weekly
window (e.g. every Sunday 13:00-15:00 America/New_York). Windows are computed in the
room's own time zone with ``zoneinfo``, so a room that opens at 13:00 opens at 13:00
local time on both sides of a daylight-saving change (the UTC instant moves). Local
times that do not exist on a spring-forward day are read with the offset in force just
before the change (02:30 becomes 03:30 daylight time), as ``zoneinfo`` does.

* Before the window, ``join`` answers ``NOT_OPEN_YET`` with ``retry_after`` = seconds
  until the next opening; the directory lists listed rooms with ``opens_in``.
* During the window the room exists under a fixed code: from the config (needed for a
  link-only room, whose link is handed out in advance), or drawn at start-up. It opens
  at the window's start (its timer) or on a join inside the window, whichever is first.
* At the close every member gets ``room_closed`` with reason ``schedule`` and the room
  is dropped: seats, tokens, ring, pending items, all gone. The next window starts a
  fresh room under the same code.
* A moderator who closes the room closes it for the rest of that window.

All time arrives as the hub's monotonic ``now`` and is turned into calendar time by
the flows' ``Clock``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from haven.protocol import codes
from haven.protocol import messages as m
from haven.protocol.errors import CodeFormatError, ErrorCode

from ..hub import Hub, Peer, bucket_members, fail
from ..rooms import Room
from .clock import Clock
from .settings import WEEKDAYS, RoomDef

DAY = dt.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Recurrence:
    """A weekly window: on ``days`` (Monday = 0) from ``start`` to ``end`` in ``tz``."""

    days: tuple[int, ...]
    start: dt.time
    end: dt.time
    tz: ZoneInfo

    @classmethod
    def of(cls, room: RoomDef) -> Recurrence:
        return cls(room.days, room.start, room.end, room.tz)

    def _windows(self, wall: float) -> list[tuple[float, float]]:
        """Windows starting from the day before ``wall``'s local date to 8 days after."""
        today = dt.datetime.fromtimestamp(wall, self.tz).date()
        out = []
        for offset in range(-1, 9):
            day = today + offset * DAY
            if day.weekday() not in self.days:
                continue
            opens = dt.datetime.combine(day, self.start, tzinfo=self.tz).timestamp()
            end_day = day if self.end > self.start else day + DAY
            closes = dt.datetime.combine(end_day, self.end, tzinfo=self.tz).timestamp()
            if closes > opens:
                out.append((opens, closes))
        return out

    def window_at(self, wall: float) -> tuple[float, float] | None:
        """The window (opens, closes) containing ``wall``, if any."""
        for opens, closes in self._windows(wall):
            if opens <= wall < closes:
                return opens, closes
        return None

    def next_open(self, wall: float) -> float:
        """The first opening strictly after ``wall``."""
        return min(opens for opens, _ in self._windows(wall) if opens > wall)

    def describe(self) -> str:
        """Human-readable, e.g. ``every Sunday 13:00-15:00 America/New_York``."""
        days = ", ".join(WEEKDAYS[d].capitalize() for d in self.days)
        return f"every {days} {self.start:%H:%M}-{self.end:%H:%M} {self.tz.key}"


class ScheduledRoom:
    """One configured room and, during its window, the live ``Room``."""

    __slots__ = ("closed_window", "code", "definition", "recurrence", "room")

    def __init__(self, definition: RoomDef) -> None:
        self.definition = definition
        self.recurrence = Recurrence.of(definition)
        self.code = definition.code or codes.new_room_code()
        self.room: Room | None = None
        #: Opening time of a window a moderator closed early (stays closed until it ends).
        self.closed_window: float | None = None

    def window(self, wall: float) -> tuple[float, float] | None:
        """The window the room should be open in at ``wall`` (None: closed)."""
        window = self.recurrence.window_at(wall)
        if window is None or window[0] == self.closed_window:
            return None
        return window

    def opens_in(self, wall: float) -> int:
        """Whole seconds (rounded up) until the room next opens."""
        current = self.recurrence.window_at(wall)
        after = current[1] - 0.5 if current is not None else wall
        return max(1, math.ceil(self.recurrence.next_open(after) - wall))


class Schedules:
    """Opens and closes scheduled rooms; answers joins and the directory for them."""

    def __init__(self, hub: Hub, rooms: tuple[RoomDef, ...], clock: Clock) -> None:
        self.hub = hub
        self.clock = clock
        self.rooms = [ScheduledRoom(d) for d in rooms]
        self.by_code = {r.code: r for r in self.rooms}
        #: When ``on_timer`` must next run: the nearest window boundary, or at once
        #: (``-inf``) after something that may change it (start, a room ended, the clock
        #: re-anchored: see ``Clock.epoch``).
        self._due = float("-inf")
        self._epoch = clock.epoch
        #: Whether this process opens scheduled rooms (in a cluster, only the leader).
        self.enabled: Callable[[], bool] = lambda: True

    def name_of(self, code: str) -> str | None:
        """The configured name of the scheduled room with ``code`` (moderator scopes)."""
        scheduled = self.by_code.get(code)
        return scheduled.definition.name if scheduled is not None else None

    # ------------------------------------------------------------- open/close

    def _open(self, scheduled: ScheduledRoom, window: tuple[float, float], now: float) -> Room:
        d = scheduled.definition
        room = self.hub.new_room(
            now,
            kind="group",
            topic=d.topic,
            listed=d.listed,
            premoderated=d.premoderated,
            max_members=d.max_members,
            rules=d.rules,
            code=scheduled.code,
        )
        room.schedule = scheduled
        # The schedule, not inactivity, ends this room: live until the window closes.
        lifetime = window[1] - self.clock.wall(now) + 60
        room.idle_ttl = room.hard_ttl = max(room.hard_ttl, lifetime)
        scheduled.room = room
        return room

    def next_deadline(self) -> float | None:
        if not self.rooms:
            return None
        if self._epoch != self.clock.epoch:
            return float("-inf")
        return self._due

    def on_timer(self, now: float) -> None:
        """Open rooms whose window began, close those whose window ended; then wait for
        the next boundary of any configured window."""
        if not self.enabled():
            self._due = now + 1.0  # not ours to open (yet): look again in a second
            return
        wall = self.clock.wall(now)
        self._epoch = self.clock.epoch
        nearest = float("inf")
        for scheduled in self.rooms:
            current = scheduled.recurrence.window_at(wall)
            boundary = current[1] if current is not None else scheduled.recurrence.next_open(wall)
            nearest = min(nearest, boundary)
            window = scheduled.window(wall)
            room = scheduled.room
            if room is not None and self.hub.rooms.get(room.code) is not room:
                scheduled.room = room = None  # ended some other way (emptied, closed)
            if window is None:
                if room is not None:
                    self.hub.close_room(room, "schedule")
            elif room is None and scheduled.code not in self.hub.rooms:
                self._open(scheduled, window, now)
        self._due = now + (nearest - wall)

    def before_close(self, room: Room, now: float) -> None:
        """A moderator closes a scheduled room: keep it closed for this window."""
        scheduled = room.schedule
        if isinstance(scheduled, ScheduledRoom):
            window = scheduled.recurrence.window_at(self.clock.wall(now))
            if window is not None:
                scheduled.closed_window = window[0]

    def on_room_end(self, room: Room) -> None:
        scheduled = room.schedule
        if isinstance(scheduled, ScheduledRoom) and scheduled.room is room:
            scheduled.room = None
            self._due = float("-inf")  # reopened at once if its window is still open

    # ------------------------------------------------------------- requests

    def prepare_join(self, room_text: str, now: float) -> None:
        """Before a ``join`` looks its room up: a scheduled room is not open yet
        (``NOT_OPEN_YET``), or opens now."""
        try:
            code = codes.parse_room_code(room_text)
        except CodeFormatError:
            code = None
        scheduled = self.by_code.get(code) if code is not None else None
        if scheduled is not None:
            wall = self.clock.wall(now)
            window = scheduled.window(wall)
            if window is None:
                fail(ErrorCode.NOT_OPEN_YET, retry_after=scheduled.opens_in(wall))
            elif scheduled.room is None and code not in self.hub.rooms:
                self._open(scheduled, window, now)

    def check_join(self, peer: Peer, room: Room, now: float) -> None:
        """Part of the hub's join check: never admit to a scheduled room out of hours."""
        scheduled = room.schedule
        if isinstance(scheduled, ScheduledRoom):
            wall = self.clock.wall(now)
            if scheduled.window(wall) is None:
                fail(ErrorCode.NOT_OPEN_YET, retry_after=scheduled.opens_in(wall))

    def directory(self, now: float) -> list[m.RoomInfo]:
        """Directory entries for listed scheduled rooms, open or not yet."""
        wall = self.clock.wall(now)
        out = []
        for scheduled in self.rooms:
            d = scheduled.definition
            if not d.listed:
                continue
            room = scheduled.room
            is_open = scheduled.window(wall) is not None
            out.append(
                m.RoomInfo(
                    room=scheduled.code if is_open else None,
                    topic=d.topic,
                    open=is_open,
                    members=bucket_members(room.members) if room is not None else 0,
                    premoderated=d.premoderated,
                    schedule=scheduled.recurrence.describe()[: m.MAX_TOPIC_LEN],
                    opens_in=None if is_open else scheduled.opens_in(wall),
                )
            )
        return out
