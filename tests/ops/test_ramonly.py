"""RAM-only enforcement, in subprocesses (an audit hook can never be removed, and the
dumpable flag and rlimits are per process).

* a relay is started, ``ramonly.enforce`` runs, then every way of writing is tried:
  each is refused, reported once in the log without the path, counted in the metrics,
  and the relay still relays; reading still works; RLIMIT_CORE is 0, not dumpable;
* ``haven serve --mlock`` without the right to lock memory stops with a clear message;
* ``haven serve --mlock`` where it is allowed locks memory and serves.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from haven.relay.config import Config, ConfigError, load
from haven.relay.ramonly import is_write_open

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
LIMIT = 120  # seconds: a bound on a hung child, not a timing assertion

ENFORCE_SCRIPT = textwrap.dedent(
    """
    import io, json, os, resource, sys
    import trio
    from haven import client
    from prometheus_client import CollectorRegistry
    from haven.relay import logs, ramonly
    from haven.relay.config import Config
    from haven.relay.server import serve
    from tests.ops.helpers import scrape

    target_dir, secret_name, readable = sys.argv[1], sys.argv[2], sys.argv[3]
    target = os.path.join(target_dir, secret_name)
    buffer = io.StringIO()
    logs.setup("DEBUG", "json", stream=buffer)
    out = {}

    def attempt(name, fn):
        try:
            fn()
            out[name] = "allowed"
        except PermissionError as exc:
            out[name] = type(exc).__name__

    async def main():
        async with trio.open_nursery() as nursery:
            info = await nursery.start(
                lambda task_status: serve(Config(port=0, metrics_port=0),
                                          registry=CollectorRegistry(), task_status=task_status))
            ramonly.enforce(info.relay.config)
            attempt("open_w", lambda: open(target, "w"))
            attempt("open_a", lambda: open(target, "ab"))
            attempt("open_x", lambda: open(target, "x"))
            attempt("open_rplus", lambda: open(readable, "r+"))
            attempt("os_open", lambda: os.open(target, os.O_WRONLY | os.O_CREAT, 0o600))
            attempt("rename", lambda: os.rename(readable, target))
            attempt("mkdir", lambda: os.mkdir(target))
            with open(readable, "rb") as f:
                out["read"] = f.read().decode()
            async with client.connect(info.url, info.public_key) as a, \\
                    client.connect(info.url, info.public_key) as b:
                room = await a.create_room(kind="group")
                await (await b.join(room.code)).send(b"still relaying")
                async for event in room.events():
                    if getattr(event, "body", None) == b"still relaying":
                        out["relayed"] = True
                        break
            text, _, values = await scrape(info.metrics_url)
            out["metric"] = values["haven_ramonly_write_refusals_total{}"]
            out["refusals"] = ramonly.refusals()
            out["core"] = list(resource.getrlimit(resource.RLIMIT_CORE))
            out["dumpable"] = ramonly.dumpable()
            info.relay.drain_requested.set()

    trio.run(main)
    out["exists"] = os.path.exists(target)
    out["log"] = buffer.getvalue()
    print(json.dumps(out))
    """
)

# Drop CAP_IPC_LOCK (root) and lower RLIMIT_MEMLOCK, so mlockall must fail, then serve.
NO_MLOCK_SCRIPT = textwrap.dedent(
    """
    import ctypes, resource, sys

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    CAP_IPC_LOCK = 14
    libc = ctypes.CDLL(None, use_errno=True)
    header, data = Header(0x20080522, 0), (Data * 2)()
    if libc.capget(ctypes.byref(header), data) == 0:
        data[0].effective &= ~(1 << CAP_IPC_LOCK)
        data[0].permitted &= ~(1 << CAP_IPC_LOCK)
        assert libc.capset(ctypes.byref(header), data) == 0
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (65536, 65536))
    from haven.relay.cli import main
    sys.exit(main(["serve", "--port", "0", "--metrics-port", "0", "--mlock"]))
    """
)


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script, *args], env=ENV, cwd=ROOT, capture_output=True,
        text=True, timeout=LIMIT, check=False,
    )  # fmt: skip


def test_write_opens_are_refused_and_reported_once(tmp_path: Path) -> None:
    readable = tmp_path / "config.toml"
    readable.write_text("read me")
    secret_name = "room-0ncm-tevr-nrxm-z4ch-x7z4-fz3n-9ahk.txt"
    done = _run(ENFORCE_SCRIPT, str(tmp_path), secret_name, str(readable))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    attempts = ["open_w", "open_a", "open_x", "open_rplus", "os_open", "rename", "mkdir"]
    assert {name: out[name] for name in attempts} == dict.fromkeys(attempts, "RamOnlyViolation")
    assert out["read"] == "read me"
    assert out["relayed"] is True
    assert out["exists"] is False
    assert readable.read_text() == "read me"
    assert out["refusals"] == len(attempts)
    assert out["metric"] == len(attempts)
    reports = [line for line in out["log"].splitlines() if "RAM-only: refused" in line]
    assert len(reports) == 1
    assert json.loads(reports[0])["level"] == "ERROR"
    assert secret_name not in out["log"]
    assert str(tmp_path) not in out["log"]
    assert "[redacted]" not in reports[0]  # the path was never in the message at all
    assert out["core"] == [0, 0]
    if sys.platform.startswith("linux"):
        assert out["dumpable"] == 0


def test_mlock_refused_stops_with_a_clear_message() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("capabilities and RLIMIT_MEMLOCK are Linux-specific here")
    done = _run(NO_MLOCK_SCRIPT)
    assert done.returncode == 2, done.stderr
    assert "haven relay" not in done.stdout  # never announced itself
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith("haven: --mlock: mlockall failed")
    assert "LimitMEMLOCK" in message
    assert "CAP_IPC_LOCK" in message
    assert "Traceback" not in done.stderr


def test_mlock_when_permitted_locks_memory_and_serves() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if os.geteuid() != 0 and soft != resource.RLIM_INFINITY:
        pytest.skip("needs CAP_IPC_LOCK or an unlimited RLIMIT_MEMLOCK")
    proc = subprocess.Popen(
        [sys.executable, "-m", "haven", "serve", "--port", "0", "--metrics-port", "0",
         "--mlock"],
        env=ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert banner.startswith("haven relay ws://127.0.0.1:")
        status = Path(f"/proc/{proc.pid}/status").read_text()
        locked_kib = int(next(x for x in status.splitlines() if x.startswith("VmLck")).split()[1])
        assert locked_kib > 1024
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        core = next(x for x in limits.splitlines() if x.startswith("Max core file size"))
        assert core.split()[4:6] == ["0", "0"]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=LIMIT)
        assert proc.returncode == 0, err
        assert "memory locked" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_mlock_setting_from_flag_env_and_toml(tmp_path: Path) -> None:
    assert Config().mlock is False
    assert load({"mlock": True}, env={}).mlock is True
    assert load({}, env={"HAVEN_MLOCK": "yes"}).mlock is True
    assert load({}, env={"HAVEN_MLOCK": "0"}).mlock is False
    toml = tmp_path / "haven.toml"
    toml.write_text("[relay]\nmlock = true\n")
    assert load({}, env={}, config_file=toml).mlock is True
    with pytest.raises(ConfigError, match="mlock"):
        load({}, env={"HAVEN_MLOCK": "maybe"})
    from haven.relay.cli import build_parser

    args = build_parser().parse_args(["serve", "--mlock"])
    assert args.mlock is True
    assert build_parser().parse_args(["serve"]).mlock is None


def test_write_mode_detection() -> None:
    for mode in ("w", "wb", "a", "ab", "x", "r+", "rb+", "w+"):
        assert is_write_open(mode, 0)
    assert not is_write_open("r", os.O_RDONLY)
    assert not is_write_open("rb", os.O_RDONLY | os.O_CLOEXEC)
    assert is_write_open(None, os.O_WRONLY)
    assert is_write_open(None, os.O_RDWR)
    assert is_write_open(None, os.O_RDONLY | os.O_CREAT)
    assert is_write_open(None, os.O_RDONLY | os.O_APPEND)
    assert not is_write_open(None, os.O_RDONLY)
