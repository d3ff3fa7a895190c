"""Objective parsing and verdicts (no relay needed)."""

from __future__ import annotations

from typing import Any

import pytest

from haven.loadtest import slo


def report(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "latency_ms": {"p50": 1.0, "p90": 2.0, "p99": 50.0, "p999": 80.0, "max": 90.0,
                       "count": 10},
        "handshake_ms": {"p50": 3.0, "p99": 9.0, "count": 4},
        "lost": 0, "expected": 100, "duplicated": 0, "reordered": 0, "unexpected": 0,
        "errors": 0, "deliveries_per_s": 500.0, "messages_per_s": 100.0,
    }
    base.update(changes)
    return base


def test_default_objective_passes_a_clean_run() -> None:
    result = slo.verdict(slo.parse("p99<100ms,loss=0,errors=0"), report())
    assert result["passed"] is True
    assert [c["metric"] for c in result["checks"]] == ["p99", "loss", "errors"]


def test_units_are_milliseconds() -> None:
    checks = slo.parse("p99<0.1s, p50 <= 1500us, max<91")
    assert [c.value for c in checks] == [100.0, 1.5, 91.0]
    assert slo.verdict(checks, report())["passed"] is True
    assert slo.verdict(slo.parse("p50<1ms"), report())["passed"] is False


def test_each_failed_check_is_named() -> None:
    result = slo.verdict(slo.parse("p99<10ms,loss=0,errors=0"), report(errors=2))
    assert result["passed"] is False
    failed = [c["check"] for c in result["checks"] if not c["passed"]]
    assert failed == ["p99<10ms", "errors=0"]


def test_loss_as_a_share_of_expected() -> None:
    assert slo.verdict(slo.parse("loss<1%"), report(lost=0))["passed"]
    assert not slo.verdict(slo.parse("loss<1%"), report(lost=1))["passed"]  # 1 % exactly


def test_no_deliveries_fails_latency_checks() -> None:
    empty = report(latency_ms={"count": 0, "p99": 0.0})
    assert slo.verdict(slo.parse("p99<100ms"), empty)["passed"] is False


def test_rates_and_handshakes() -> None:
    checks = slo.parse("deliveries_per_s>=500,handshake_p99<10ms")
    assert slo.verdict(checks, report())["passed"] is True


@pytest.mark.parametrize("text", ["", "p99", "p99<fast", "p98<1ms", "errors<1ms", "p99<5%"])
def test_bad_objectives_are_refused(text: str) -> None:
    with pytest.raises(slo.SLOError):
        slo.parse(text)
