"""The reconnect schedule: exponential backoff with jitter, bounded by a total budget.

Why jitter: when a relay restarts, thousands of clients drop at the same instant; without
jitter they would all come back in lockstep and knock it over again. Why a total budget:
a dropped seat is held only for the relay's resume grace window (``resume_grace``), so
retrying after it has passed can only fail.

Pure and clock-free (the caller sleeps), so the schedule is unit-testable.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

BASE = 0.2  #: first delay, seconds
CAP = 10.0  #: no single delay is longer than this
FACTOR = 2.0
DEFAULT_BUDGET = 60.0  #: give up after this much waiting when the relay does not say


def backoff_delays(
    budget: float = DEFAULT_BUDGET,
    *,
    base: float = BASE,
    cap: float = CAP,
    factor: float = FACTOR,
    first: float = 0.0,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """Yield the delays to sleep before each reconnect attempt; stop when over budget.

    Attempt ``n`` (from 0) waits ``min(cap, base * factor**n)`` scaled by a random factor
    in ``[0.5, 1.0]`` ("equal jitter": never zero, so a crowd spreads out, yet never
    more than the nominal value). ``first`` is a lower bound for the first delay (the
    relay's ``retry_after`` when it said it was draining). The sum of all yielded delays
    never exceeds ``budget``: the last delay is shortened to fit it exactly, so the final
    attempt happens right at the end of the budget instead of never.
    """
    rand = rng if rng is not None else random.Random()
    spent = 0.0
    n = 0
    while spent < budget:
        nominal = min(cap, base * factor**n)
        delay = nominal * (0.5 + 0.5 * rand.random())
        if n == 0:
            delay = max(delay, first)
        delay = min(delay, budget - spent)
        spent += delay
        n += 1
        yield delay


__all__ = ["BASE", "CAP", "DEFAULT_BUDGET", "FACTOR", "backoff_delays"]
