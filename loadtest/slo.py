"""Service-level objectives: parse ``"p99<100ms,loss=0,errors=0"`` and judge a report.

Each comma-separated check is ``METRIC OP VALUE[UNIT]``:

* latency percentiles ``p50 p90 p99 p999 max`` (end to end, units ``us ms s``, ms if
  none), and ``handshake_p50 handshake_p99`` likewise;
* counts ``loss`` (lost deliveries; a ``%`` value means a share of expected),
  ``duplicated``, ``reordered``, ``unexpected``, ``errors``;
* rates ``deliveries_per_s`` and ``messages_per_s``.

``OP`` is one of ``< <= = == >= >``. A run with nothing measured for a latency check
(no deliveries) fails that check rather than passing it vacuously.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    "=": operator.eq,
    "==": operator.eq,
    ">=": operator.ge,
    ">": operator.gt,
}
_UNITS_MS = {"": 1.0, "ms": 1.0, "us": 0.001, "µs": 0.001, "s": 1000.0}
_LATENCY = {"p50", "p90", "p99", "p999", "max"}
_HANDSHAKE = {"handshake_p50": "p50", "handshake_p99": "p99"}
_COUNTS = {"loss", "duplicated", "reordered", "unexpected", "errors"}
_RATES = {"deliveries_per_s", "messages_per_s"}
_CHECK = re.compile(r"^\s*([a-z_0-9]+)\s*(<=|>=|==|=|<|>)\s*([0-9]*\.?[0-9]+)\s*(%|[a-zµ]*)\s*$")


class SLOError(ValueError):
    """The objective text cannot be parsed; the message says which part and why."""


@dataclass(frozen=True, slots=True)
class Check:
    """One parsed objective, e.g. ``p99 < 100`` (milliseconds)."""

    text: str
    metric: str
    op: str
    value: float  #: milliseconds for latencies, a fraction for ``loss`` with ``%``
    percent: bool = False

    def observe(self, report: Mapping[str, Any]) -> float | None:
        """The report's value for this metric (``None`` when nothing was measured)."""
        if self.metric in _LATENCY:
            latency = report["latency_ms"]
            return None if not latency.get("count") else float(latency[self.metric])
        if self.metric in _HANDSHAKE:
            handshake = report["handshake_ms"]
            return None if not handshake.get("count") else float(handshake[_HANDSHAKE[self.metric]])
        if self.metric == "loss":
            lost = float(report["lost"])
            if self.percent:
                expected = float(report["expected"])
                return 100.0 * lost / expected if expected else 0.0
            return lost
        return float(report[self.metric])

    def judge(self, report: Mapping[str, Any]) -> dict[str, Any]:
        observed = self.observe(report)
        # A run that sends no messages (idle or handshake-only load) has no delivery
        # latency to judge: such objectives are "not applicable", not failed.
        idle = float(report.get("config", {}).get("rate_per_member", 1) or 0) == 0
        applicable = not (observed is None and idle and self.metric in _LATENCY)
        passed = not applicable or (
            observed is not None and _OPS[self.op](observed, self.value)
        )
        return {
            "check": self.text,
            "metric": self.metric,
            "observed": observed,
            "threshold": self.value,
            "passed": passed,
            "applicable": applicable,
        }


def parse(text: str) -> list[Check]:
    """Parse an objective list; raises ``SLOError`` naming the bad part."""
    checks: list[Check] = []
    for part in (p for p in text.split(",") if p.strip()):
        match = _CHECK.match(part)
        if match is None:
            raise SLOError(f"cannot read objective {part.strip()!r}: expected e.g. p99<100ms")
        metric, op, number, unit = match.groups()
        value = float(number)
        if metric in _LATENCY or metric in _HANDSHAKE:
            if unit not in _UNITS_MS:
                raise SLOError(f"{part.strip()!r}: latency units are us, ms or s")
            value *= _UNITS_MS[unit]
        elif metric in _COUNTS or metric in _RATES:
            if unit == "%" and metric != "loss":
                raise SLOError(f"{part.strip()!r}: only loss may be a percentage")
            if unit not in ("", "%"):
                raise SLOError(f"{part.strip()!r}: {metric} takes no unit")
        else:
            raise SLOError(f"{part.strip()!r}: unknown metric {metric!r}")
        checks.append(Check(part.strip(), metric, op, value, percent=unit == "%"))
    if not checks:
        raise SLOError("the objective is empty")
    return checks


def verdict(checks: list[Check], report: Mapping[str, Any]) -> dict[str, Any]:
    """``{"passed": bool, "checks": [...]}`` for ``report``."""
    judged = [c.judge(report) for c in checks]
    return {"passed": all(j["passed"] for j in judged), "checks": judged}
