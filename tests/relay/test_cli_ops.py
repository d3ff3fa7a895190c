"""The command line explains itself and fails in one clear line (exit 2)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from haven.relay.config import ConfigError, load

from .test_cli import REPO, child_env


def haven(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "haven", *args], capture_output=True, text=True,
        env=child_env(), cwd=REPO, timeout=60,
    )  # fmt: skip


def test_serve_help_shows_meaning_unit_and_default() -> None:
    out = haven("serve", "--help").stdout
    flat = " ".join(out.split())
    assert "open client sessions (handshake done)" in flat
    assert "[connections; default 10000; env HAVEN_MAX_CONNECTIONS]" in flat
    assert "[bytes; default 1073741824; env HAVEN_MEMORY_BUDGET_BYTES]" in flat
    assert "--check-config" in flat


def test_check_config_and_print_config(tmp_path: Path) -> None:
    good = tmp_path / "haven.toml"
    good.write_text('[relay]\nmax_connections = 500\n\n[[queues]]\nname = "helpline"\n')
    done = haven("serve", "--config", str(good), "--check-config")
    assert done.returncode == 0, done.stderr
    printed = haven("serve", "--config", str(good), "--max-rooms", "7", "--print-config")
    assert printed.returncode == 0
    assert "max_connections = 500" in printed.stdout  # from the file
    assert "max_rooms = 7" in printed.stdout  # the flag wins
    bad = tmp_path / "bad.toml"
    bad.write_text('[[queues]]\nname = "helpline"\nmax_length = "lots"\n')
    refused = haven("serve", "--config", str(bad), "--check-config")
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1
    assert refused.stderr.startswith("haven: ")


def test_bad_values_are_one_line_errors() -> None:
    loud = haven("serve", "--log-level", "LOUD")
    assert loud.returncode == 2
    assert loud.stderr.strip() == (
        "haven: setting 'log_level' must be DEBUG, INFO, WARNING, ERROR or CRITICAL"
    )
    assert "Traceback" not in loud.stderr


def test_a_fraction_for_a_whole_number_setting_is_refused(tmp_path: Path) -> None:
    conf = tmp_path / "haven.toml"
    conf.write_text("[relay]\nrate_burst = 1.5\n")
    with pytest.raises(ConfigError, match=r"rate_burst.*whole number"):
        load({}, env={}, config_file=conf)
    conf.write_text("[relay]\nrate_burst = 150.0\n")
    assert load({}, env={}, config_file=conf).rate_burst == 150


def test_a_port_in_use_names_the_listener_and_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = haven("serve", "--port", "0", "--metrics-port", str(port))
    assert done.returncode == 2
    assert f"cannot open the metrics listener on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_every_subcommand_shows_its_defaults() -> None:
    loadtest = " ".join(haven("loadtest", "--help").stdout.split())
    assert "rooms to run (default: 10)" in loadtest
    assert "(default: p99<100ms,loss=0,errors=0)" in loadtest
    keygen = " ".join(haven("keygen", "--help").stdout.split())
    assert "file to create" in keygen
    issue = " ".join(haven("token", "issue", "--help").stdout.split())
    assert "(default 8h)" in issue
