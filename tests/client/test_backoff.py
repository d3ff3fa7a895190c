"""The reconnect schedule: exponential, jittered, capped, and within the budget."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from haven.client.backoff import BASE, CAP, backoff_delays


def test_schedule_shape() -> None:
    delays = list(backoff_delays(60.0, rng=random.Random(1)))
    nominal = [min(CAP, BASE * 2**n) for n in range(len(delays))]
    for delay, nom in zip(delays[:-1], nominal, strict=False):
        assert nom / 2 <= delay <= nom
    assert sum(delays) == pytest.approx(60.0)
    assert max(delays) <= CAP
    # 0.2 0.4 0.8 1.6 3.2 6.4 then capped at 10
    assert nominal[:7] == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0])


def test_deterministic_with_seed() -> None:
    one = list(backoff_delays(30.0, rng=random.Random(7)))
    two = list(backoff_delays(30.0, rng=random.Random(7)))
    assert one == two


def test_jitter_spreads_clients() -> None:
    firsts = {round(next(backoff_delays(10.0, rng=random.Random(i))), 6) for i in range(50)}
    assert len(firsts) > 40


def test_first_delay_honours_retry_after() -> None:
    delays = list(backoff_delays(60.0, first=5.0, rng=random.Random(3)))
    assert delays[0] == 5.0
    assert delays[1] <= BASE * 2


def test_retry_after_beyond_budget_is_trimmed() -> None:
    assert list(backoff_delays(2.0, first=5.0)) == [2.0]


def test_zero_budget_means_no_attempt() -> None:
    assert list(backoff_delays(0.0)) == []


@given(
    budget=st.floats(0.01, 120.0),
    first=st.floats(0.0, 30.0),
    seed=st.integers(0, 2**32),
)
def test_never_over_budget(budget: float, first: float, seed: int) -> None:
    delays = list(backoff_delays(budget, first=first, rng=random.Random(seed)))
    assert delays
    assert all(d > 0 for d in delays)
    assert sum(delays) <= budget + 1e-9
    assert all(d <= max(CAP, first) for d in delays)
