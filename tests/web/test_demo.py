"""``haven serve --demo`` as a real subprocess: banner first, pages URL, working tokens.

Real clock (a child process cannot follow a mock clock); the ``fail_after`` bounds only
keep a broken build from hanging the suite.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import trio

from haven import client
from haven.client import errors
from haven.relay import demo
from tests.relay.test_cli import BANNER, HANG_GUARD, Relay, b64decode, child_env, stop

from .test_pages_server import get, request

REPO = Path(__file__).resolve().parents[2]


async def read_until(stream: trio.abc.ReceiveStream, last: str) -> list[str]:
    """stdout lines up to (and with) the one starting with ``last``."""
    data = b""
    with trio.fail_after(HANG_GUARD):
        while not any(line.startswith(last.encode()) for line in data.split(b"\n")):
            chunk = await stream.receive_some(4096)
            assert chunk, data
            data += chunk
    return data.decode().splitlines()


async def test_demo_prints_pages_and_tokens_that_work(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    (tmp_path / "visitor.html").write_text("<!doctype html><title>Visitor</title>")
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "haven", "serve", "--demo", "--port", "0",
         "--pages-port", "0", "--metrics-port", "none", "--pages-dir", str(tmp_path),
         "--quick-exit-url", "http://127.0.0.1:9/exit"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(), cwd=REPO,
    )  # fmt: skip
    relay = Relay(proc)

    async def drain_stderr() -> None:
        assert proc.stderr is not None
        async with proc.stderr:
            while chunk := await proc.stderr.receive_some(4096):
                relay.stderr += chunk

    nursery.start_soon(drain_stderr)
    try:
        assert proc.stdout is not None
        everything = await read_until(proc.stdout, "demo mode:")
        relay.banner, lines = everything[0], everything[1:]
        assert BANNER.fullmatch(relay.banner), relay.banner
        pages = re.fullmatch(r"pages (http://127\.0\.0\.1:\d+)/", lines[0])
        assert pages, lines
        tokens = dict(line.split()[1:3] for line in lines if line.startswith("token "))
        assert set(tokens) == {"staff", "responder", "moderator"}

        status, _, body = await request(pages[1], get("/config.json"))
        assert status == 200
        config = json.loads(body)
        assert config["relay_key"] == relay.banner.rsplit("key=", 1)[1]
        assert config["quick_exit_url"] == "http://127.0.0.1:9/exit"
        status, headers, _ = await request(pages[1], get("/visitor.html"))
        assert status == 200
        assert headers["cache-control"] == "no-store"

        url, key = f"ws://127.0.0.1:{relay.port}", b64decode(config["relay_key"])
        async with (
            client.connect(url, key) as staff,
            client.connect(url, key) as visitor,
            client.connect(url, key) as moderator,
            client.connect(url, key) as responder,
        ):
            await staff.auth(tokens["staff"])
            await moderator.auth(tokens["moderator"])
            await responder.auth(tokens["responder"])
            await staff.duty(demo.QUEUE)
            await visitor.request_help(demo.QUEUE)
            room = await staff.take_next(demo.QUEUE)
            assert room.code
            with trio.fail_after(HANG_GUARD):
                listing = await visitor.directory()
            by_topic = {r.topic: r for r in listing}
            assert by_topic["Evening survivors' circle (demo)"].open
            assert by_topic["Evening survivors' circle (demo)"].premoderated
            assert not by_topic["Morning check-in (demo)"].open
            with_staff = await moderator.create_room(topic="Demo group", premoderated=True)
            assert with_staff.code
            # A visitor's own connection holds no role.
            try:
                await visitor.take_next(demo.QUEUE)
            except errors.Unauthorized:
                pass
            else:
                raise AssertionError("a visitor took from the queue")
    finally:
        assert await stop(relay) == 0, bytes(relay.stderr).decode()
    assert b"token issuers are configured but token_audience is not" not in relay.stderr


def test_demo_build_is_a_valid_flow_configuration() -> None:
    """Whatever the time of day, the flows accept the demo tables (windows past midnight)."""
    from haven.relay.config import Config
    from haven.relay.flows import settings

    for hour in range(24):
        built = demo.build(1_800_000_000.0 + hour * 3600)
        flows = settings.parse(Config(extra=built.extra, token_audience=demo.AUDIENCE))
        assert list(flows.queues) == [demo.QUEUE]
        assert len(flows.issuers) == 1
