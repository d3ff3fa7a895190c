"""What a load-test message body carries, so any receiver can account for it alone.

Layout (big-endian): sender member id (4 bytes), the sender's message number (4 bytes),
the sender's ``time.monotonic_ns()`` at send (8 bytes), then zero padding up to the
requested size. ``CLOCK_MONOTONIC`` is one clock for every process on a Linux host, so
a receipt in another worker process can subtract the timestamp directly.

The relay never parses bodies (they are opaque bytes to it), so this header costs the
relay nothing and tells the receiver who sent what, and when.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

_HEADER = struct.Struct(">IIQ")
HEADER_SIZE = _HEADER.size  #: 16 bytes: the smallest body a load message can have


class Stamp(NamedTuple):
    """The header of one load message."""

    member: int
    number: int
    sent_ns: int


def make(member: int, number: int, sent_ns: int, size: int) -> bytes:
    """A body of ``max(size, HEADER_SIZE)`` bytes stamped with sender, number and time."""
    header = _HEADER.pack(member, number, sent_ns)
    if size <= HEADER_SIZE:
        return header
    return header + bytes(size - HEADER_SIZE)


def read(body: bytes) -> Stamp | None:
    """The stamp of a load message, or ``None`` for a body the load test did not write."""
    if len(body) < HEADER_SIZE:
        return None
    return Stamp(*_HEADER.unpack_from(body))
