"""A real ``nats-server`` (Debian's package) on 127.0.0.1 for the cluster tests.

Each server gets a free port, its own config file (JetStream stays off: it is never
configured) and is waited for until it accepts connections. ``restart`` brings it back
on the same port, to test reconnects. A missing ``nats-server`` fails the test loudly:
``./scripts/test`` installs it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def nats_server_binary() -> str:
    path = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin:/usr/bin")
    if path is None:
        pytest.fail("nats-server is not installed: run ./scripts/test, which installs it")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class NatsServer:
    def __init__(self, directory: Path, config: str = "") -> None:
        self.port = free_port()
        self.directory = directory
        self.config = directory / f"nats-{self.port}.conf"
        self.config.write_text(f"listen: 127.0.0.1:{self.port}\n{config}\n")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [nats_server_binary(), "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"nats-server exited: {err}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("nats-server did not start listening")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@contextmanager
def nats_server(directory: Path, config: str = "") -> Iterator[NatsServer]:
    server = NatsServer(directory, config)
    server.start()
    try:
        yield server
    finally:
        server.stop()


__all__ = ["NatsServer", "free_port", "nats_server", "nats_server_binary"]
