"""Issue 9 item 14: typed key files, permission check, metrics-beyond-loopback warning.

``haven`` runs as a real subprocess, as an operator would run it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import trio

from .test_cli import run_serve, stop
from .test_cli_auth import haven


def keys(tmp_path: Path) -> tuple[Path, Path]:
    relay_key, signing_key = tmp_path / "relay.key", tmp_path / "operator.key"
    assert haven("keygen", "--out", str(relay_key)).returncode == 0
    assert haven("token", "keygen", "--out", str(signing_key)).returncode == 0
    assert relay_key.read_text().startswith("haven relay-key v1\n")
    assert signing_key.read_text().startswith("haven operator-signing-key v1\n")
    return relay_key, signing_key


def one_line_error(done: subprocess.CompletedProcess[bytes], *words: str) -> None:
    assert done.returncode == 2, done
    err = done.stderr.decode()
    assert err.count("\n") == 1, err
    for word in words:
        assert word in err, err


def test_each_command_refuses_the_other_kind_of_key(tmp_path: Path) -> None:
    relay_key, signing_key = keys(tmp_path)
    one_line_error(
        haven("serve", "--port", "0", "--metrics-port", "none", "--key", str(signing_key)),
        "operator signing key", "haven keygen",
    )
    one_line_error(
        haven("token", "issue", "--key", str(relay_key), "--role", "responder"),
        "relay key", "haven token keygen",
    )


def test_key_files_readable_by_others_are_refused(tmp_path: Path) -> None:
    relay_key, signing_key = keys(tmp_path)
    for path, mode in ((relay_key, 0o644), (signing_key, 0o640)):
        os.chmod(path, mode)
    one_line_error(
        haven("serve", "--port", "0", "--metrics-port", "none", "--key", str(relay_key)),
        "readable by group or others", "chmod 600",
    )
    one_line_error(
        haven("token", "issue", "--key", str(signing_key), "--role", "responder"),
        "readable by group or others",
    )


def test_headerless_key_file_is_refused(tmp_path: Path) -> None:
    old = tmp_path / "old.key"
    old.write_text("A" * 43 + "\n")
    os.chmod(old, 0o600)
    one_line_error(
        haven("serve", "--port", "0", "--metrics-port", "none", "--key", str(old)),
        "haven relay-key v1",
    )


async def test_serve_with_a_typed_key_and_metrics_warning(tmp_path: Path) -> None:
    relay_key, _ = keys(tmp_path)
    for host, warned in (("127.0.0.1", False), ("0.0.0.0", True)):
        async with trio.open_nursery() as nursery:
            relay = await run_serve(nursery, "--port", "0", "--metrics-port", "0",
                                    "--metrics-host", host, "--key", str(relay_key))  # fmt: skip
            assert await stop(relay) == 0, relay.stderr.decode()
        assert (b"beyond loopback" in relay.stderr) == warned, relay.stderr.decode()


def test_keygen_cluster_writes_a_cluster_key_the_relay_key_flag_refuses(tmp_path: Path) -> None:
    from haven.relay.keys import read_cluster_key

    cluster_key = tmp_path / "cluster.key"
    done = haven("keygen", "--cluster", "--out", str(cluster_key))
    assert done.returncode == 0, done
    assert cluster_key.read_text().startswith("haven cluster-key v1\n")
    assert os.stat(cluster_key).st_mode & 0o777 == 0o600
    assert len(read_cluster_key(cluster_key)) == 32
    one_line_error(haven("keygen", "--cluster", "--out", str(cluster_key)), "exists")
    one_line_error(
        haven("serve", "--port", "0", "--metrics-port", "none", "--key", str(cluster_key)),
        "cluster key", "haven keygen",
    )
