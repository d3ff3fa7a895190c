"""The relay-wide memory budget: one number that bounds everything clients can make it hold.

Each per-client limit (ring bytes per room, outbound buffer per connection, pending items
per room, ...) is small, but multiplied by the global caps their product is far more
memory than a machine has (about 40 GiB at the defaults before this budget existed).
So the relay also keeps a running estimate of the client-held state it has, in bytes,
and compares it with ``memory_budget_bytes``:

* **rings** (the largest term) are counted exactly as they change (``Room.record``);
* **outbound buffers, pending moderation items, private buffers of held seats** and a
  fixed per-object cost for **connections, rooms, seats and queue places** are summed
  once per housekeeping pass (once a second), which is cheap and bounded;
* below ``SOFT`` of the budget everything is admitted; above it, requests that would
  create state (``create_room``, ``join``, ``send``, held moderation items,
  ``request_help``) are refused with 502 RELAY_BUSY and ``retry_after``;
* above ``SOFT`` the relay also **sheds the heaviest holders first**, once a second: it
  halves the largest room ring or drops the connection with the largest outbound buffer
  (close 4406), whichever holds more, until it is back under ``SHED_TO``. So an attack
  costs the attackers their own state, and others are admitted again within a second.

Plain synchronous code, no I/O: the hub owns one ``MemoryBudget`` and the shell feeds it.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Fraction of the budget above which new state is refused (RELAY_BUSY) and the
#: heaviest holders are shed, down to ``SHED_TO``.
SOFT = 0.9
SHED_TO = 0.8
#: Estimated bytes of one open connection beyond its buffers. Measured: ~9 KiB RSS per
#: idle joined connection (docs/benchmarks.md); kept at the earlier, larger figure so
#: that a busy connection's transient objects are covered and the budget errs early.
CONNECTION_BYTES = 24 * 1024
#: Estimated bytes of one room and of one seat (objects, dict entries, alias, token).
ROOM_BYTES = 2048
SEAT_BYTES = 1024
#: Estimated bytes of one queue place (ticket object, token, index entries).
TICKET_BYTES = 512


@dataclass(slots=True)
class MemoryBudget:
    """Running estimate of client-held state against ``limit`` bytes."""

    limit: int
    #: Bytes in every room's resume ring (kept exact by ``Room.record``/``clear_ring``).
    rings: int = 0
    #: Everything else, as summed by the last ``refresh``.
    outbound: int = 0
    held: int = 0
    fixed: int = 0
    #: Requests refused and holders shed (aggregate counters for the metrics).
    refused: int = 0
    shed: int = 0

    @property
    def used(self) -> int:
        return self.rings + self.outbound + self.held + self.fixed

    def admits(self, cost: int) -> bool:
        """Whether new state of about ``cost`` bytes fits under the soft mark."""
        if self.used + cost <= self.limit * SOFT:
            return True
        self.refused += 1
        return False

    def over(self) -> bool:
        """Whether the relay holds more than it should keep (time to shed)."""
        return self.used > self.limit * SHED_TO

    def refresh(self, *, outbound: int, held: int, connections: int, rooms: int, seats: int,
                tickets: int) -> None:
        """Update the summed terms (once per housekeeping pass)."""
        self.outbound = outbound
        self.held = held
        self.fixed = (
            connections * CONNECTION_BYTES + rooms * ROOM_BYTES + seats * SEAT_BYTES
            + tickets * TICKET_BYTES
        )  # fmt: skip


__all__ = [
    "CONNECTION_BYTES", "ROOM_BYTES", "SEAT_BYTES", "SHED_TO", "SOFT", "TICKET_BYTES",
    "MemoryBudget",
]  # fmt: skip
