"""Wall-clock time for the flows, derived from the hub's monotonic ``now``.

The hub is driven by ``trio.current_time()``, which is monotonic and has no relation
to the calendar. Token expiry and weekly schedules need calendar time, so the flows
take one wall-clock reading when they are installed (the *anchor*) and from then on
compute ``wall = anchor_wall + (now - anchor_now)``. Tests inject a fixed anchor and
drive ``now`` with Trio's ``MockClock``, so schedules and expiry are tested without
sleeping and without depending on the machine's clock.
"""

from __future__ import annotations

from collections.abc import Callable


class Clock:
    """Maps the hub's monotonic ``now`` to Unix time."""

    __slots__ = ("anchor_now", "anchor_wall", "epoch", "latest")

    def __init__(self, wall_now: Callable[[], float], now: float) -> None:
        self.anchor_wall = wall_now()
        self.anchor_now = now
        #: The newest ``now`` the flows have seen (for hooks that are not given one).
        self.latest = now
        #: Bumped by every re-anchoring: timers computed in wall time are then stale.
        self.epoch = 0

    def wall(self, now: float) -> float:
        """Unix time at monotonic time ``now``."""
        return self.anchor_wall + (now - self.anchor_now)

    def seen(self, now: float) -> None:
        """Record ``now`` as the latest time seen."""
        self.latest = max(self.latest, now)

    def set(self, wall: float, now: float) -> None:
        """Re-anchor: monotonic ``now`` is Unix time ``wall`` (tests, clock fixes)."""
        self.anchor_wall = wall
        self.anchor_now = now
        self.latest = now
        self.epoch += 1
