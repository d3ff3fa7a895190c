"""Log lines an operator can use: JSON throughout in JSON mode, times with milliseconds and
zone, the relay's own listen addresses shown, a start-up summary, and a crash's
traceback scrubbed like everything else."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys

from haven.relay import logs
from tests.relay.test_cli import REPO, child_env

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_json_mode_every_line_is_json_with_precise_times() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "haven", "serve", "--port", "0", "--metrics-port", "0",
         "--log-format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(), cwd=REPO,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stderr is not None
        banner = proc.stdout.readline().strip()
        port = banner.split("ws://127.0.0.1:", 1)[1].split()[0]
        lines = []
        while True:
            line = proc.stderr.readline()
            assert line, "the relay stopped before printing its metrics line"
            lines.append(json.loads(line))  # every stderr line is JSON
            if "metrics" in lines[-1] and "message" not in lines[-1]:
                break
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    records = [r for r in lines if "message" in r]
    assert records
    assert all(ISO.match(r["time"]) for r in records)
    startup = [r["message"] for r in records if "listening on" in r["message"]]
    assert startup, records
    # The relay's own address is its configuration, not a client's: shown as it is.
    assert f"ws://127.0.0.1:{port}" in startup[0]
    assert "issuers" in startup[0]
    assert "queues" in startup[0]


def test_a_crash_traceback_goes_through_the_privacy_filter() -> None:
    stream = io.StringIO()
    saved = sys.excepthook
    handler = logs.setup("INFO", "plain", stream)
    try:
        try:
            raise RuntimeError("lookup failed for 203.0.113.9:4431 and quiet-heron-27")
        except RuntimeError as exc:
            sys.excepthook(type(exc), exc, exc.__traceback__)
    finally:
        sys.excepthook = saved
        for logger in (logging.getLogger("haven"), logging.getLogger()):
            logger.removeHandler(handler)
    out = stream.getvalue()
    assert "the relay crashed" in out
    assert "Traceback" in out
    assert "203.0.113.9" not in out
    assert "quiet-heron-27" not in out
    assert ISO.match(out.split(" ", 1)[0])
