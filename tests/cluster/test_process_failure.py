"""Relay processes started by ``haven serve --cluster`` (as an operator runs them):
one is killed mid-conversation, and its client resumes on another process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import trio

from haven import client
from haven.protocol.messages import Deliver, RoomClosed
from tests.client.netkit import BANNER, REPO, Proxy

from .clusterkit import cluster_key_file, next_of
from .natskit import NatsServer, free_port, nats_server


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[NatsServer]:
    with nats_server(tmp_path) as s:
        yield s


class RelayProc:
    def __init__(self, proc: subprocess.Popen[str], url: str, port: int, key: str,
                 metrics: int) -> None:  # fmt: skip
        self.proc, self.url, self.port, self.key, self.metrics = proc, url, port, key, metrics

    def peers(self) -> int:
        """``haven_cluster_peers`` from the relay's metrics: other processes heard."""
        url = f"http://127.0.0.1:{self.metrics}/metrics"
        with urllib.request.urlopen(url, timeout=2) as reply:
            for line in reply.read().decode().splitlines():
                if line.startswith("haven_cluster_peers "):
                    return int(float(line.split()[1]))
        raise AssertionError("no haven_cluster_peers series")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/readyz", timeout=1):
                return True
        except OSError:
            return False


@contextmanager
def relay_proc(bus: NatsServer, tmp_path: Path) -> Iterator[RelayProc]:
    relay_key = tmp_path / "relay.key"
    if not relay_key.exists():
        subprocess.run([sys.executable, "-m", "haven", "keygen", "--out", str(relay_key)],
                       check=True, cwd=REPO, capture_output=True)  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAVEN_")}
    env["PYTHONPATH"] = str(REPO)
    metrics = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "haven", "serve", "--port", "0", "--metrics-port", str(metrics),
         "--key", str(relay_key), "--cluster", bus.url,
         "--cluster-key", str(cluster_key_file(tmp_path))],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        match = BANNER.fullmatch(proc.stdout.readline().strip())
        assert match, "the relay printed no banner"
        yield RelayProc(proc, match[1], int(match[2]), match[3], metrics)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


async def wait_ready(*relays: RelayProc) -> None:
    with trio.fail_after(20):
        while not all([await trio.to_thread.run_sync(r.ready) for r in relays]):  # noqa: ASYNC110
            await trio.sleep(0.05)


async def test_a_killed_process_ends_only_its_connections_and_they_resume_elsewhere(
    nursery: trio.Nursery, bus: NatsServer, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        a, b, c = (stack.enter_context(relay_proc(bus, tmp_path)) for _ in range(3))
        await wait_ready(a, b, c)
        proxy = Proxy(b.port)  # bob's network path (a load balancer) leads to B
        await nursery.start(proxy.serve)
        async with (
            client.connect(a.url, a.key) as alice,
            client.connect(f"ws://127.0.0.1:{proxy.port}", a.key) as bob,
        ):
            room = await alice.create_room()
            theirs = await bob.join(room.code)
            await theirs.send(b"before")
            assert (await next_of(room, Deliver)).body == b"before"

            b.proc.send_signal(signal.SIGKILL)  # B dies mid-conversation
            b.proc.wait(timeout=10)
            proxy.target_port = c.port  # the balancer sends bob to C from now on
            proxy.cut()
            await room.send(b"while bob moves")
            # bob resumes via C and gets it, once.
            assert (await next_of(theirs, Deliver)).body == b"while bob moves"
            sent = await theirs.send(b"from C")
            got = await next_of(room, Deliver)
            assert (got.body, got.seq) == (b"from C", sent.seq)
            assert bob.resumes >= 1
            # A, where the room lives, never stopped; it notices B is gone (heartbeats).
            with trio.fail_after(20):
                while await trio.to_thread.run_sync(a.peers) != 1:  # noqa: ASYNC110
                    await trio.sleep(0.1)
            assert await trio.to_thread.run_sync(c.peers) == 1


async def test_rooms_of_a_killed_home_end_for_members_elsewhere(
    bus: NatsServer, tmp_path: Path
) -> None:
    """The loss when a room's home dies: the room (its state lived there) ends, and
    members on other processes are told at once (``room_closed`` ``draining``) rather
    than finding out at their next request; their connection and other rooms go on."""
    with ExitStack() as stack:
        a, b = (stack.enter_context(relay_proc(bus, tmp_path)) for _ in range(2))
        await wait_ready(a, b)
        async with (
            client.connect(a.url, a.key, auto_resume=False) as alice,
            client.connect(b.url, b.key) as bob,
        ):
            room = await alice.create_room()
            theirs = await bob.join(room.code)
            mine = await bob.create_room()  # a room on B: unaffected
            await theirs.send(b"hello")
            a.proc.send_signal(signal.SIGKILL)
            ended = await next_of(theirs, RoomClosed)
            assert isinstance(ended, RoomClosed)
            assert ended.reason == "draining"
            assert theirs.ended
            assert not mine.ended
            await mine.send(b"still here")
            await bob.ping()


def readyz(relay: RelayProc) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{relay.metrics}/readyz", timeout=1) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


async def test_a_nats_restart_makes_the_relay_not_ready_until_it_is_back(
    bus: NatsServer, tmp_path: Path
) -> None:
    with relay_proc(bus, tmp_path) as relay:
        await wait_ready(relay)
        bus.stop()
        with trio.fail_after(20):
            while await trio.to_thread.run_sync(readyz, relay) != 503:  # noqa: ASYNC110
                await trio.sleep(0.05)
        bus.start()  # the same port: the relay reconnects by itself, no restart
        await wait_ready(relay)
        assert relay.proc.poll() is None
