"""Haven's relay against a bare trio-websocket relay, same workloads, same run.

Run from the repository root::

    PYTHONPATH=. python -m bench.relay_bench                 # the whole bench, a few minutes
    PYTHONPATH=. python -m bench.relay_bench --json out.json --idle 10000
    PYTHONPATH=. python -m bench.relay_bench --only closed10 --relays haven \\
        --profile /tmp/haven.prof                            # plus a cProfile of the relay

Each relay runs as its own process (``bench.bare_relay`` and ``python -m haven serve``),
pinned to one CPU; the load comes from ``bench.generator`` worker processes pinned to
the other CPU. Everything targets 127.0.0.1 and stops by itself. Workloads (128-byte
bodies): closed loop at saturation in rooms of 2 and of 10, and a fixed moderate rate
in rooms of 2 (100 rooms, 2,000 msg/s) and of 10 (20 rooms, 400 msg/s = 3,600
deliveries/s). Then the memory cost of idle, joined connections.

The Haven relay runs with its abuse limits (per-connection rate, connection count,
outbound backlog) raised so that they do not interfere with a throughput measurement;
encryption, padding, ordering, acks and the rest of the per-message path are unchanged.
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import pstats
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil
from hdrh.histogram import HdrHistogram

from .generator import HIST_ARGS, WorkerSpec, worker_main

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
#: Set by ``--relay-stderr``: let the relays' logs through to this terminal.
SHOW_RELAY_STDERR = False

#: Limits raised for the bench (everything else is the relay's default behaviour).
HAVEN_BENCH_FLAGS = [
    "--rate-per-s", "1000000000",
    "--rate-burst", "1000000000",
    "--max-connections", "1000000",
    "--max-rooms", "1000000",
    # Admission control would (rightly) refuse a connect storm; the bench measures rooms.
    "--handshake-rate-per-s", "1000000",
    "--handshake-burst", "1000000",
    "--pow-expensive-per-s", "1000000",
    "--outbound-backlog-bytes", str(256 * MIB),
    "--room-rate-bytes-per-s", str(1024 * MIB),
    "--room-burst-bytes", str(1024 * MIB),
    "--resume-buffer-bytes", str(2048 * MIB),
    "--memory-budget-bytes", str(16384 * MIB),
    "--drain-grace", "0.5",
    "--log-level", "WARNING",
]  # fmt: skip


@dataclass(frozen=True)
class Workload:
    """One cell of the table (run against each relay)."""

    name: str
    room_size: int
    rooms: int
    mode: str  #: "closed" or "open"
    window: int = 1  #: closed loop: undelivered messages per member
    rate: float = 0.0  #: open loop: messages/s in total


WORKLOADS = {
    "closed2": Workload("closed2", 2, 50, "closed", window=4),
    "closed10": Workload("closed10", 10, 10, "closed", window=2),
    "open2": Workload("open2", 2, 100, "open", rate=2000.0),
    #: 40 pair setups at a time: 2 connections (+ Noise, create, join for Haven) and
    #: a first message each; figures are pairs per second and each setup's time.
    "setup2": Workload("setup2", 2, 40, "setup"),
    "open10": Workload("open10", 10, 20, "open", rate=400.0),
}


# ------------------------------------------------------------------ relay processes


@dataclass
class RelayProcess:
    """A relay subprocess: its URL, key (Haven) and psutil handle."""

    kind: str
    proc: subprocess.Popen[str]
    url: str
    key: bytes | None
    #: How the cell is reported: the kind, or "base" for Haven from ``--baseline``.
    label: str = ""
    ps: psutil.Process = field(init=False)

    def __post_init__(self) -> None:
        self.ps = psutil.Process(self.proc.pid)
        self.label = self.label or self.kind

    def cpu_seconds(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)

    def stop(self) -> int:
        """SIGINT (Haven drains, cProfile writes its file), then wait; kill if stuck."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


#: Set by ``--baseline DIR``: another checkout of Haven, run as relay "base" (same flags).
BASELINE: Path | None = None


def start_relay(kind: str, cpu: int | None, profile: Path | None = None) -> RelayProcess:
    """Start a relay on 127.0.0.1 with a free port; parse its first stdout line.

    ``kind`` "base" is Haven from the ``--baseline`` checkout (an older commit, say),
    started from that directory (``python -m haven``, or ``python -m relay.cli`` for
    checkouts from before the ``haven`` namespace), so before and after are measured in
    one run with the same generator.
    """
    label = kind
    root = ROOT
    if kind == "base":
        assert BASELINE is not None, "relay 'base' needs --baseline DIR"
        kind, root = "haven", BASELINE
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p)
    py = [sys.executable]
    module = ["haven"] if (root / "haven" / "__main__.py").exists() else ["relay.cli"]
    if profile is not None and kind == "bare":
        py += ["-m", "cProfile", "-o", str(profile)]
    if kind == "haven" and profile is not None:
        # haven serve refuses file writes after start-up; this runner does not.
        cmd = [
            *py, "-m", "bench.profile_relay", "--out", str(profile), "--host", "127.0.0.1",
            "--port", "0", "--metrics-port", "0", *HAVEN_BENCH_FLAGS,
        ]  # fmt: skip
    elif kind == "bare":
        cmd = [*py, "-m", "bench.bare_relay", "--host", "127.0.0.1", "--port", "0"]
    elif kind == "asyncio":
        cmd = [*py, "-m", "bench.asyncio_relay", "--host", "127.0.0.1", "--port", "0"]
    else:
        cmd = [
            *py, "-m", *module, "serve", "--host", "127.0.0.1", "--port", "0",
            "--metrics-port", "0", *HAVEN_BENCH_FLAGS,
        ]  # fmt: skip
    # The relay's log (stderr) is discarded unless asked for: nothing is written to disk.
    stderr = None if SHOW_RELAY_STDERR else subprocess.DEVNULL
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, cwd=root
    )
    if cpu is not None:
        os.sched_setaffinity(proc.pid, {cpu})
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    words = line.split()
    if kind == "bare" and line.startswith("bare relay ws://"):
        return RelayProcess(kind, proc, words[2], None)
    if kind == "asyncio" and line.startswith("asyncio relay ws://"):
        # The same plain forwarding contract as the bare relay: the same generator.
        return RelayProcess("bare", proc, words[2], None, "asyncio")
    if kind == "haven" and line.startswith("haven relay ws://") and words[3].startswith("key="):
        text = words[3][4:]
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return RelayProcess(kind, proc, words[2], key, label)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"{kind} relay did not start: {line!r} (see --relay-stderr)")


# ------------------------------------------------------------------ workers


class Workers:
    """Generator processes and their pipes."""

    def __init__(self, specs: list[WorkerSpec]) -> None:
        ctx = multiprocessing.get_context("fork")
        self.pipes = []
        self.procs = []
        for spec in specs:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(spec, child), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    def expect(self, what: str, timeout: float) -> list[Any]:
        """Wait for message ``what`` from every worker."""
        out = []
        deadline = time.monotonic() + timeout
        for pipe in self.pipes:
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                raise RuntimeError(f"a generator worker did not report {what!r} in time")
            tag, value = pipe.recv()
            if tag == "error":
                raise RuntimeError(f"generator worker failed: {value}")
            if tag != what:
                raise RuntimeError(f"generator worker said {tag!r}, expected {what!r}")
            out.append(value)
        return out

    def send(self, message: Any) -> None:
        for pipe in self.pipes:
            pipe.send(message)

    def close(self) -> None:
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join()


def split(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal non-negative integers."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def run_cell(relay: RelayProcess, w: Workload, args: argparse.Namespace) -> dict[str, Any]:
    """One workload against one running relay; returns the figures."""
    nworkers = min(args.workers, w.rooms)
    specs = [
        WorkerSpec(
            kind=relay.kind,
            url=relay.url,
            relay_key=relay.key,
            index=i,
            rooms=rooms,
            room_size=w.room_size,
            mode=w.mode,
            window=w.window,
            rate=w.rate * rooms / w.rooms,
            warmup=args.warmup,
            duration=args.duration,
            cpu=args.gen_cpu,
        )
        for i, rooms in enumerate(split(w.rooms, nworkers))
    ]
    workers = Workers(specs)
    try:
        workers.expect("ready", timeout=120)
        t0 = time.monotonic_ns() + 200_000_000
        workers.send(("start", t0))
        start = t0 + int(args.warmup * 1e9)
        end = start + int(args.duration * 1e9)
        time.sleep(max(0.0, (start - time.monotonic_ns()) / 1e9))
        cpu0, wall0 = relay.cpu_seconds(), time.monotonic()
        time.sleep(max(0.0, (end - time.monotonic_ns()) / 1e9))
        cpu1, wall1 = relay.cpu_seconds(), time.monotonic()
        results = workers.expect("result", timeout=args.duration + 60)
    finally:
        workers.close()
    hist = HdrHistogram(*HIST_ARGS)
    for r in results:
        hist.add(HdrHistogram.decode(r["hist"]))
    window = results[0]["window_s"]
    sent = sum(r["sent"] for r in results)
    delivered = sum(r["delivered"] for r in results)
    return {
        "relay": relay.label,
        "workload": w.name,
        "room_size": w.room_size,
        "rooms": w.rooms,
        "mode": w.mode,
        "window": w.window if w.mode == "closed" else None,
        "target_msg_per_s": w.rate if w.mode == "open" else None,
        "duration_s": window,
        "messages_per_s": sent / window,
        "deliveries_per_s": delivered / window,
        "p50_ms": hist.get_value_at_percentile(50) / 1000,
        "p99_ms": hist.get_value_at_percentile(99) / 1000,
        "max_ms": hist.get_max_value() / 1000,
        "relay_cpu_pct": 100 * (cpu1 - cpu0) / (wall1 - wall0),
        "generator_cpu_pct": 100 * sum(r["cpu_s"] for r in results) / window,
        "generator_processes": len(specs),
        "generator_max_lag_ms": max(r["max_lag_ms"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "first_error": next((r["first_error"] for r in results if r["first_error"]), ""),
    }


def run_idle(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """RSS per idle, joined connection: fresh relay, warm-up connections, then K more."""
    relay = start_relay(kind, args.relay_cpu)
    try:
        nworkers = max(1, args.workers)
        rooms = split(args.idle // 2, nworkers)
        warm = 50
        specs = [
            WorkerSpec(
                kind=relay.kind, url=relay.url, relay_key=relay.key, index=i, rooms=n, room_size=2,
                mode="idle", cpu=args.gen_cpu, warm_connections=warm,
            )
            for i, n in enumerate(rooms)
        ]  # fmt: skip
        workers = Workers(specs)
        try:
            workers.expect("warm", timeout=120)
            time.sleep(1.0)
            rss0 = relay.rss()
            workers.send("go")
            counts = workers.expect("ready", timeout=600)
            time.sleep(2.0)
            rss1 = relay.rss()
            workers.send("stop")
            workers.expect("result", timeout=60)
        finally:
            workers.close()
    finally:
        relay.stop()
    added = sum(counts) - warm // 2 * 2 * len(specs)
    return {
        "relay": kind,
        "connections": added,
        "rss_before_mib": rss0 / MIB,
        "rss_after_mib": rss1 / MIB,
        "bytes_per_connection": (rss1 - rss0) / added,
    }


# ------------------------------------------------------------------ reporting


def print_table(cells: list[dict[str, Any]]) -> None:
    head = (
        f"{'workload':<12} {'relay':<7} {'msg/s':>8} {'deliv/s':>8} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'relay CPU':>9} {'gen CPU':>8} {'errors':>6}"
    )
    print(head)
    print("-" * len(head))
    for c in cells:
        print(
            f"{c['workload']:<12} {c['relay']:<7} {c['messages_per_s']:>8.0f} "
            f"{c['deliveries_per_s']:>8.0f} {c['p50_ms']:>7.2f} {c['p99_ms']:>7.2f} "
            f"{c['relay_cpu_pct']:>8.0f}% {c['generator_cpu_pct']:>7.0f}% {c['errors']:>6}"
        )


def ratios(
    cells: list[dict[str, Any]], relay: str = "haven", against: str = "bare",
    per_cpu: bool = False,
) -> dict[str, float]:
    """``relay`` / ``against`` deliveries per second, per workload; with ``per_cpu``,
    deliveries per second of relay CPU instead (fairer where the generator, not the
    relay, was the limit: a relay below 100 % of its core)."""
    by = {(c["workload"], c["relay"]): c for c in cells}

    def rate(cell: dict[str, Any]) -> float:
        value: float = cell["deliveries_per_s"]
        if per_cpu:
            value /= max(cell["relay_cpu_pct"], 1.0) / 100
        return value

    out = {}
    for (name, label), cell in by.items():
        other = by.get((name, against))
        if label == relay and other and rate(other):
            out[name] = rate(cell) / rate(other)
    return out


def print_profile(path: Path, top: int) -> dict[str, Any]:
    """Top functions of a cProfile dump by own time and by cumulative time."""
    stats = pstats.Stats(str(path))
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values()) or 1.0

    def name(key: tuple[str, int, str]) -> str:
        filename, line, func = key
        short = filename
        for marker in ("site-packages/", str(ROOT) + "/", "/lib/python3.11/"):
            if marker in filename:
                short = filename.split(marker, 1)[1]
        return f"{short}:{line}({func})" if line else func

    rows: dict[str, list[dict[str, Any]]] = {}
    for label, idx in (("own", 2), ("cumulative", 3)):
        ranked = sorted(raw.items(), key=lambda kv: kv[1][idx], reverse=True)[:top]
        rows[label] = [
            {
                "function": name(k),
                "calls": v[1],
                "own_s": v[2],
                "own_pct": 100 * v[2] / total,
                "cum_s": v[3],
                "cum_pct": 100 * v[3] / total,
            }
            for k, v in ranked
        ]
        print(f"\nTop {top} by {label} time (total {total:.2f} s profiled):")
        for r in rows[label]:
            print(
                f"  {r['own_pct']:5.1f}% own {r['cum_pct']:5.1f}% cum {r['calls']:>9} "
                f"{r['function']}"
            )
    return {"total_s": total, **rows}


# ------------------------------------------------------------------ main


def profiled_workload(name: str) -> Workload:
    """``closed10/W2`` -> the closed10 workload with window 2; ``open2`` as is."""
    base, _, window = name.partition("/W")
    w = WORKLOADS[base]
    return replace(w, name=name, window=int(window)) if window else w


def expand(workloads: list[Workload], args: argparse.Namespace) -> list[Workload]:
    """One closed-loop cell per requested window (saturation depends on the window)."""
    out = []
    for w in workloads:
        windows = {"closed2": args.window2, "closed10": args.window10}.get(w.name)
        if w.mode != "closed" or windows is None:
            out.append(w)
            continue
        for text in windows.split(","):
            window = int(text)
            out.append(replace(w, name=f"{w.name}/W{window}", window=window))
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per cell")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds per cell")
    p.add_argument("--workers", type=int, default=2, help="generator processes")
    p.add_argument(
        "--relays", default="bare,haven", help="comma list: bare,asyncio,haven,base"
    )
    p.add_argument("--baseline", type=Path, help="checkout run as relay 'base' (before/after)")
    p.add_argument("--only", default=",".join(WORKLOADS), help="comma list of workloads")
    p.add_argument("--window2", default="1,4", help="closed2 windows per member (comma list)")
    p.add_argument("--window10", default="1,2", help="closed10 windows per member (comma list)")
    p.add_argument("--idle", type=int, default=1000, help="idle connections (0 skips)")
    p.add_argument("--relay-cpu", type=int, default=0, help="CPU for the relay (-1: none)")
    p.add_argument("--gen-cpu", type=int, default=1, help="CPU for the generator (-1: none)")
    p.add_argument("--json", type=Path, help="write every figure to this file")
    p.add_argument("--profile", type=Path, help="also run one cell on Haven under cProfile")
    p.add_argument("--profile-workload", default="closed10/W2", help="e.g. closed2/W1, open10")
    p.add_argument("--profile-top", type=int, default=15)
    p.add_argument("--relay-stderr", action="store_true", help="show the relays' logs")
    args = p.parse_args(argv)
    ncpu = len(os.sched_getaffinity(0))
    for name in ("relay_cpu", "gen_cpu"):
        value = getattr(args, name)
        setattr(args, name, None if value < 0 or value >= ncpu else value)
    return args


def main(argv: list[str] | None = None) -> int:
    global SHOW_RELAY_STDERR, BASELINE
    args = parse_args(argv)
    SHOW_RELAY_STDERR = args.relay_stderr
    BASELINE = args.baseline.resolve() if args.baseline is not None else None
    workloads = expand([WORKLOADS[n] for n in args.only.split(",") if n], args)
    relays = [r for r in args.relays.split(",") if r]
    print(
        f"relay CPU {args.relay_cpu}, generator CPU {args.gen_cpu}, {args.workers} generator "
        f"processes, {args.warmup:g} s warm-up + {args.duration:g} s per cell",
        flush=True,
    )
    cells = []
    for w in workloads:
        for kind in relays:  # interleaved, so drift hits both relays alike
            relay = start_relay(kind, args.relay_cpu)
            try:
                cell = run_cell(relay, w, args)
            finally:
                relay.stop()
            cells.append(cell)
            print(
                f"  {w.name} {kind}: {cell['deliveries_per_s']:.0f} deliveries/s, "
                f"relay CPU {cell['relay_cpu_pct']:.0f}%",
                flush=True,
            )
    print()
    print_table(cells)
    rat = ratios(cells)
    for name, r in rat.items():
        print(f"Haven / bare deliveries/s, {name}: {r:.2f}x")
    base_rat = ratios(cells, "base")
    for name, r in base_rat.items():
        print(f"base / bare deliveries/s, {name}: {r:.2f}x")
    asyncio_rat = ratios(cells, "haven", "asyncio")
    for name, r in asyncio_rat.items():
        print(f"Haven / asyncio deliveries/s, {name}: {r:.2f}x")
    asyncio_cpu = ratios(cells, "haven", "asyncio", per_cpu=True)
    for name, r in asyncio_cpu.items():
        print(f"Haven / asyncio deliveries per relay CPU second, {name}: {r:.2f}x")
    idle = []
    if args.idle > 0:
        for kind in relays:
            result = run_idle(kind, args)
            idle.append(result)
            print(
                f"idle {kind}: {result['connections']} connections, "
                f"{result['bytes_per_connection'] / 1024:.1f} KiB RSS each "
                f"({result['rss_before_mib']:.1f} -> {result['rss_after_mib']:.1f} MiB)",
                flush=True,
            )
    profile = None
    if args.profile is not None:
        w = profiled_workload(args.profile_workload)
        relay = start_relay("haven", args.relay_cpu, profile=args.profile)
        try:
            cell = run_cell(relay, w, args)
        finally:
            relay.stop()
        print(
            f"\nprofiled Haven {w.name} (cProfile slows the relay): "
            f"{cell['deliveries_per_s']:.0f} deliveries/s"
        )
        profile = print_profile(args.profile, args.profile_top)
    if args.json is not None:
        report = {
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
            "settings": {
                "duration_s": args.duration,
                "warmup_s": args.warmup,
                "generator_processes": args.workers,
                "relay_cpu": args.relay_cpu,
                "generator_cpu": args.gen_cpu,
                "haven_flags": HAVEN_BENCH_FLAGS,
                "body_bytes": 128,
            },
            "cells": cells,
            "ratios": rat,
            "baseline_ratios": base_rat,
            "haven_over_asyncio": asyncio_rat,
            "haven_over_asyncio_per_cpu": asyncio_cpu,
            "idle": idle,
            "profile": profile,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
