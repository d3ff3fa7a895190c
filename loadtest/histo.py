"""HDR histograms of latency in microseconds: record, ship between processes, summarise.

HDR histograms keep every percentile within a fixed relative error at any count, and
merge exactly: each worker records its own, sends the compressed encoding to the
parent, and the parent adds them. Averaging per-worker percentiles would be wrong.
"""

from __future__ import annotations

from hdrh.histogram import HdrHistogram

HIGHEST_US = 3_600_000_000  #: an hour: anything slower is recorded as an hour
DIGITS = 3  #: significant digits of the run-wide histograms (0.1 % error)
TIMELINE_DIGITS = 2  #: per-interval histograms for the plot (1 % error, 8x smaller)


def new(digits: int = DIGITS) -> HdrHistogram:
    """An empty microsecond histogram."""
    return HdrHistogram(1, HIGHEST_US, digits)


def record_us(hist: HdrHistogram, micros: int) -> None:
    """Record one latency, clamped into the trackable range."""
    hist.record_value(min(max(micros, 1), HIGHEST_US))


def encode(hist: HdrHistogram) -> bytes:
    """The compressed, picklable form sent from a worker to the parent."""
    return bytes(hist.encode())


def merge(encoded: list[bytes], digits: int = DIGITS) -> HdrHistogram:
    """Add encoded histograms into one."""
    total = new(digits)
    for data in encoded:
        if data:
            total.decode_and_add(data)
    return total


def summary_ms(hist: HdrHistogram) -> dict[str, float]:
    """p50/p90/p99/p99.9/max/mean in milliseconds, and the sample count."""
    count = hist.get_total_count()
    if not count:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "p999": 0.0, "max": 0.0, "mean": 0.0,
                "count": 0}  # fmt: skip
    return {
        "p50": hist.get_value_at_percentile(50) / 1000,
        "p90": hist.get_value_at_percentile(90) / 1000,
        "p99": hist.get_value_at_percentile(99) / 1000,
        "p999": hist.get_value_at_percentile(99.9) / 1000,
        "max": hist.get_max_value() / 1000,
        "mean": round(hist.get_mean_value() / 1000, 3),
        "count": count,
    }


def distribution_ms(hist: HdrHistogram) -> list[tuple[float, float]]:
    """(percentile, latency ms) points for a percentile-distribution plot."""
    if not hist.get_total_count():
        return []
    points = []
    for pct in (0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 99.999, 100):
        points.append((float(pct), hist.get_value_at_percentile(pct) / 1000))
    return points
