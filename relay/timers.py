"""Deadlines by the object they belong to: the relay's timers, without scanning.

The hub and its flows keep things for a while (a dropped seat for its resume grace, a
room until its idle or hard TTL, a queue place, a held message). Instead of scanning
every room and seat once a second to find what has expired, each such object is given a
deadline here when its clock starts, and the relay asks only for what is due:
``next()`` says when to wake up, ``pop_due(now)`` returns what expired.

A min-heap with lazy cancellation: ``set`` pushes, ``cancel`` only forgets the
deadline, and stale heap entries are skipped when they surface (and the heap is rebuilt
when stale entries outnumber live ones, so it stays O(live deadlines) in size).
Synchronous and clock-free: time is an argument, like everything in the hub.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

#: The heap is rebuilt when it holds more than twice the live deadlines (and this many).
_COMPACT_AT = 64


class Deadlines(Generic[K]):
    """At most one deadline per key; the earliest in O(1) amortised."""

    __slots__ = ("_at", "_heap", "_seq")

    def __init__(self) -> None:
        self._at: dict[K, float] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._seq = 0  #: tie-breaker, so keys themselves are never compared

    def __len__(self) -> int:
        return len(self._at)

    def __contains__(self, key: object) -> bool:
        return key in self._at

    def get(self, key: K) -> float | None:
        """The key's deadline, if it has one."""
        return self._at.get(key)

    def set(self, key: K, when: float) -> None:
        """Give ``key`` the deadline ``when`` (replacing any earlier one)."""
        if self._at.get(key) == when:
            return
        self._at[key] = when
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, key))
        if len(self._heap) > _COMPACT_AT and len(self._heap) > 2 * len(self._at):
            self._compact()

    def cancel(self, key: K) -> None:
        """Forget ``key``'s deadline (no-op if it has none)."""
        self._at.pop(key, None)

    def next(self) -> float | None:
        """The earliest live deadline, or ``None``."""
        heap, at = self._heap, self._at
        while heap:
            when, _, key = heap[0]
            if at.get(key) == when:
                return when
            heapq.heappop(heap)  # cancelled or moved: stale
        return None

    def pop_due(self, now: float) -> list[K]:
        """Every key whose deadline is at or before ``now``, earliest first (removed)."""
        heap, at = self._heap, self._at
        due: list[K] = []
        while heap and heap[0][0] <= now:
            when, _, key = heapq.heappop(heap)
            if at.get(key) == when:
                del at[key]
                due.append(key)
        return due

    def _compact(self) -> None:
        live = {key: when for key, when in self._at.items()}
        self._heap = []
        for key, when in live.items():
            self._seq += 1
            self._heap.append((when, self._seq, key))
        heapq.heapify(self._heap)


__all__ = ["Deadlines"]
