"""Small resource limiters used by the synchronous core (time is always passed in)."""

from __future__ import annotations


class TokenBucket:
    """A token bucket: ``rate`` tokens per second up to ``burst``; one request, one token.

    Time is an argument, never read here, so the bucket is exact under a mock clock.
    """

    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._stamp = now

    def take(self, now: float, cost: float = 1.0) -> float | None:
        """Take ``cost`` tokens; return ``None`` on success or seconds until possible."""
        tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if tokens >= cost:
            self._tokens = tokens - cost
            return None
        self._tokens = tokens
        return (cost - tokens) / self.rate
