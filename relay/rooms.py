"""Rooms and seats: plain synchronous objects, no I/O, no clock of their own.

A *seat* is one member's place in one room. It belongs to a *peer* (one connection's
view in the core) while that connection is up, and is *held* (``peer is None``) for the
resume grace window after the connection drops. A seat's resume token is the only way
back to it.

Every ordered room event (message, presence, announcement, moderation) gets the next
room sequence number and is kept in a bounded ring, so that a seat coming back can be
given exactly the events it missed: the ring is shared by the whole room (one copy per
event, not per member), and a seat that fell further behind than the ring reaches can
no longer be resumed (a typed ``RESUME_FAILED``, never a silent gap).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from haven.protocol import messages as m

from .budget import MemoryBudget
from .limits import TokenBucket

if TYPE_CHECKING:
    from .peer import Peer


#: Bytes a kept or sent event is counted for beyond its body: the Python objects that
#: hold it in the ring (~200 bytes measured with sys.getsizeof over the dataclass, the
#: tuple and the strings) or, for the send budget, the smallest padded frame (256).
EVENT_OVERHEAD = 256


def event_bytes(event: m.Message) -> int:
    """What one room event costs in the ring and in a room's send budget."""
    body = getattr(event, "body", None)
    return EVENT_OVERHEAD + (len(body) if isinstance(body, bytes) else 0)


@dataclass(eq=False, slots=True)
class Seat:
    """One member's place in a room."""

    room: Room
    alias: str
    token: bytes
    peer: Peer | None
    join_seq: int  #: room seq when the seat was granted; it sees events after this
    role: str | None = None  #: "staff", "responder", "visitor" in direct rooms
    moderator: bool = False
    muted: bool = False
    away_since: float | None = None
    #: The token this seat was last resumed with, valid once more while the seat is held
    #: (covers a ``joined`` lost with its connection; see ``Hub._rotate``).
    prev_token: bytes | None = None
    last_typing: float = float("-inf")
    #: Private events (not in the room ring) that arrived while the seat was held.
    #: (Created on first use: an empty deque costs ~600 bytes on every idle seat.)
    missed: deque[m.Message] | None = None
    missed_overflow: bool = False
    #: ``None`` while sequenced events are pushed to the seat as they happen. Otherwise
    #: the seat is *catching up* (resuming, or its connection fell behind): this is the
    #: last seq handed to its connection, and the rest is pulled from the room's ring as
    #: the connection's socket drains (``Hub.refill``).
    behind: int | None = None


@dataclass(eq=False, slots=True)
class PendingEntry:
    """A pre-moderated message waiting for a moderator's decision."""

    item: int
    author: Seat
    body: bytes
    expires: float


@dataclass(eq=False, slots=True)
class Room:
    """A room: its members, its event sequence and the ring of recent events."""

    code: str
    kind: str  #: "direct" or "group"
    created: float
    max_members: int
    idle_ttl: float
    hard_ttl: float
    ring_size: int
    ring_max_bytes: int
    budget: TokenBucket  #: the room's send budget in bytes (``event_bytes`` per send)
    memory: MemoryBudget  #: the relay's memory budget (ring bytes are counted there)
    topic: str | None = None
    listed: bool = False
    premoderated: bool = False
    rules: str | None = None
    schedule: Any = None  #: the scheduled-room definition this room belongs to, if any
    last_activity: float = 0.0
    seq: int = 0
    locked: bool = False
    seats: dict[str, Seat] = field(default_factory=dict)  #: alias -> seat
    #: (seq, event, seat not to deliver to) for the last ``ring_size`` events.
    ring: deque[tuple[int, m.Message, Seat | None]] = field(default_factory=deque)
    ring_bytes: int = 0  #: estimated bytes the ring holds (``event_bytes`` of each)
    pending: dict[int, PendingEntry] = field(default_factory=dict)
    next_item: int = 1
    removed_tokens: set[bytes] = field(default_factory=set)

    def next_seq(self) -> int:
        """Allocate the next room sequence number."""
        self.seq += 1
        return self.seq

    def record(self, seq: int, event: m.Message, exclude: Seat | None) -> None:
        """Keep ``event`` in the ring for seats that resume or catch up later.

        The ring is bounded both in events (``ring_size``) and in bytes
        (``ring_max_bytes``); the oldest events go first.
        """
        ring = self.ring
        ring.append((seq, event, exclude))
        before = self.ring_bytes
        self.ring_bytes += event_bytes(event)
        while len(ring) > self.ring_size or self.ring_bytes > self.ring_max_bytes:
            _, old, _ = ring.popleft()
            self.ring_bytes -= event_bytes(old)
        self.memory.rings += self.ring_bytes - before

    def shed_ring(self) -> None:
        """Drop the older half of the ring (the relay is over its memory budget)."""
        ring = self.ring
        before = self.ring_bytes
        for _ in range((len(ring) + 1) // 2):
            _, old, _ = ring.popleft()
            self.ring_bytes -= event_bytes(old)
        self.memory.rings += self.ring_bytes - before

    def clear_ring(self) -> None:
        """Forget every kept event (the room ended)."""
        self.ring.clear()
        self.memory.rings -= self.ring_bytes
        self.ring_bytes = 0

    def oldest_replayable(self) -> int:
        """Smallest seq still in the ring (``seq + 1`` when the ring is empty)."""
        return self.ring[0][0] if self.ring else self.seq + 1

    @property
    def members(self) -> int:
        """Seats in the room, present or held."""
        return len(self.seats)

    def moderators(self) -> list[Seat]:
        """Seats that may moderate this room."""
        return [s for s in self.seats.values() if s.moderator]
