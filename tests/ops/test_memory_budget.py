"""Many hostile clients cannot push a real relay's memory past its budget.

Regression: with default settings 16 connections filling resume rings added 292 MiB in
21 s; about 112 would pass the shipped systemd unit's 2 GB limit (the defaults allowed
about 40 GiB in total). Here a real ``haven serve`` child (so RSS is the relay's own)
runs with a 32 MiB budget while 30 connections try to put about 120 MiB into rings.
"""

from __future__ import annotations

import base64
import subprocess
import sys

import psutil
import trio

from haven.protocol import messages as m
from haven.protocol.errors import ErrorCode
from tests.relay.test_cli import BANNER, child_env
from tests.relay.wire import WireClient, req

MIB = 1024 * 1024
BUDGET = 32 * MIB
#: What the relay may hold beyond its budget: the Python runtime's own growth with 30
#: connections and 120 rooms, allocator slack, and one second of estimate lag.
OVERHEAD = 40 * MIB
ATTACKERS = 30
ROOMS_EACH = 4
BODY = b"\xa5" * (16 * 1024)
SENDS_PER_ROOM = 60  # ~1 MiB per room: ~120 MiB attempted in all


async def _attack(port: int, key: bytes, refusals: list[int]) -> None:
    client = await WireClient.connect(port, key)
    try:
        codes = []
        for _ in range(ROOMS_EACH):
            reply = await client.request(req(m.CreateRoom, kind="group"))
            if isinstance(reply, m.Joined):
                codes.append(reply.seat.room)
            else:
                assert isinstance(reply, m.Error)
                refusals.append(reply.code)
        for _ in range(SENDS_PER_ROOM):
            for code in codes:
                reply = await client.request(req(m.Send, room=code, body=BODY))
                if isinstance(reply, m.Error):
                    refusals.append(reply.code)
    finally:
        await client.close()


async def test_hostile_clients_stay_within_the_budget() -> None:
    # A plain Popen: spawning does not block, and psutil needs the child's pid.
    proc = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, "-m", "haven", "serve", "--port", "0", "--metrics-port", "none",
         "--memory-budget-bytes", str(BUDGET), "--rate-per-s", "10000", "--rate-burst",
         "10000", "--room-burst-bytes", str(MIB), "--resume-buffer-bytes", str(2 * MIB),
         "--pow-min-difficulty", "0", "--pow-max-difficulty", "0", "--log-level", "ERROR"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=child_env(), text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await trio.to_thread.run_sync(proc.stdout.readline)
        match = BANNER.fullmatch(line.strip())
        assert match, line
        port = int(match.group(1))
        key = base64.urlsafe_b64decode(match.group(2) + "=")
        relay = psutil.Process(proc.pid)
        baseline = relay.memory_info().rss
        refusals: list[int] = []
        peak = baseline

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, relay.memory_info().rss)
                await trio.sleep(0.05)

        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                async with trio.open_nursery() as attackers:
                    for _ in range(ATTACKERS):
                        attackers.start_soon(_attack, port, key, refusals)
                nursery.cancel_scope.cancel()
        assert ErrorCode.RELAY_BUSY in refusals, set(refusals)
        assert peak - baseline < BUDGET + OVERHEAD, (peak - baseline) / MIB

        # Within a couple of housekeeping passes a newcomer is admitted again.
        await trio.sleep(2.5)
        with trio.fail_after(30):
            client = await WireClient.connect(port, key)
            joined = await client.call(req(m.CreateRoom, kind="group"), m.Joined)
            await client.call(req(m.Send, room=joined.seat.room, body=b"hello"), m.Sent)
            await client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
