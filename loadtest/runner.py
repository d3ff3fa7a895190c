"""Run a load test: target relay, worker processes, CPU and memory sampling, modes.

Workers are separate processes (``multiprocessing`` spawn context) so that the
generator can use more than one core; ``workers=0`` runs one worker inside the calling
Trio loop (the tests do this, next to an in-test relay). Rooms are dealt round-robin,
whole: a room never spans workers, which is what makes per-worker accounting exact.

The parent samples every worker's CPU once a second. A worker averaging over
``SATURATED_PERCENT`` of a core while sending means the generator, not the relay, was
the bottleneck, and the report says so.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import queue as queue_mod
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import psutil
import trio

from haven.protocol import messages as m

from . import report as report_mod
from . import slo as slo_mod
from .relayproc import RelaySampler, SpawnedRelay
from .spec import LoadSpec, WorkerResult
from .wire import ReceiveHook, ReplyError, WireError, connect
from .worker import Worker

SATURATED_PERCENT = 90.0
MODES = ("fixed", "ramp", "soak")


class CannotRun(Exception):
    """The test could not run (relay unreachable, bad setup): exit status 2."""


@dataclass
class RunOptions:
    """Everything beyond the load itself: how many workers, what to sample, the SLO."""

    workers: int = 1
    slo: list[slo_mod.Check] = field(default_factory=list)
    mode: str = "fixed"
    ramp_steps: list[int] = field(default_factory=list)
    sample_interval: float = 1.0  #: relay memory/CPU sampling period (seconds)
    relay_pid: int | None = None  #: a local relay process to sample with psutil
    metrics_url: str | None = None  #: the relay's /metrics URL, if known
    progress: Callable[[dict[str, Any]], None] | None = None  #: merged snapshots
    receive_hook: ReceiveHook | None = None  #: test double (in-process workers only)
    #: Set (by Ctrl-C in the CLI) to stop sending now and report what was measured.
    stop: trio.Event | None = None
    stop_on_ctrl_c: bool = False  #: SIGINT sets ``stop`` while a load runs (the CLI)


async def preflight(spec: LoadSpec) -> None:
    """One handshake before any load: an unreachable relay is ``CannotRun``, not a fail."""
    failure: str | None = None
    async with trio.open_nursery() as nursery:
        try:
            conn, _ = await connect(spec.url, spec.key, nursery, spec.connect_timeout)
        except WireError as exc:
            failure = f"cannot reach the relay at {spec.url}: {exc}"
        else:
            token = spec.moderator_token
            if spec.kind == "premoderated" and token is not None:
                try:
                    await conn.request(lambda i: m.Auth(id=i, token=token))
                except (ReplyError, WireError) as exc:
                    failure = f"the relay refused the moderator token: {exc}"
            await conn.aclose()
    if failure is not None:
        raise CannotRun(failure)


# ----------------------------------------------------------------------- workers


def deal_rooms(rooms: int, workers: int) -> list[list[int]]:
    """Room indices per worker, round-robin (so ramp-up start times interleave)."""
    return [list(range(w, rooms, workers)) for w in range(workers)]


def _worker_main(spec: LoadSpec, rooms: list[int], index: int, start: float,
                 out: Any, stop: Any) -> None:  # fmt: skip
    """Entry point of a worker process: run, then put the result on ``out``.

    Ctrl-C goes to the whole process group: workers ignore it and stop early when the
    parent sets ``stop`` instead, so their results still reach the report.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def progress(snapshot: dict[str, Any]) -> None:
        out.put(("progress", index, snapshot))

    async def main(worker: Worker) -> WorkerResult:
        async def watch_stop() -> None:
            # A multiprocessing event: waited for in a thread (abandoned at the end).
            await trio.to_thread.run_sync(stop.wait, abandon_on_cancel=True)
            worker.stop_early()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_stop)
            result = await worker.run()
            nursery.cancel_scope.cancel()
        return result

    try:
        worker = Worker(spec, rooms, index, progress=progress, start_monotonic=start)
        result = trio.run(main, worker)
        out.put(("result", index, result))
    except BaseException:
        out.put(("error", index, traceback.format_exc()))


class _CpuWatch:
    """Per-process CPU samples (percent of one core), one a second."""

    def __init__(self, pids: list[int]) -> None:
        self.procs = [psutil.Process(pid) for pid in pids]
        self.samples: list[list[float]] = [[] for _ in pids]
        self.host: list[float] = []  #: whole-host CPU, percent of one core
        for p in self.procs:
            p.cpu_percent(None)
        psutil.cpu_percent(None)

    async def run(self) -> None:
        while True:
            await trio.sleep(1.0)
            self.host.append(psutil.cpu_percent(None) * (psutil.cpu_count() or 1))
            for proc, samples in zip(self.procs, self.samples, strict=True):
                with contextlib.suppress(psutil.Error):
                    samples.append(proc.cpu_percent(None))

    def summary(self) -> dict[str, Any]:
        per = []
        for samples in self.samples:
            # Skip the first sample (imports, connecting) when there are enough.
            busy = samples[1:] if len(samples) > 2 else samples
            per.append({
                "mean_percent": round(sum(busy) / len(busy), 1) if busy else 0.0,
                "max_percent": round(max(busy), 1) if busy else 0.0,
            })  # fmt: skip
        saturated = any(w["mean_percent"] >= SATURATED_PERCENT for w in per)
        host = self.host[1:] if len(self.host) > 2 else self.host
        return {
            "workers": per,
            "total_mean_percent": round(sum(w["mean_percent"] for w in per), 1),
            #: every process on the host (100 = one core busy): shows other load too
            "host_mean_percent": round(sum(host) / len(host), 1) if host else None,
            "saturated": saturated,
            "host_cores": psutil.cpu_count() or 1,
        }


def _merge_progress(latest: dict[int, dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {"members": 0, "sent": 0, "receipts": 0, "errors": 0,
                              "handshakes": 0, "drops": 0, "resumes": 0}  # fmt: skip
    phases = set()
    p99 = 0.0
    for snap in latest.values():
        for key in merged:
            merged[key] += snap.get(key, 0)
        phases.add(snap.get("phase", ""))
        p99 = max(p99, float(snap.get("p99_ms", 0.0)))
    merged["p99_ms"] = p99  # the worst worker's: an upper bound of the run's p99
    merged["phase"] = "/".join(sorted(phases))
    return merged


async def _run_processes(spec: LoadSpec, opts: RunOptions, cpu_out: list[dict[str, Any]]
                         ) -> list[WorkerResult]:  # fmt: skip
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    stop = ctx.Event()
    start = time.monotonic() + 2.0  # time for every worker to import and get going
    deals = [d for d in deal_rooms(spec.rooms, opts.workers) if d]
    procs = [
        ctx.Process(target=_worker_main, args=(spec, d, i, start, out, stop), daemon=True)
        for i, d in enumerate(deals)
    ]
    # Workers are born ignoring SIGINT (a disposition that survives exec), so a Ctrl-C
    # while they are still importing cannot kill them with a traceback; they stop
    # through ``stop`` instead. The parent's own handler is back right after.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for p in procs:
            p.start()
    finally:
        signal.signal(signal.SIGINT, previous)
    watch = _CpuWatch([p.pid for p in procs if p.pid is not None])
    results: dict[int, WorkerResult] = {}
    latest: dict[int, dict[str, Any]] = {}
    failures: list[str] = []
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch.run)
            if opts.stop is not None:
                nursery.start_soon(_relay_stop, opts.stop, stop.set)
            while len(results) + len(failures) < len(procs):
                try:
                    kind, index, payload = await trio.to_thread.run_sync(
                        out.get, True, 0.5, abandon_on_cancel=True
                    )
                except queue_mod.Empty:
                    dead = [i for i, p in enumerate(procs)
                            if not p.is_alive() and i not in results]  # fmt: skip
                    if dead and out.empty():
                        failures.extend(f"worker {i} died (exit {procs[i].exitcode})" for i in dead)
                    continue
                if kind == "progress":
                    latest[index] = payload
                    if opts.progress is not None:
                        opts.progress(_merge_progress(latest))
                elif kind == "result":
                    results[index] = payload
                else:
                    failures.append(f"worker {index} failed:\n{payload}")
            nursery.cancel_scope.cancel()
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
    if failures:
        if opts.stop is not None and opts.stop.is_set() and all(
            p.exitcode == -signal.SIGINT for p in procs if p.exitcode not in (0, None)
        ):
            # Ctrl-C reached a worker before it could ignore SIGINT (still starting up):
            # an interruption, not a failure of the load.
            raise KeyboardInterrupt
        raise RuntimeError("\n".join(failures))
    cpu_out.append(watch.summary())
    return [results[i] for i in sorted(results)]


async def _stop_on_ctrl_c(stop: trio.Event) -> None:
    """Ctrl-C (SIGINT) stops the load early; the run still settles and reports."""
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async for _ in signals:
            stop.set()
            return


async def _relay_stop(event: trio.Event, stop: Callable[[], None]) -> None:
    await event.wait()
    stop()


async def _run_in_process(spec: LoadSpec, opts: RunOptions, cpu_out: list[dict[str, Any]]
                          ) -> list[WorkerResult]:  # fmt: skip
    def progress(snapshot: dict[str, Any]) -> None:
        if opts.progress is not None:
            opts.progress(_merge_progress({0: snapshot}))

    import os

    watch = _CpuWatch([os.getpid()])
    worker = Worker(spec, list(range(spec.rooms)), progress=progress,
                    receive_hook=opts.receive_hook)  # fmt: skip
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch.run)
        if opts.stop is not None:
            nursery.start_soon(_relay_stop, opts.stop, worker.stop_early)
        result = await worker.run()
        nursery.cancel_scope.cancel()
    summary = watch.summary()
    summary["in_process"] = True  # this process also runs the caller (and maybe the relay)
    cpu_out.append(summary)
    return [result]


# -------------------------------------------------------------------------- modes


async def run_once(spec: LoadSpec, opts: RunOptions) -> dict[str, Any]:
    """One load of ``spec``: returns the report (with the SLO verdict)."""
    if opts.workers > 0 and opts.receive_hook is not None:
        raise CannotRun("a receive hook needs in-process workers (workers=0)")
    cpu: list[dict[str, Any]] = []
    sampler = RelaySampler(opts.relay_pid, opts.metrics_url)
    began = time.monotonic()
    async with trio.open_nursery() as nursery:
        await sampler.sample()  # the relay before any load
        nursery.start_soon(sampler.run, opts.sample_interval)
        if opts.stop is not None and opts.stop_on_ctrl_c:
            nursery.start_soon(_stop_on_ctrl_c, opts.stop)
        if opts.workers == 0:
            results = await _run_in_process(spec, opts, cpu)
        else:
            results = await _run_processes(spec, opts, cpu)
        nursery.cancel_scope.cancel()
    wall = time.monotonic() - began
    rep = report_mod.build(spec, results, cpu[0], sampler, wall, opts.mode)
    rep["slo"] = slo_mod.verdict(opts.slo, rep)
    rep["partial"] = opts.stop is not None and opts.stop.is_set()
    return rep


async def run_ramp(spec: LoadSpec, opts: RunOptions) -> dict[str, Any]:
    """Step the room count up until the SLO breaks; report the largest passing step."""
    steps: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    first_fail: dict[str, Any] | None = None
    for rooms in opts.ramp_steps:
        rep = await run_once(replace(spec, rooms=rooms), opts)
        steps.append(report_mod.step_summary(rooms, rep))
        if rep["partial"]:
            first_fail = rep  # interrupted: no verdict beyond this step
            break
        if rep["slo"]["passed"]:
            best = rep
        else:
            first_fail = rep
            break
    final = best if best is not None else first_fail
    assert final is not None
    final["mode"] = "ramp"
    final["ramp"] = {
        "steps": steps,
        "largest_passing_rooms": None if best is None else best["config"]["rooms"],
    }
    return final


async def run(spec: LoadSpec, opts: RunOptions) -> dict[str, Any]:
    """Preflight, then the chosen mode. Raises ``CannotRun`` when it could not run."""
    try:
        spec.validate()
    except ValueError as exc:
        raise CannotRun(str(exc)) from None
    if opts.mode not in MODES:
        raise CannotRun(f"mode must be one of {MODES}")
    if opts.mode == "ramp" and not opts.ramp_steps:
        raise CannotRun("ramp mode needs --ramp-steps, e.g. 50,100,200")
    await preflight(spec)
    if opts.mode == "ramp":
        return await run_ramp(spec, opts)
    return await run_once(spec, opts)


#: Admission control off, for a spawned relay: the run measures the data path.
NO_ADMISSION = ["--handshake-rate-per-s", "1000000", "--handshake-burst", "1000000",
                "--pow-min-difficulty", "0", "--pow-max-difficulty", "0"]  # fmt: skip


def relay_args_for(spec: LoadSpec, steps: list[int], admission: bool = False) -> list[str]:
    """Settings a spawned relay needs for this load: caps with room to spare, and
    (unless ``admission``) no handshake-rate cap and no proof of work, so that the run
    measures rooms and deliveries rather than admission control."""
    per_room = spec.members + 1 + (4 if spec.churn_join else 0)
    # Ramp steps leave the previous steps' seats held for the resume grace window.
    total = per_room * (sum(steps) if steps else spec.rooms)
    cap = max(10_000, math.ceil(total * 1.2) + 100)
    caps = ["--max-connections", str(cap), "--max-rooms", str(cap), "--log-level", "WARNING"]
    return caps if admission else caps + NO_ADMISSION


__all__ = [
    "CannotRun",
    "RunOptions",
    "SpawnedRelay",
    "deal_rooms",
    "preflight",
    "relay_args_for",
    "run",
    "run_once",
]
