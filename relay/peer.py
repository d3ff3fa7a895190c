"""One connection as the hub sees it (``Peer``), the hub's refusal helper and its limits.

Kept apart from the hub so that every part of the relay (rooms, flows, connections) can
name a peer without importing the hub.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from haven.protocol.errors import ErrorCode, RequestError

from .config import Config
from .limits import TokenBucket

if TYPE_CHECKING:
    from .rooms import Seat

#: Seconds a request refused with RELAY_BUSY is told to wait.
BUSY_RETRY_AFTER = 5
#: Bytes of ring events queued for a catching-up connection per refill (the shell
#: refills whenever the connection's socket has drained).
REFILL_BYTES = 128 * 1024
#: Rate-limited frames a connection may send (refilled at ``STRIKE_REFILL_PER_S``)
#: before it is closed with 4400: it keeps sending although told to wait.
MAX_STRIKES = 50
STRIKE_REFILL_PER_S = 1.0
#: Most directory entries in one reply (each entry is ~15 codec items; 2048 allowed).
MAX_DIRECTORY = 100
#: Coarse member-count buckets shown in the directory, so exact counts do not leak.
MEMBER_BUCKETS = (0, 1, 5, 10, 25, 50, 100)


def bucket_members(n: int) -> int:
    """Round ``n`` down to the nearest directory bucket."""
    out = 0
    for b in MEMBER_BUCKETS:
        if n >= b:
            out = b
    return out


class Peer:
    """One connection as the core sees it: its seats, auth claims and rate limit.

    ``sink`` is the shell's handle for delivering to this peer; the core never uses it.
    """

    __slots__ = (
        "bucket", "catching_up", "claims", "closed", "congested", "last_id", "pow_seed",
        "refusals", "seats", "sink", "tickets",
    )  # fmt: skip

    def __init__(
        self, config: Config, now: float, sink: Any = None, pow_seed: bytes = b""
    ) -> None:
        self.seats: dict[str, Seat] = {}  #: room code -> seat
        self.tickets: dict[str, Any] = {}  #: queue name -> place in line (flows)
        self.claims: Any = None  #: verified token claims (flows)
        self.last_id = 0
        #: Budget of rate-limit refusals before the connection is closed (``Hub.charge``).
        self.refusals: TokenBucket | None = None
        self.bucket = TokenBucket(config.rate_per_s, config.rate_burst, now)
        self.sink = sink
        self.closed = False
        #: Set by the shell while this connection's unsent bytes are over the low-water
        #: mark: new room events are then not pushed but pulled from the ring later.
        self.congested = False
        #: Some seat of this peer is catching up (``Seat.behind``): refill on drain.
        self.catching_up = False
        #: Random per-connection seed of the proof-of-work challenge (see protocol.pow).
        self.pow_seed = pow_seed or secrets.token_bytes(32)


def fail(code: ErrorCode, message: str | None = None, retry_after: float | None = None) -> None:
    """Raise the typed error a request handler refuses with."""
    raise RequestError(message, code=code, retry_after=retry_after)


__all__ = [
    "BUSY_RETRY_AFTER", "MAX_DIRECTORY", "MAX_STRIKES", "MEMBER_BUCKETS", "REFILL_BYTES",
    "STRIKE_REFILL_PER_S", "Peer", "bucket_members", "fail",
]  # fmt: skip
