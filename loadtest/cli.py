"""``haven loadtest``: drive many rooms through a relay and pass or fail an SLO.

Exit status: 0 the SLO passed (ramp: at least one step passed), 1 it failed, 2 the
test could not run (relay unreachable, bad options, relay would not start).

Examples::

    haven loadtest --spawn --rooms 200 --members 10 --rate 1 --duration 30 \\
        --slo "p99<100ms,loss=0,errors=0" --json report.json --plot report.png
    haven loadtest --url ws://127.0.0.1:8765/ --key KEY --mode ramp \\
        --ramp-steps 100,200,400,800 --members 2
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from haven.relay.cli import SUBCOMMANDS

from . import report as report_mod
from . import slo as slo_mod
from .relayproc import RelayStartError, SpawnedRelay, decode_key
from .runner import CannotRun, RunOptions, relay_args_for, run
from .spec import KINDS, LoadSpec
from .wire import split_url

EXIT_PASS, EXIT_FAIL, EXIT_CANNOT_RUN = 0, 1, 2


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``loadtest`` subcommand's options."""
    p.description = __doc__.split("\n\n")[0] if __doc__ else None
    target = p.add_argument_group("target")
    target.add_argument("--url", action="append",
                        help="relay URL, e.g. ws://127.0.0.1:8765/; repeat it for the "
                        "processes of a cluster: each room's members are spread over them, "
                        "and a dropped member resumes on the next one")  # fmt: skip
    target.add_argument("--key", help="relay public key as printed by serve (--key=KEY)")
    target.add_argument(
        "--spawn", action="store_true", help="start a local relay for this run, stop it after"
    )
    target.add_argument("--spawn-admission", action="store_true",
                        help="keep the spawned relay's handshake cap and PoW")  # fmt: skip
    target.add_argument("--relay-arg", action="append", default=[], metavar="ARG",
                        help="extra argument for the spawned relay (repeatable)")  # fmt: skip
    target.add_argument(
        "--allow-remote", action="store_true", help="allow a non-loopback relay that you run"
    )
    load = p.add_argument_group("load")
    load.add_argument("--rooms", type=int, default=10, help="rooms to run")
    load.add_argument("--members", type=int, default=2, help="members per room")
    load.add_argument("--kind", choices=KINDS, default="group", help="kind of room")
    load.add_argument("--rate", type=float, default=1.0,
                      help="messages per second per member (0: connect and stay idle)")  # fmt: skip
    load.add_argument("--size", type=int, default=64, help="body bytes (at least 16)")
    load.add_argument("--ramp-up", type=float, default=0.0, help="seconds to start all rooms")
    load.add_argument("--duration", type=float, default=10.0, help="seconds after ramp-up")
    load.add_argument("--settle", type=float, default=10.0,
                      help="longest wait for outstanding deliveries after sending")  # fmt: skip
    load.add_argument("--churn-leave", type=float, default=0.0,
                      help="leaves/s per member (rejoins after --churn-pause)")  # fmt: skip
    load.add_argument("--churn-join", type=float, default=0.0,
                      help="visitors per second per group room (join, stay, leave)")  # fmt: skip
    load.add_argument("--churn-drop", type=float, default=0.0,
                      help="forced disconnects per second per member (then resume)")  # fmt: skip
    load.add_argument("--churn-pause", type=float, default=1.0,
                      help="seconds a dropped member stays away before resuming")
    load.add_argument("--visitor-stay", type=float, default=5.0,
                      help="seconds a churning visitor stays in its room")
    load.add_argument("--moderator-token", help="moderator token text (pre-moderated rooms)")
    load.add_argument("--seed", type=int, default=0, help="random seed (repeatable runs)")
    run_g = p.add_argument_group("run")
    run_g.add_argument("--mode", choices=("fixed", "ramp", "soak"), default="fixed",
                       help="one load; steps until the SLO breaks; or a long run")
    run_g.add_argument("--ramp-steps", default="", help="room counts for ramp mode: 50,100,200")
    run_g.add_argument("--workers", type=int, default=1,
                       help="worker processes (0: run in this process)")  # fmt: skip
    run_g.add_argument("--sample-interval", type=float, default=None,
                       help="relay memory sampling period (default 1 s; soak 10 s)")  # fmt: skip
    run_g.add_argument("--metrics-url", help="relay /metrics URL for memory (soak)")
    out = p.add_argument_group("verdict and output")
    out.add_argument("--slo", default="p99<100ms,loss=0,errors=0",
                     help="objectives: p50/p90/p99/p999/max<T(us|ms|s), loss=N(%%), errors=N")
    out.add_argument("--json", type=Path, dest="json_path", help="write the report here")
    out.add_argument("--plot", type=Path, help="draw latency (and memory) to this PNG")
    out.add_argument("--quiet", action="store_true", help="no live progress bar")


def _spec(args: argparse.Namespace, url: str, key: bytes, token: bytes | None,
          more_urls: tuple[str, ...] = ()) -> LoadSpec:  # fmt: skip
    total = args.ramp_up + args.duration
    return LoadSpec(
        url=url, more_urls=more_urls, key=key, rooms=args.rooms, members=args.members,
        rate=args.rate, size=args.size, ramp_up=args.ramp_up, duration=args.duration,
        kind=args.kind,
        churn_leave=args.churn_leave, churn_join=args.churn_join, churn_drop=args.churn_drop,
        churn_pause=args.churn_pause, visitor_stay=args.visitor_stay, settle=args.settle,
        moderator_token=token, timeline_interval=max(1.0, total / 200), seed=args.seed,
    )  # fmt: skip


def _check_target(url: str, allow_remote: bool) -> None:
    host, _, _ = split_url(url)
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not allow_remote:
        raise CannotRun(f"{host} is not loopback: pass --allow-remote for a relay you run")


def moderator_setup(ttl_s: float) -> tuple[bytes, str]:
    """A fresh operator key's moderator token and the relay config that trusts it.

    The signing key lives only in this process; the spawned relay gets the public half
    in an ``[[issuers]]`` table (see relay/tokens.py and relay/flows/settings.py).
    """
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        from haven.relay import tokens
    except ImportError:
        raise CannotRun(
            "pre-moderated rooms need a moderator token, and this relay has no token "
            "support (relay/tokens.py) to make one; pass --moderator-token"
        ) from None
    key = Ed25519PrivateKey.generate()
    token = tokens.issue(key, role="moderator", ttl=ttl_s, now=time.time(), rooms=["*"])
    config = (
        "[[issuers]]\n"
        'name = "loadtest"\n'
        f'public_key = "{tokens.public_key_text(key.public_key())}"\n'
        'roles = ["moderator"]\n'
    )
    return token.encode("ascii"), config


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse before the run what would only fail after it (a tool error, exit 2)."""
    for path in (args.json_path, args.plot):
        if path is None:
            continue
        parent = path.parent if str(path.parent) else Path(".")
        if path.is_dir() or not parent.is_dir() or not os.access(parent, os.W_OK):
            raise CannotRun(f"cannot write {path}: its folder is missing or not writable")
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CannotRun(
                "--plot needs matplotlib: pip install 'haven-relay[plot]'"
            ) from None


async def _main(args: argparse.Namespace, console: Console) -> int:
    _check_outputs(args)
    checks = slo_mod.parse(args.slo)
    steps = [int(s) for s in args.ramp_steps.split(",") if s.strip()]
    if args.mode == "ramp" and not steps:
        raise CannotRun("ramp mode needs --ramp-steps, e.g. 50,100,200")
    token = args.moderator_token.encode() if args.moderator_token else None
    extra_relay: list[str] = []
    with tempfile.TemporaryDirectory(prefix="haven-loadtest-") as tmp:
        if args.kind == "premoderated" and token is None:
            if not args.spawn:
                raise CannotRun("pre-moderated rooms need --moderator-token (or --spawn)")
            ttl = (args.ramp_up + args.duration + args.settle) * max(1, len(steps)) + 3600
            token, config_text = moderator_setup(ttl)
            config_file = Path(tmp) / "issuers.toml"
            config_file.write_text(config_text, "utf-8")
            extra_relay = ["--config", str(config_file)]
        return await _target_and_run(args, console, checks, steps, token, extra_relay)


async def _target_and_run(args: argparse.Namespace, console: Console,
                          checks: list[slo_mod.Check], steps: list[int], token: bytes | None,
                          extra_relay: list[str]) -> int:  # fmt: skip
    spawned: SpawnedRelay | None = None
    if args.spawn:
        if args.url or args.key:
            raise CannotRun("use either --spawn or --url/--key")
        probe = _spec(args, "ws://127.0.0.1:1/", b"\0" * 32, token)
        try:
            spawned = await SpawnedRelay.start(
                relay_args_for(probe, steps, args.spawn_admission) + extra_relay + args.relay_arg
            )
        except RelayStartError as exc:
            raise CannotRun(str(exc)) from None
        url, key = spawned.url, spawned.key
    else:
        if not args.url or not args.key:
            raise CannotRun("give --url and --key of a relay, or --spawn")
        url, *more = args.url
        try:
            key = decode_key(args.key)
        except ValueError as exc:
            raise CannotRun(str(exc)) from None
        for each in args.url:
            _check_target(each, args.allow_remote)
    spec = _spec(args, url, key, token, tuple(more) if not args.spawn else ())
    sample = args.sample_interval or (10.0 if args.mode == "soak" else 1.0)
    opts = RunOptions(
        workers=args.workers, slo=checks, mode=args.mode, ramp_steps=steps,
        sample_interval=sample, relay_pid=spawned.pid if spawned else None,
        metrics_url=args.metrics_url or (spawned.metrics_url if spawned else None),
    )  # fmt: skip
    opts.stop = trio.Event()
    opts.stop_on_ctrl_c = True
    try:
        rep = await _with_progress(spec, opts, console, quiet=args.quiet, steps=steps)
    finally:
        if spawned is not None:
            await spawned.stop()
    report_mod.render(rep, console)
    if args.json_path:
        report_mod.write_json(rep, args.json_path)
    if args.plot:
        report_mod.plot(rep, args.plot)
    if rep.get("partial"):
        print("haven loadtest: interrupted; the report covers what was measured "
              "(marked partial)", file=sys.stderr)  # fmt: skip
        return EXIT_CANNOT_RUN
    if args.mode == "ramp":
        return EXIT_PASS if rep["ramp"]["largest_passing_rooms"] is not None else EXIT_FAIL
    return EXIT_PASS if rep["slo"]["passed"] else EXIT_FAIL


async def _with_progress(spec: LoadSpec, opts: RunOptions, console: Console, *, quiet: bool,
                         steps: list[int]) -> dict[str, Any]:  # fmt: skip
    """Run with a live rich progress bar (time-based) unless ``quiet``."""
    if quiet:
        return await run(spec, opts)
    total = (spec.ramp_up + spec.duration) * max(1, len(steps))
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[line]}"),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("loading", total=total or 1, line="connecting")
        began = trio.current_time()

        def on_progress(snap: dict[str, Any]) -> None:
            progress.update(
                task,
                completed=min(total, trio.current_time() - began),
                description=snap["phase"] or "loading",
                line=(f"members {snap['members']:,}  sent {snap['sent']:,}  "
                      f"received {snap['receipts']:,}  p99 {snap.get('p99_ms', 0.0):.1f} ms  "
                      f"errors {snap['errors']:,}  drops {snap.get('drops', 0):,}  "
                      f"resumes {snap.get('resumes', 0):,}"),
            )  # fmt: skip

        opts.progress = on_progress
        rep = await run(spec, opts)
        progress.update(task, completed=total or 1)
    return rep


async def run_cli(args: argparse.Namespace, console: Console) -> int:
    """Run ``haven loadtest`` in the current Trio loop; returns the exit status."""
    try:
        return await _main(args, console)
    except (CannotRun, slo_mod.SLOError, ValueError) as exc:
        print(f"haven loadtest: {exc}", file=sys.stderr)
        return EXIT_CANNOT_RUN


def cmd_loadtest(args: argparse.Namespace) -> int:
    """Entry point of ``haven loadtest``.

    Ctrl-C while a load runs stops it and keeps a partial report (``runner``); Ctrl-C at
    any other moment (starting a relay, between ramp steps, writing the report) ends
    the run with one line and exit status 2, never a traceback. A relay the run spawned
    is stopped by the ``finally`` that owns it on the way out.
    """
    status = EXIT_CANNOT_RUN
    try:
        status = trio.run(run_cli, args, Console())
    except* KeyboardInterrupt:  # bare, or inside the nurseries' exception groups
        print("haven loadtest: interrupted before a load step could report; nothing was "
              "written", file=sys.stderr)  # fmt: skip
    return status


SUBCOMMANDS["loadtest"] = (add_arguments, cmd_loadtest)
