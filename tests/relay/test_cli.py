"""``haven serve`` and ``haven keygen`` as real subprocesses, and config precedence.

These run on the real clock (a child process cannot follow a mock clock); the
``fail_after`` bounds only keep a broken build from hanging the suite, nothing asserts
on how long anything took.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from haven.protocol import messages as m
from haven.relay.config import Config, ConfigError, load

from .wire import WireClient

REPO = Path(__file__).resolve().parents[2]
BANNER = re.compile(r"haven relay ws://127\.0\.0\.1:(\d+) key=([A-Za-z0-9_-]{43})")
HANG_GUARD = 60


def child_env(**extra: str) -> dict[str, str]:
    """The test's environment without HAVEN_* settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAVEN_")}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Relay:
    """A ``python -m haven serve`` child process and its banner."""

    def __init__(self, proc: trio.Process) -> None:
        self.proc = proc
        self.banner = ""
        self.stderr = bytearray()

    @property
    def port(self) -> int:
        match = BANNER.fullmatch(self.banner)
        assert match, self.banner
        return int(match.group(1))

    @property
    def key(self) -> bytes:
        match = BANNER.fullmatch(self.banner)
        assert match, self.banner
        return b64decode(match.group(2))


async def read_first_line(stream: trio.abc.ReceiveStream) -> str:
    data = b""
    while b"\n" not in data:
        chunk = await stream.receive_some(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0].decode()


async def run_serve(nursery: trio.Nursery, *args: str, env: dict[str, str] | None = None
                    ) -> Relay:
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "haven", "serve", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env or child_env(), cwd=REPO,
    )
    relay = Relay(proc)

    async def drain_stderr() -> None:
        assert proc.stderr is not None
        async with proc.stderr:
            while chunk := await proc.stderr.receive_some(4096):
                relay.stderr += chunk

    nursery.start_soon(drain_stderr)
    assert proc.stdout is not None
    with trio.fail_after(HANG_GUARD):
        relay.banner = await read_first_line(proc.stdout)
    return relay


async def stop(relay: Relay) -> int:
    relay.proc.send_signal(signal.SIGTERM)
    with trio.fail_after(HANG_GUARD):
        return await relay.proc.wait()


async def test_serve_prints_the_banner_first_and_exits_0_on_sigterm() -> None:
    async with trio.open_nursery() as nursery:
        relay = await run_serve(nursery, "--port", "0", "--metrics-port", "0")
        try:
            assert BANNER.fullmatch(relay.banner), relay.banner
            assert relay.port != 0
            async with await WireClient.connect(relay.port, relay.key) as client:
                await client.call(lambda i: m.Ping(id=i), m.Pong)
                created = await client.call(lambda i: m.CreateRoom(id=i, kind="group"), m.Joined)
                assert created.seat.room
                await client.close()
            assert await stop(relay) == 0, relay.stderr.decode()
        finally:
            if relay.proc.returncode is None:
                relay.proc.kill()
                await relay.proc.wait()


async def test_serve_with_clients_connected_drains_and_exits_0() -> None:
    async with trio.open_nursery() as nursery:
        relay = await run_serve(nursery, "--port", "0", "--metrics-port", "none",
                                "--drain-grace", "1")
        try:
            async with await WireClient.connect(relay.port, relay.key) as client:
                relay.proc.send_signal(signal.SIGTERM)
                draining = await client.event(m.Draining, within=HANG_GUARD)
                assert draining.retry_after >= 1
                assert await client.wait_closed(within=HANG_GUARD) == 1001
            with trio.fail_after(HANG_GUARD):
                assert await relay.proc.wait() == 0, relay.stderr.decode()
        finally:
            if relay.proc.returncode is None:
                relay.proc.kill()
                await relay.proc.wait()


async def test_keygen_then_serve_with_that_key(tmp_path: Path) -> None:
    key_file = tmp_path / "relay.key"
    cmd = [sys.executable, "-m", "haven", "keygen", "--out", str(key_file)]
    first = await trio.run_process(cmd, capture_stdout=True, capture_stderr=True,
                                   env=child_env(), cwd=REPO)
    public = first.stdout.decode().strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", public), public
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    written = key_file.read_bytes()
    again = await trio.run_process(cmd, capture_stdout=True, capture_stderr=True,
                                   env=child_env(), cwd=REPO, check=False)
    assert again.returncode != 0
    assert b"overwrite" in again.stderr
    assert key_file.read_bytes() == written, "keygen overwrote an existing key"
    async with trio.open_nursery() as nursery:
        relay = await run_serve(nursery, "--port", "0", "--metrics-port", "none",
                                "--key", str(key_file))
        try:
            assert BANNER.fullmatch(relay.banner)
            assert relay.banner.endswith(f"key={public}")
            async with await WireClient.connect(relay.port, b64decode(public)) as client:
                await client.call(lambda i: m.Ping(id=i), m.Pong)
            assert await stop(relay) == 0
        finally:
            if relay.proc.returncode is None:
                relay.proc.kill()
                await relay.proc.wait()


async def test_serve_settings_flags_over_env_over_toml(tmp_path: Path) -> None:
    """The limits a client is told in ``welcome`` come from flag > env > TOML > default."""
    toml = tmp_path / "haven.toml"
    toml.write_text("[relay]\nmax_body_bytes = 999\nrate_burst = 9\nmax_rooms_per_connection = 3\n")
    env = child_env(HAVEN_MAX_BODY_BYTES="1234", HAVEN_RATE_BURST="5")
    async with trio.open_nursery() as nursery:
        relay = await run_serve(nursery, "--port", "0", "--metrics-port", "none",
                                "--config", str(toml), "--rate-burst", "77", env=env)
        try:
            async with await WireClient.connect(relay.port, relay.key) as client:
                limits = client.welcome.limits
                assert (limits.burst, limits.max_body, limits.max_rooms) == (77, 1234, 3)
                assert limits.max_members == Config().max_members
            assert await stop(relay) == 0
        finally:
            if relay.proc.returncode is None:
                relay.proc.kill()
                await relay.proc.wait()


def test_serve_refuses_bad_settings() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "haven", "serve", "--port", "0", "--max-rooms", "lots"],
        capture_output=True, env=child_env(), cwd=REPO, timeout=HANG_GUARD, check=False,
    )
    assert done.returncode == 2
    assert done.stdout == b""
    assert b"max_rooms" in done.stderr


# ------------------------------------------------------------------ relay.config.load


def test_config_precedence(tmp_path: Path) -> None:
    toml = tmp_path / "haven.toml"
    toml.write_text(
        "[relay]\nmax_rooms = 8\nrate_burst = 9\nmax_members = 11\n\n[queues.helpline]\nsize = 3\n"
    )
    env = {"HAVEN_MAX_ROOMS": "6", "HAVEN_RATE_BURST": "7", "UNRELATED": "x"}
    config = load({"max_rooms": 5, "port": None}, env=env, config_file=toml)
    assert config.max_rooms == 5  # flag beats env and TOML
    assert config.rate_burst == 7  # env beats TOML
    assert config.max_members == 11  # TOML beats the default
    assert config.port == Config().port  # an unset flag (None) falls through
    assert config.extra == {"queues": {"helpline": {"size": 3}}}
    assert load({}, env={}).max_rooms == Config().max_rooms


def test_config_conversions_and_errors(tmp_path: Path) -> None:
    assert load({}, env={"HAVEN_METRICS_PORT": "none"}).metrics_port is None
    assert load({"idle_timeout": "2.5"}, env={}).idle_timeout == 2.5
    with pytest.raises(ConfigError, match="max_rooms"):
        load({}, env={"HAVEN_MAX_ROOMS": "many"})
    with pytest.raises(ConfigError, match="rate_burst"):
        load({"rate_burst": 0}, env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[relay]\nmax_romos = 3\n")
    with pytest.raises(ConfigError, match="max_romos"):
        load({}, env={}, config_file=bad)
    with pytest.raises(ConfigError):
        load({}, env={}, config_file=tmp_path / "missing.toml")
