"""What a load run is (``LoadSpec``) and what each worker hands back (``WorkerResult``).

Both are picklable: the spec goes to worker processes, the results come back to the
parent, which merges them (``loadtest.runner``) and reports (``loadtest.report``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

KINDS = ("direct", "group", "premoderated")
#: Handshakes refused by admission control (4402) are retried this many times.
REFUSAL_RETRIES = 8
#: A create_room refused for its proof of work is retried (new challenge) this often.
POW_RETRIES = 3
#: Extra member slots a group room is created with, for churn visitors.
VISITOR_HEADROOM = 16
#: Member ids of churn visitors start here (room members use small ids).
VISITOR_BASE = 0x8000_0000


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """What to run (picklable: it is handed to worker processes)."""

    url: str
    key: bytes
    #: Further processes of the same cluster (``--url`` repeated): member ``n`` connects
    #: to ``urls[n % len(urls)]``, so every room spans processes.
    more_urls: tuple[str, ...] = ()
    rooms: int = 10
    members: int = 2
    rate: float = 1.0  #: messages per second per member (0: connect and stay idle)
    size: int = 64  #: body bytes (at least the 16-byte stamp)
    ramp_up: float = 0.0  #: seconds over which rooms start, evenly spaced
    duration: float = 10.0  #: seconds of sending after the ramp-up
    kind: str = "group"
    churn_leave: float = 0.0  #: leaves per second per member (it rejoins after churn_pause)
    churn_join: float = 0.0  #: visitors per second per room (join, stay, leave)
    churn_drop: float = 0.0  #: forced disconnects (then resume) per second per member
    churn_pause: float = 1.0
    visitor_stay: float = 5.0
    settle: float = 10.0  #: longest wait after sending for outstanding deliveries
    connect_timeout: float = 10.0
    moderator_token: bytes | None = None
    timeline_interval: float = 1.0
    seed: int = 0

    @property
    def urls(self) -> tuple[str, ...]:
        return (self.url, *self.more_urls)

    def url_for(self, member: int, moves: int = 0) -> str:
        """Where member ``member`` connects (after ``moves`` resumes: the next process)."""
        urls = self.urls
        return urls[(member + moves) % len(urls)]

    def validate(self) -> None:
        """Refuse loads that cannot run, with a message saying why (``ValueError``)."""
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        if self.kind == "direct" and self.members != 2:
            raise ValueError("direct rooms have exactly 2 members (--members 2)")
        if self.kind == "direct" and self.churn_join:
            raise ValueError("direct rooms have no room for churn visitors (--churn-join)")
        if self.kind == "premoderated" and self.moderator_token is None:
            raise ValueError("pre-moderated rooms need a moderator token")
        if self.members < 1 or self.rooms < 0 or self.rate < 0 or self.duration < 0:
            raise ValueError("rooms, members, rate and duration must not be negative")
        if min(self.churn_leave, self.churn_join, self.churn_drop) < 0:
            raise ValueError("churn rates must not be negative")

    @property
    def stride(self) -> int:
        """Member ids reserved per room."""
        return self.members + 1


@dataclass(slots=True)
class WorkerResult:
    """What a worker hands back (picklable; the parent merges several)."""

    counts: dict[str, int]
    sent: int  #: sends the relay acknowledged (``sent`` replies)
    steady_sent: int  #: of which stamped after the ramp-up
    latency: bytes
    handshake: bytes
    timeline: dict[int, bytes]
    errors: dict[str, int]
    churn: dict[str, int]
    handshakes: int
    connect_start: float | None  #: time.monotonic() of the first initial connect
    connect_end: float | None  #: and of the last one finished
    send_start: float | None
    send_end: float | None
    members: int
    connections: int  #: initial connections (members and moderator bots)
    sends_behind: int = 0
    approvals: int = 0
    refusals: int = 0
    pow_solved: int = 0
    unnumbered: int = 0  #: approved pre-moderated messages nobody received (so no seq)
    extra: dict[str, Any] = field(default_factory=dict)


ProgressSink = Callable[[dict[str, Any]], None]


__all__ = [
    "KINDS", "POW_RETRIES", "REFUSAL_RETRIES", "VISITOR_BASE", "VISITOR_HEADROOM", "LoadSpec",
    "ProgressSink", "WorkerResult",
]  # fmt: skip
