"""Admission control without identities: a handshake-rate cap and adaptive proof of work.

The relay never knows who is connecting, so it cannot block "that client". What it can
do is make the operations that cost it memory or attention expensive for everyone at
once, and only while it is under pressure:

* **Handshake rate.** New handshakes draw from one global token bucket
  (``handshake_rate_per_s``, ``handshake_burst``). Beyond it a connection is refused
  with close code 4402 ``SERVER_FULL`` right after the WebSocket upgrade, before the
  Noise handshake's Diffie-Hellman work.
* **Adaptive proof of work.** The expensive requests (``create_room``,
  ``request_help``, ``handoff_accept``; each handler calls ``hub.check_pow``) carry a
  hashcash proof (``protocol/pow.py``) once the difficulty is above zero. The
  difficulty follows the relay's *load*, the largest of

  - open connections / ``max_connections``,
  - handshakes per second / ``handshake_rate_per_s``,
  - expensive requests per second / ``pow_expensive_per_s``,
  - how full the fullest intake queue's normal lane is (``fill_sources``), so that a
    queue cannot be filled by idle connections without proof of work once it is half full

  (rates smoothed with a ``RATE_TAU`` exponential average). Below ``pow_start_load``
  no work is asked; from there it rises linearly from ``pow_min_difficulty`` bits to
  ``pow_max_difficulty`` bits at load 1.0 (see ``difficulty_for``). It rises at once
  and falls only after ``pow_cooldown`` seconds in which the curve stayed lower, so a
  pulsing attacker cannot keep it oscillating, and it returns to zero when calm.

When the difficulty changes every connected peer is sent ``ChallengeUpdate`` with its
own seed. A peer whose proof fails is also sent the current challenge just before its
error reply, so a client that connected while the difficulty was changing catches up.

Everything here is synchronous and takes ``now`` as an argument, so the controller is
tested with explicit times and no network.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Protocol

from haven.protocol import messages as m

from .config import Config
from .hub import Hub, Peer
from .limits import TokenBucket

#: Time constant (seconds) of the exponential average behind the measured rates.
RATE_TAU = 5.0


class _HasPeer(Protocol):
    """What the controller needs of a connection: its peer (once handshaken)."""

    @property
    def peer(self) -> Peer | None: ...

    @property
    def closing(self) -> bool: ...


def difficulty_for(load: float, config: Config) -> int:
    """The proof-of-work difficulty (bits) the curve asks for at ``load``.

    0 below ``pow_start_load``; then linear from ``pow_min_difficulty`` to
    ``pow_max_difficulty`` (reached at load 1.0), rounded up to whole bits.
    """
    start = config.pow_start_load
    if load < start or config.pow_max_difficulty <= 0:
        return 0
    low, high = config.pow_min_difficulty, config.pow_max_difficulty
    share = min(1.0, (load - start) / (1.0 - start))
    return max(1, min(high, math.ceil(low + (high - low) * share - 1e-9)))


class Admission:
    """The admission controller of one relay: feeds on counts, sets ``hub.pow_difficulty``."""

    def __init__(self, config: Config, hub: Hub, now: float) -> None:
        self.config = config
        self.hub = hub
        self._bucket = TokenBucket(config.handshake_rate_per_s, config.handshake_burst, now)
        self._last = now
        self._handshakes = 0  #: handshake attempts since the last update
        self._expensive = 0  #: expensive requests since the last update
        self._calm_since: float | None = None
        #: Smoothed rates (per second) and the resulting load (1.0 = full).
        self.handshake_rate = 0.0
        self.expensive_rate = 0.0
        self.load = 0.0
        #: Other loads in 0..1 (intake queues' fill), counted like the three rates.
        self.fill_sources: list[Callable[[], float]] = []
        #: Totals for the metrics.
        self.changes = 0
        #: ``hub.expensive_requests`` at start and when last read (the hub counts
        #: ``check_pow`` calls), and requests counted through ``note_expensive``.
        self._hub_start = self._hub_expensive = hub.expensive_requests
        self._noted = 0

    # ------------------------------------------------------------------ inputs

    def admit_handshake(self, now: float) -> bool:
        """Count one handshake attempt; ``False`` when it is over the rate cap."""
        self._handshakes += 1
        return self._bucket.take(now) is None

    def note_expensive(self, n: int = 1) -> None:
        """Count expensive requests that did not pass through ``hub.check_pow``."""
        self._expensive += n
        self._noted += n

    @property
    def expensive_total(self) -> int:
        """Expensive requests since start: the hub's ``check_pow`` calls and noted ones."""
        return self.hub.expensive_requests - self._hub_start + self._noted

    def _read_hub(self) -> None:
        """Take in the expensive requests the hub counted since the last look."""
        seen = self.hub.expensive_requests
        self._expensive += seen - self._hub_expensive
        self._hub_expensive = seen

    # --------------------------------------------------------------- controller

    def update(self, now: float, connections: int) -> int | None:
        """Recompute rates, load and difficulty; the new difficulty if it changed."""
        self._read_hub()
        dt = now - self._last
        if dt <= 0:
            return None
        self._last = now
        alpha = 1.0 - math.exp(-dt / RATE_TAU)
        self.handshake_rate += alpha * (self._handshakes / dt - self.handshake_rate)
        self.expensive_rate += alpha * (self._expensive / dt - self.expensive_rate)
        self._handshakes = 0
        self._expensive = 0
        cfg = self.config
        self.load = max(
            connections / cfg.max_connections,
            self.handshake_rate / cfg.handshake_rate_per_s,
            self.expensive_rate / cfg.pow_expensive_per_s,
            *(source() for source in self.fill_sources),
        )
        target = difficulty_for(self.load, cfg)
        current = self.hub.pow_difficulty
        if target >= current:
            self._calm_since = None
            if target == current:
                return None
        else:
            if self._calm_since is None:
                self._calm_since = now
            if now - self._calm_since < cfg.pow_cooldown:
                return None
            self._calm_since = None
        self.hub.pow_difficulty = target
        self.changes += 1
        return target

    def tick(self, now: float, connections: Iterable[_HasPeer], count: int) -> None:
        """One housekeeping pass: update, and announce a new difficulty to every peer."""
        if self.update(now, count) is None:
            return
        out = self.hub.out
        for conn in connections:
            peer = conn.peer
            if peer is not None and not conn.closing:
                out.append((peer, self.challenge_for(peer)))

    def challenge_for(self, peer: Peer) -> m.ChallengeUpdate:
        """The current challenge under ``peer``'s own seed."""
        return m.ChallengeUpdate(
            challenge=m.Challenge(seed=peer.pow_seed, difficulty=self.hub.pow_difficulty)
        )


__all__ = ["RATE_TAU", "Admission", "difficulty_for"]
