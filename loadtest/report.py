"""The report: merge worker results into one dict, print it as a table, plot it.

The JSON report is the contract (operations scripts read it); the table and the plot
are views of the same dict, so what a person reads is what a script checks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from . import histo
from .accounting import Counts
from .relayproc import RelaySampler
from .spec import LoadSpec, WorkerResult

_TIMELINE_MAX_POINTS = 400
#: Mean whole-host CPU (percent of one core, per core) above which the host saturated.
HOST_BUSY = 85.0


def _span(starts: list[float | None], ends: list[float | None]) -> float:
    s = [x for x in starts if x is not None]
    e = [x for x in ends if x is not None]
    return max(e) - min(s) if s and e and max(e) > min(s) else 0.0


def build(spec: LoadSpec, results: list[WorkerResult], cpu: dict[str, Any],
          sampler: RelaySampler, wall_s: float, mode: str) -> dict[str, Any]:  # fmt: skip
    """One report from every worker's result (the SLO verdict is added by the caller)."""
    counts = Counts()
    for r in results:
        counts.add(Counts(**r.counts))
    latency = histo.merge([r.latency for r in results])
    handshake = histo.merge([r.handshake for r in results])
    errors: dict[str, int] = {}
    churn: dict[str, int] = {}
    for r in results:
        for k, v in r.errors.items():
            errors[k] = errors.get(k, 0) + v
        for k, v in r.churn.items():
            churn[k] = churn.get(k, 0) + v
    send_s = _span([r.send_start for r in results], [r.send_end for r in results])
    # Rates are steady-state: messages stamped after the ramp-up, over the time they
    # were really sent. Without a ramp-up, connecting eats into the nominal duration
    # (dividing by it under-reported throughput by 8-11 %), so the send span is used.
    steady_s = spec.duration if spec.duration > 0 else send_s
    starts = [r.send_start for r in results if r.send_start is not None]
    connects = [r.connect_start for r in results if r.connect_start is not None]
    if spec.ramp_up == 0 and spec.duration > 0 and starts and connects:
        late = max(0.0, min(starts) - min(connects))  # connecting, before the first send
        steady_s = max(spec.duration - late, spec.duration / 10)
    steady_sent = sum(r.steady_sent for r in results)
    connect_s = _span([r.connect_start for r in results], [r.connect_end for r in results])
    connections = sum(r.connections for r in results)
    sent = sum(r.sent for r in results)
    timeline = _timeline(results, spec.timeline_interval)
    memory = _memory(sampler, connections)
    host = cpu.get("host_mean_percent")
    if host is not None:
        ours = cpu["total_mean_percent"] + (memory.get("cpu_mean_percent") or 0.0)
        cpu["other_processes_mean_percent"] = round(max(0.0, host - ours), 1)
    warnings = []
    if cpu.get("saturated"):
        warnings.append(
            "a load generator worker averaged over 90% of a core: the generator, not the "
            "relay, may have limited this run; add --workers or a second machine"
        )
    cores = cpu.get("host_cores") or 1
    if host is not None and host >= HOST_BUSY * cores:
        warnings.append(
            f"the host's CPUs were {host / cores:.0f}% busy on average (relay, generator "
            "and other processes together): this run measured the host, not the relay "
            "alone; run the generator on another machine"
        )
    refused = sum(r.refusals for r in results)
    solved = sum(r.pow_solved for r in results)
    if refused or solved:
        warnings.append(
            f"the relay's admission control acted ({refused:,} handshakes refused and "
            f"retried, {solved:,} proofs of work solved): this run measured admission "
            "control as much as capacity (use --spawn without --spawn-admission, or "
            "raise the relay's handshake rate, to measure the data path)"
        )
    if warnings:
        cpu["warning"] = " | ".join(warnings)
    return {
        "mode": mode,
        "config": {
            "url": spec.url, "rooms": spec.rooms, "members": spec.members, "kind": spec.kind,
            "rate_per_member": spec.rate, "size": spec.size, "ramp_up_s": spec.ramp_up,
            "duration_s": spec.duration, "churn_leave": spec.churn_leave,
            "churn_join": spec.churn_join, "churn_drop": spec.churn_drop,
            "workers": len(results) if not cpu.get("in_process") else 0,
        },
        "sent": sent,
        "numbered": counts.numbered,
        "expected": counts.expected,
        "delivered": counts.delivered,
        "lost": counts.lost,
        "duplicated": counts.duplicated,
        "reordered": counts.reordered,
        "unexpected": counts.unexpected,
        "errors": sum(errors.values()),
        "errors_by_code": dict(sorted(errors.items())),
        "latency_ms": histo.summary_ms(latency),
        "latency_distribution_ms": histo.distribution_ms(latency),
        "messages_per_s": round(steady_sent / steady_s, 1) if steady_s else 0.0,
        "deliveries_per_s": round(latency.get_total_count() / steady_s, 1) if steady_s else 0.0,
        "sending_s": round(send_s, 3),
        "steady_s": steady_s,
        "handshake_ms": histo.summary_ms(handshake),
        "handshakes": sum(r.handshakes for r in results),
        "connections": connections,
        "handshakes_per_s": round(connections / connect_s, 1) if connect_s else 0.0,
        "connect_phase_s": round(connect_s, 3),
        "churn": churn,
        "admission": {
            "handshakes_refused_then_retried": sum(r.refusals for r in results),
            "rooms_created_with_proof_of_work": sum(r.pow_solved for r in results),
        },
        "sends_behind_schedule": sum(r.sends_behind for r in results),
        "moderation": {
            "approvals": sum(r.approvals for r in results),
            "approved_never_received": sum(r.unnumbered for r in results),
        },
        "generator_cpu": cpu,
        "relay": memory,
        "wall_s": round(wall_s, 3),
        "timeline": timeline,
    }


def _timeline(results: list[WorkerResult], interval: float) -> list[dict[str, float]]:
    slots: dict[int, list[bytes]] = {}
    for r in results:
        for slot, data in r.timeline.items():
            slots.setdefault(slot, []).append(data)
    points = []
    for slot in sorted(slots):
        h = histo.merge(slots[slot], histo.TIMELINE_DIGITS)
        points.append({
            "t_s": round(slot * interval, 3),
            "count": h.get_total_count(),
            "p50_ms": h.get_value_at_percentile(50) / 1000,
            "p99_ms": h.get_value_at_percentile(99) / 1000,
            "max_ms": h.get_max_value() / 1000,
        })  # fmt: skip
    return points[-_TIMELINE_MAX_POINTS:]


def _memory(sampler: RelaySampler, connections: int) -> dict[str, Any]:
    samples = sampler.samples
    cpu = sampler.cpu[1:] if len(sampler.cpu) > 2 else sampler.cpu
    out: dict[str, Any] = {
        "memory_source": sampler.source,
        "cpu_mean_percent": round(sum(cpu) / len(cpu), 1) if cpu else None,
        "cpu_max_percent": round(max(cpu), 1) if cpu else None,
    }
    if not samples:
        out["rss_bytes"] = None
        return out
    before = samples[0][1]
    peak = max(v for _, v in samples)
    out["rss_bytes"] = {"before": before, "peak": peak, "end": samples[-1][1]}
    out["rss_per_connection_bytes"] = (
        round((peak - before) / connections) if connections else None
    )
    step = max(1, len(samples) // _TIMELINE_MAX_POINTS)
    out["rss_samples"] = [[round(t, 2), v] for t, v in samples[::step]]
    return out


def step_summary(rooms: int, rep: dict[str, Any]) -> dict[str, Any]:
    """One line of a ramp: the step's size, verdict and headline figures."""
    return {
        "rooms": rooms,
        "passed": rep["slo"]["passed"],
        "p99_ms": rep["latency_ms"]["p99"],
        "lost": rep["lost"],
        "errors": rep["errors"],
        "errors_by_code": rep["errors_by_code"],
        "deliveries_per_s": rep["deliveries_per_s"],
        "generator_saturated": rep["generator_cpu"].get("saturated", False),
        "relay_cpu_mean_percent": rep["relay"].get("cpu_mean_percent"),
        "generator_cpu_mean_percent": rep["generator_cpu"].get("total_mean_percent"),
        "other_processes_mean_percent": rep["generator_cpu"].get("other_processes_mean_percent"),
    }


#: SLO metrics drawn as threshold lines on the latency panels (milliseconds).
_PLOTTED_LATENCIES = ("p50", "p90", "p95", "p99", "p999", "max", "mean")


def offered_deliveries_per_s(cfg: dict[str, Any]) -> float:
    """What the configured load asks for: every member sends at its rate, and each
    message is delivered to every other member of its room."""
    members = int(cfg["members"])
    return float(cfg["rooms"]) * members * float(cfg["rate_per_member"]) * max(0, members - 1)


def write_json(rep: dict[str, Any], path: Path) -> None:
    """Write the report (it holds aggregate figures only: no codes, no bodies)."""
    path.write_text(json.dumps(rep, indent=2, sort_keys=False) + "\n", "utf-8")


def render(rep: dict[str, Any], console: Console) -> None:
    """The summary table and the verdict."""
    table = Table(title=f"haven loadtest ({rep['mode']})", show_header=True)
    table.add_column("measure")
    table.add_column("value", justify="right")
    cfg = rep["config"]
    table.add_row("load", f"{cfg['rooms']} {cfg['kind']} rooms x {cfg['members']} members, "
                          f"{cfg['rate_per_member']}/s each, {cfg['size']} B")  # fmt: skip
    table.add_row("sent / expected", f"{rep['sent']:,} / {rep['expected']:,}")
    table.add_row("delivered", f"{rep['delivered']:,}")
    for name in ("lost", "duplicated", "reordered", "unexpected", "errors"):
        table.add_row(name, f"{rep[name]:,}")
    lat = rep["latency_ms"]
    table.add_row(
        "latency ms p50/p90/p99", f"{lat['p50']:.2f} / {lat['p90']:.2f} / {lat['p99']:.2f}"
    )
    table.add_row("latency ms p99.9/max", f"{lat['p999']:.2f} / {lat['max']:.2f}")
    table.add_row("messages/s, deliveries/s",
                  f"{rep['messages_per_s']:,} / {rep['deliveries_per_s']:,}")  # fmt: skip
    hs = rep["handshake_ms"]
    table.add_row("handshake ms p50/p99", f"{hs['p50']:.2f} / {hs['p99']:.2f}")
    table.add_row("handshakes/s (connect phase)", f"{rep['handshakes_per_s']:,}")
    cpu = rep["generator_cpu"]
    table.add_row("generator CPU % (per worker)",
                  ", ".join(f"{w['mean_percent']:.0f}" for w in cpu["workers"]))  # fmt: skip
    if cpu.get("other_processes_mean_percent") is not None:
        table.add_row("other processes CPU % mean", f"{cpu['other_processes_mean_percent']:.0f}")
    relay = rep["relay"]
    if relay.get("cpu_mean_percent") is not None:
        table.add_row("relay CPU % mean", f"{relay['cpu_mean_percent']:.0f}")
    if relay.get("rss_bytes"):
        rss = relay["rss_bytes"]
        table.add_row("relay RSS MiB before/peak",
                      f"{rss['before'] / 2**20:.1f} / {rss['peak'] / 2**20:.1f}")  # fmt: skip
    adm = rep["admission"]
    if adm["handshakes_refused_then_retried"] or adm["rooms_created_with_proof_of_work"]:
        table.add_row("admission: handshakes refused (retried)",
                      f"{adm['handshakes_refused_then_retried']:,}")  # fmt: skip
        table.add_row("admission: rooms created with proof of work",
                      f"{adm['rooms_created_with_proof_of_work']:,}")  # fmt: skip
    if rep["churn"]:
        table.add_row("churn", ", ".join(f"{k}={v}" for k, v in sorted(rep["churn"].items())))
    if rep["sends_behind_schedule"]:
        table.add_row("sends behind schedule", f"{rep['sends_behind_schedule']:,}")
    if rep["errors_by_code"]:
        table.add_row("errors by code",
                      ", ".join(f"{k}={v}" for k, v in rep["errors_by_code"].items()))  # fmt: skip
    console.print(table)
    if "ramp" in rep:
        ramp = Table(title="ramp steps")
        for col in ("rooms", "passed", "p99 ms", "lost", "errors", "deliveries/s"):
            ramp.add_column(col, justify="right")
        for s in rep["ramp"]["steps"]:
            ramp.add_row(
                str(s["rooms"]), "yes" if s["passed"] else "NO", f"{s['p99_ms']:.2f}",
                str(s["lost"]), str(s["errors"]), f"{s['deliveries_per_s']:,}",
            )
        console.print(ramp)
        console.print(f"largest passing step: {rep['ramp']['largest_passing_rooms']} rooms")
    if cpu.get("warning"):
        console.print(f"[yellow]warning:[/] {cpu['warning']}")
    for check in rep["slo"]["checks"]:
        if not check.get("applicable", True):
            console.print(f"  [dim]n/a[/] {check['check']} (no messages in this run)")
            continue
        mark = "[green]pass[/]" if check["passed"] else "[red]FAIL[/]"
        console.print(f"  {mark} {check['check']} (observed {check['observed']})")
    verdict = "[bold green]SLO PASSED[/]" if rep["slo"]["passed"] else "[bold red]SLO FAILED[/]"
    if rep.get("partial"):
        verdict += " [bold yellow](PARTIAL: interrupted, covers only what was measured)[/]"
    console.print(verdict)


def plot(rep: dict[str, Any], path: Path) -> None:
    """The verdict, latency over time and its distribution against the SLO thresholds,
    offered vs achieved throughput, the capacity curve of a ramp, relay memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda v, _pos: f"{v:g}")

    memory = rep["relay"].get("rss_samples") or []
    ramp = rep.get("ramp")
    panels = 3 + (1 if memory else 0) + (1 if ramp else 0)
    fig, axes = plt.subplots(panels, 1, figsize=(10, 3.6 * panels), constrained_layout=True)
    cfg = rep["config"]
    passed = ramp["largest_passing_rooms"] is not None if ramp else rep["slo"]["passed"]
    verdict = "PASS" if passed else "FAIL"
    if rep.get("partial"):
        verdict += " (PARTIAL: interrupted)"
    fig.suptitle(f"haven loadtest {verdict}: {cfg['rooms']} {cfg['kind']} rooms x "
                 f"{cfg['members']} members at {cfg['rate_per_member']}/s, {cfg['size']} B "
                 f"bodies", color="green" if passed else "red")  # fmt: skip
    latency_slo = [c for c in rep["slo"]["checks"] if c["metric"] in _PLOTTED_LATENCIES]

    def thresholds(ax: Any) -> None:
        for check in latency_slo:
            ax.axhline(check["threshold"], color="red", linestyle="--", linewidth=1,
                       label=f"SLO {check['check']}")  # fmt: skip

    ax = axes[0]
    points = rep["timeline"]
    if points:
        t = [p["t_s"] for p in points]
        ax.plot(t, [p["p50_ms"] for p in points], label="p50")
        ax.plot(t, [p["p99_ms"] for p in points], label="p99")
        ax.plot(t, [p["max_ms"] for p in points], label="max", alpha=0.5)
        thresholds(ax)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(plain)
    ax.set_title("end-to-end latency over time (per interval)")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("latency (ms)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left")
    ax = axes[1]
    dist = rep["latency_distribution_ms"]
    if dist:
        # x axis: 1/(1 - percentile), the usual HDR view that stretches the tail.
        xs = [1 / (1 - min(p, 99.9999) / 100) for p, _ in dist]
        ax.plot(xs, [v for _, v in dist], marker="o")
        thresholds(ax)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(plain)
        ticks = [(50, "50%"), (90, "90%"), (99, "99%"), (99.9, "99.9%"), (99.99, "99.99%")]
        ax.set_xticks([1 / (1 - p / 100) for p, _ in ticks], [label for _, label in ticks])
        if latency_slo:
            ax.legend(loc="upper left")
    ax.set_title(f"latency distribution ({rep['latency_ms']['count']:,} deliveries)")
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (ms)")
    ax.grid(True, which="both", alpha=0.3)
    ax = axes[2]
    offered = offered_deliveries_per_s(cfg)
    if len(points) >= 2:
        step = points[1]["t_s"] - points[0]["t_s"] or 1.0
        ax.plot([p["t_s"] for p in points], [p["count"] / step for p in points],
                label="achieved")  # fmt: skip
    ax.axhline(offered, color="grey", linestyle="--", label=f"offered ({offered:,.0f}/s)")
    ax.set_title(f"deliveries per second: offered vs achieved "
                 f"(steady mean {rep['deliveries_per_s']:,}/s)")  # fmt: skip
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("deliveries/s")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    k = 3
    if ramp:
        ax = axes[k]
        k += 1
        steps = ramp["steps"]
        rooms = [s["rooms"] for s in steps]
        ax.plot(rooms, [s["p99_ms"] for s in steps], marker="o", color="tab:orange",
                label="p99 (ms)")  # fmt: skip
        thresholds(ax)
        ax.set_xlabel("rooms")
        ax.set_ylabel("p99 latency (ms)")
        ax.legend(loc="upper left")
        twin = ax.twinx()
        twin.plot(rooms, [s["deliveries_per_s"] for s in steps], marker="s",
                  label="deliveries/s")  # fmt: skip
        twin.set_ylabel("deliveries/s")
        ax.set_title(f"capacity curve (largest passing step: {ramp['largest_passing_rooms']})")
        ax.grid(True, alpha=0.3)
    if memory:
        ax = axes[k]
        ax.plot([s[0] for s in memory], [s[1] / 2**20 for s in memory])
        ax.set_title(f"relay resident memory ({rep['relay'].get('memory_source')})")
        ax.set_xlabel("seconds since start")
        ax.set_ylabel("RSS (MiB)")
        ax.grid(True, alpha=0.3)
    fig.savefig(path, dpi=100)
    plt.close(fig)
