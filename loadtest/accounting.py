"""Exact loss accounting: every expected delivery ends up delivered or lost, nothing guessed.

Plain synchronous code with no clocks and no I/O, so it can be tested alone.

Definitions (docs/benchmarks.md repeats them for readers of the report):

* A **message** is a room event the relay accepted and numbered: the sender's ``sent``
  reply gives its room sequence number ``seq`` (``expect``). Pre-moderated messages get
  their ``seq`` when a moderator approves them; the first receipt of an approved message
  names it (``expect`` is idempotent).
* A **tenure** is one seat of one member in one room: it starts at the ``seq`` in the
  ``joined`` reply (the seat sees events numbered above it) and ends at the ``seq`` of
  the ``left``/``removed`` presence event other members see for its alias (``ended``).
  A forced disconnect does not end a tenure: the relay holds the seat and replays what
  it missed on resume, so those messages are still owed to it.
* The **expected** deliveries are the pairs (message, tenure) where the message's
  ``seq`` lies strictly inside the tenure and the tenure is not the sender's.
* A **receipt** is a ``deliver`` event a member's connection decoded. The first receipt
  of an expected delivery makes it **delivered**; it is also **reordered** when a higher
  ``seq`` of that tenure had already arrived. Later receipts of the same delivery are
  **duplicated**. A receipt of anything not expected (the member's own message, outside
  its tenure, a number the relay never acknowledged) is **unexpected**.
* **lost** = expected - delivered, so ``expected == delivered + lost`` always holds.
"""

from __future__ import annotations

from array import array
from dataclasses import asdict, dataclass
from enum import Enum

NOBODY = -1  #: ``senders`` value of a sequence number that is not a known message

_NOT_SEEN = 0
_IN_ORDER = 1
_OUT_OF_ORDER = 2


class Receipt(Enum):
    """How one receipt was classified when it arrived."""

    FIRST = "first"  #: first receipt for this tenure and seq, in order
    REORDERED = "reordered"  #: first receipt, but a higher seq arrived before it
    DUPLICATE = "duplicate"  #: this tenure already received this seq
    OUTSIDE = "outside"  #: no tenure of this member covers this seq


@dataclass(slots=True)
class Counts:
    """The ledger's totals (all integers; they add across workers)."""

    numbered: int = 0  #: distinct messages with a room seq (accepted or approved)
    expected: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    unexpected: int = 0

    def add(self, other: Counts) -> None:
        """Add ``other`` into these counts (merging workers)."""
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class _Tenure:
    __slots__ = ("duplicates", "end_seq", "join_seq", "max_seq", "member", "outside", "seen")

    def __init__(self, member: int, join_seq: int) -> None:
        self.member = member
        self.join_seq = join_seq
        self.end_seq: int | None = None
        #: seen[s - join_seq - 1]: _NOT_SEEN, _IN_ORDER or _OUT_OF_ORDER (one byte a seq).
        self.seen = bytearray()
        self.max_seq = join_seq
        self.duplicates = 0
        self.outside = 0

    def covers(self, seq: int) -> bool:
        return seq > self.join_seq and (self.end_seq is None or seq < self.end_seq)


class _Room:
    __slots__ = ("active", "senders", "tenures")

    def __init__(self) -> None:
        #: senders[seq - 1] is the member that sent message ``seq`` (or NOBODY).
        self.senders = array("q")
        self.tenures: list[_Tenure] = []
        self.active: dict[str, _Tenure] = {}  #: alias -> tenure not known to have ended


class Accountant:
    """The ledger of one worker: it sees every member of the rooms it drives.

    Memory is about one byte per (tenure, room seq) plus eight bytes per room seq, so a
    long soak stays small.
    """

    def __init__(self) -> None:
        self._rooms: dict[str, _Room] = {}
        self._current: dict[tuple[int, str], _Tenure] = {}  #: (member, room) -> tenure
        self.receipts = 0  #: every receipt, for progress displays
        self._orphans = 0  #: receipts for a member holding no seat in that room

    def _room(self, room: str) -> _Room:
        ledger = self._rooms.get(room)
        if ledger is None:
            ledger = self._rooms[room] = _Room()
        return ledger

    # ----------------------------------------------------------------- tenures

    def seat(self, member: int, room: str, alias: str, join_seq: int) -> None:
        """``member`` got a seat in ``room`` under ``alias``; it sees seqs above ``join_seq``."""
        ledger = self._room(room)
        tenure = _Tenure(member, join_seq)
        ledger.tenures.append(tenure)
        ledger.active[alias] = tenure
        self._current[(member, room)] = tenure

    def ended(self, room: str, alias: str, seq: int) -> None:
        """Someone saw presence ``left``/``removed`` for ``alias`` at ``seq`` (idempotent)."""
        ledger = self._rooms.get(room)
        if ledger is None:
            return
        tenure = ledger.active.get(alias)
        if tenure is not None and tenure.join_seq < seq:
            tenure.end_seq = seq
            del ledger.active[alias]

    def gone(self, member: int, room: str) -> None:
        """``member`` gave up its seat (its ``left`` reply): later receipts are not owed."""
        self._current.pop((member, room), None)

    # ---------------------------------------------------------------- messages

    def expect(self, room: str, seq: int, sender: int) -> None:
        """The relay accepted ``sender``'s message as ``seq`` in ``room`` (idempotent)."""
        if seq < 1:
            raise ValueError("room sequence numbers start at 1")
        senders = self._room(room).senders
        if len(senders) < seq:
            senders.extend([NOBODY] * (seq - len(senders)))
        known = senders[seq - 1]
        if known not in (NOBODY, sender):
            raise ValueError(f"seq {seq} was already accounted to another sender")
        senders[seq - 1] = sender

    def received(self, member: int, room: str, seq: int) -> Receipt:
        """``member`` decoded a ``deliver`` event numbered ``seq`` in ``room``."""
        self.receipts += 1
        tenure = self._current.get((member, room))
        if tenure is None or not tenure.covers(seq):
            if tenure is not None:
                tenure.outside += 1
            else:
                self._orphans += 1
            return Receipt.OUTSIDE
        index = seq - tenure.join_seq - 1
        seen = tenure.seen
        if len(seen) <= index:
            seen.extend(bytes(index + 1 - len(seen)))
        if seen[index] != _NOT_SEEN:
            tenure.duplicates += 1
            return Receipt.DUPLICATE
        if seq < tenure.max_seq:
            seen[index] = _OUT_OF_ORDER
            return Receipt.REORDERED
        seen[index] = _IN_ORDER
        tenure.max_seq = seq
        return Receipt.FIRST

    # ------------------------------------------------------------------ totals

    def counts(self) -> Counts:
        """Classify every expected delivery (cost linear in the ledger's size)."""
        c = Counts(unexpected=self._orphans)
        for ledger in self._rooms.values():
            senders = ledger.senders
            last = len(senders)
            c.numbered += sum(1 for s in senders if s != NOBODY)
            for tenure in ledger.tenures:
                member = tenure.member
                seen = tenure.seen
                first = tenure.join_seq + 1
                stop = last + 1 if tenure.end_seq is None else min(tenure.end_seq, last + 1)
                c.duplicated += tenure.duplicates
                c.unexpected += tenure.outside
                for seq in range(first, stop):
                    sender = senders[seq - 1]
                    index = seq - first
                    mark = seen[index] if index < len(seen) else _NOT_SEEN
                    if sender in (NOBODY, member):
                        if mark != _NOT_SEEN:
                            c.unexpected += 1
                        continue
                    c.expected += 1
                    if mark == _NOT_SEEN:
                        c.lost += 1
                    else:
                        c.delivered += 1
                        if mark == _OUT_OF_ORDER:
                            c.reordered += 1
                # Receipts beyond the last numbered message cannot be owed.
                for index in range(max(0, stop - first), len(seen)):
                    if seen[index] != _NOT_SEEN:
                        c.unexpected += 1
        return c
