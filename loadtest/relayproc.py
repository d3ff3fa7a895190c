"""The relay under test, seen from outside: spawn one locally, sample its memory and CPU.

``--spawn`` runs ``python -m haven serve --port 0 --metrics-port 0`` and reads its
first stdout line (``haven relay ws://HOST:PORT key=KEY``). Memory comes from the
relay's ``/metrics`` (``process_resident_memory_bytes``) when it exports it, else from
``psutil`` on the spawned process; for a relay we did not spawn and that does not
export it, memory is reported as unavailable rather than guessed.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import subprocess
import sys
import threading
import urllib.request
from collections import deque
from dataclasses import dataclass, field

import psutil
import trio

_BANNER = re.compile(r"^haven relay (ws://\S+) key=([A-Za-z0-9_-]+)\s*$")
_RSS = re.compile(r"^process_resident_memory_bytes\s+([0-9.eE+]+)\s*$", re.MULTILINE)


class RelayStartError(Exception):
    """The relay subprocess did not start; the message carries its last log lines."""


def decode_key(text: str) -> bytes:
    """A relay key as printed (base64url, no padding) to 32 bytes."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError as exc:
        raise ValueError(f"relay key is not base64url: {exc}") from None
    if len(raw) != 32:
        raise ValueError("relay key must be 32 bytes (base64url)")
    return raw


@dataclass
class SpawnedRelay:
    """A relay subprocess started for this run; ``stop`` drains it (SIGTERM)."""

    proc: subprocess.Popen[str]
    url: str
    key: bytes
    metrics_url: str | None
    log_tail: deque[str] = field(default_factory=lambda: deque(maxlen=40))
    readers: list[threading.Thread] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    async def start(cls, extra_args: list[str], limit_s: float = 30.0) -> SpawnedRelay:
        """Start ``haven serve`` on a free loopback port and wait for its banner."""
        args = [sys.executable, "-m", "haven", "serve", "--host", "127.0.0.1",
                "--port", "0", "--metrics-port", "0", *extra_args]  # fmt: skip
        proc = _popen(args)
        tail: deque[str] = deque(maxlen=40)
        metrics_seen = threading.Event()
        metrics: list[str] = []

        def drain_stderr() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                if line.startswith("metrics ") and not metrics:
                    metrics.append(line.split(None, 1)[1].strip())
                    metrics_seen.set()
                elif line.startswith('{"metrics": ') and not metrics:  # --log-format json
                    metrics.append(json.loads(line)["metrics"])
                    metrics_seen.set()
                tail.append(line.rstrip())
            metrics_seen.set()

        readers = [threading.Thread(target=drain_stderr, daemon=True)]
        readers[0].start()
        assert proc.stdout is not None
        stdout = proc.stdout
        line = ""
        with trio.move_on_after(limit_s):
            line = await trio.to_thread.run_sync(stdout.readline, abandon_on_cancel=True)
        match = _BANNER.match(line.strip())
        if match is None:
            proc.kill()
            proc.wait()
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
            raise RelayStartError(
                "the relay did not start: " + " | ".join(list(tail)[-5:] or [line.strip()])
            )
        readers.append(threading.Thread(target=stdout.read, daemon=True))
        readers[1].start()
        with trio.move_on_after(5):
            await trio.to_thread.run_sync(metrics_seen.wait, abandon_on_cancel=True)
        metrics_url = metrics[0] if metrics else None
        return cls(proc, match.group(1), decode_key(match.group(2)), metrics_url, tail, readers)

    async def stop(self, limit_s: float = 20.0) -> int | None:
        """SIGTERM (the relay drains), then kill if it does not exit in ``limit_s``."""
        if self.proc.poll() is None:
            self.proc.terminate()
            with trio.move_on_after(limit_s):
                await trio.to_thread.run_sync(self.proc.wait, abandon_on_cancel=True)
            if self.proc.poll() is None:
                self.proc.kill()
                await trio.to_thread.run_sync(self.proc.wait)
        for reader in self.readers:  # they end at the pipes' EOF, now the relay is gone
            await trio.to_thread.run_sync(reader.join, 5.0)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return self.proc.returncode


def _popen(args: list[str]) -> subprocess.Popen[str]:
    """Start the relay with its stdout (banner) and stderr (log) piped to us.

    In a session of its own, so a Ctrl-C at the terminal stops the load, not the relay
    under it (the load tester stops the relay itself when the report is done).
    """
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
        start_new_session=True,
    )  # fmt: skip


def rss_from_metrics(metrics_url: str, timeout: float = 2.0) -> int | None:
    """``process_resident_memory_bytes`` from a relay's ``/metrics``, if it exports it."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=timeout) as response:
            text = response.read().decode("utf-8", "replace")
    except OSError:
        return None
    match = _RSS.search(text)
    return None if match is None else int(float(match.group(1)))


class RelaySampler:
    """Samples the relay's RSS (and CPU when it is a local process) once per ``interval``."""

    def __init__(self, pid: int | None, metrics_url: str | None) -> None:
        self.process = psutil.Process(pid) if pid is not None else None
        self.metrics_url = metrics_url
        self.source: str | None = None
        self.samples: list[tuple[float, int]] = []  #: (seconds since start, RSS bytes)
        self.cpu: list[float] = []  #: percent of one core
        self._t0 = trio.current_time()
        if self.process is not None:
            self.process.cpu_percent(None)

    async def rss(self) -> int | None:
        """One RSS reading: /metrics first, then psutil on the local pid."""
        if self.metrics_url is not None:
            value = await trio.to_thread.run_sync(rss_from_metrics, self.metrics_url)
            if value is not None:
                self.source = "metrics"
                return value
        if self.process is not None:
            try:
                value = int(self.process.memory_info().rss)
            except psutil.Error:
                return None
            self.source = "psutil"
            return value
        return None

    async def sample(self) -> None:
        value = await self.rss()
        if value is not None:
            self.samples.append((trio.current_time() - self._t0, value))
        if self.process is not None:
            with contextlib.suppress(psutil.Error):
                self.cpu.append(self.process.cpu_percent(None))

    async def run(self, interval: float) -> None:
        """Sample until cancelled."""
        while True:
            await self.sample()
            await trio.sleep(interval)
