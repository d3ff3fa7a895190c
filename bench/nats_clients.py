"""Haven's Trio NATS client against nats-py (asyncio), on one nats-server (issue 13).

    pip install nats-py   # for the comparison only; not a dependency of Haven
    PYTHONPATH=. python -m bench.nats_clients [--messages 200000] [--size 256]

Each client runs in its own process against Debian's nats-server on 127.0.0.1:

* **publish**: send N messages of ``--size`` bytes as fast as the client allows, then a
  round trip to the server (so all were taken): messages/s and CPU µs per message;
* **receive**: another process floods N messages; the measured client counts them as
  they arrive: messages/s and CPU µs per message.

CPU is the measured process's own (user + system), from its start of the phase to the
end; the server's and the other process's are not counted. Nothing is written to disk.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import resource
import time
from pathlib import Path
from typing import Any

import trio

from haven.cluster.nats import NatsClient, Options, Overflow, Server

from .cluster_bench import Nats

SUBJECT = b"bench.x"


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Tally:
    """Counts received messages; times the receive phase from the first to the n-th
    (wall clock and this process's CPU) and sets ``finished`` at the n-th."""

    def __init__(self, n: int, finished: trio.Event | asyncio.Event) -> None:
        self.n = n
        self.got = 0
        self.finished = finished
        self.marks: dict[str, float] = {}

    def hit(self) -> None:
        self.got += 1
        if self.got == 1:
            self.marks["c0"], self.marks["t0"] = cpu(), time.perf_counter()
        if self.got == self.n:
            self.marks["t1"], self.marks["c1"] = time.perf_counter(), cpu()
            self.finished.set()

    def result(self) -> dict[str, float]:
        m = self.marks
        return {"seconds": m["t1"] - m["t0"], "cpu": m["c1"] - m["c0"]}


# ------------------------------------------------------------------ Haven's client


async def _haven_publish(url: str, n: int, size: int) -> dict[str, float]:
    client = NatsClient(Options([Server.parse(url)]))
    payload = b"x" * size
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.run)
        await client.wait_connected()
        c0, t0 = cpu(), time.perf_counter()
        batch = 256  # as the relay does: publish a flush's worth, then write at once
        for i in range(0, n, batch):
            for _ in range(min(batch, n - i)):
                while True:
                    try:
                        client.publish(SUBJECT, payload)
                        break
                    except Overflow:  # let the writer drain
                        await trio.sleep(0.001)
            client.write_now()
            await trio.lowlevel.checkpoint()
        await client.flush(30)
        t1, c1 = time.perf_counter(), cpu()
        nursery.cancel_scope.cancel()
    return {"seconds": t1 - t0, "cpu": c1 - c0}


async def _haven_receive(url: str, n: int, ready: Any, done: Any) -> dict[str, float]:
    client = NatsClient(Options([Server.parse(url)]))
    tally = Tally(n, trio.Event())
    client.subscribe(SUBJECT, lambda _msg: tally.hit())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.run)
        await client.wait_connected()
        await client.flush()
        ready.set()
        with trio.fail_after(120):
            await tally.finished.wait()
        nursery.cancel_scope.cancel()
    done.set()
    return tally.result()


# ------------------------------------------------------------------ nats-py


async def _natspy_publish(url: str, n: int, size: int) -> dict[str, float]:
    import nats

    nc = await nats.connect(url, pending_size=64 * 1024 * 1024)
    payload = b"x" * size
    c0, t0 = cpu(), time.perf_counter()
    for _ in range(n):
        await nc.publish(SUBJECT.decode(), payload)
    await nc.flush(30)
    t1, c1 = time.perf_counter(), cpu()
    await nc.close()
    return {"seconds": t1 - t0, "cpu": c1 - c0}


async def _natspy_receive(url: str, n: int, ready: Any, done: Any) -> dict[str, float]:
    import nats

    nc = await nats.connect(url, pending_size=64 * 1024 * 1024)
    tally = Tally(n, asyncio.Event())

    async def on_msg(_msg: Any) -> None:
        tally.hit()

    await nc.subscribe(SUBJECT.decode(), cb=on_msg, pending_msgs_limit=n + 1,
                       pending_bytes_limit=1 << 30)  # fmt: skip
    await nc.flush()
    ready.set()
    await asyncio.wait_for(tally.finished.wait(), 120)
    await nc.close()
    done.set()
    return tally.result()


# ------------------------------------------------------------------ harness


def _publisher(url: str, n: int, size: int, ready: Any) -> None:
    ready.wait(60)
    trio.run(_haven_publish, url, n, size)


def _measure(kind: str, phase: str, url: str, n: int, size: int, out: Any) -> None:
    if phase == "publish":
        if kind == "haven":
            result = trio.run(_haven_publish, url, n, size)
        else:
            result = asyncio.run(_natspy_publish(url, n, size))
    else:
        ready, done = multiprocessing.Event(), multiprocessing.Event()
        feeder = multiprocessing.Process(target=_publisher, args=(url, n, size, ready))
        feeder.start()
        if kind == "haven":
            result = trio.run(_haven_receive, url, n, ready, done)
        else:
            result = asyncio.run(_natspy_receive(url, n, ready, done))
        feeder.join(60)
    out.put(result)


def measure(kind: str, phase: str, url: str, n: int, size: int) -> dict[str, Any]:
    queue: Any = multiprocessing.Queue()
    proc = multiprocessing.Process(target=_measure, args=(kind, phase, url, n, size, queue))
    proc.start()
    result = queue.get(timeout=300)
    proc.join(60)
    seconds, used = result["seconds"], result["cpu"]
    return {
        "client": kind, "phase": phase, "messages": n,
        "messages_per_s": round(n / seconds), "cpu_us_per_message": round(1e6 * used / n, 2),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=200_000)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory() as d:
        server = Nats(Path(d))
        try:
            for phase in ("publish", "receive"):
                for kind in ("haven", "nats-py"):
                    row = measure(kind, phase, server.url, args.messages, args.size)
                    rows.append(row)
                    print(f"{phase:8} {kind:8} {row['messages_per_s']:>10,} msg/s  "
                          f"{row['cpu_us_per_message']:6.2f} µs CPU/msg", flush=True)  # fmt: skip
        finally:
            server.stop()
    for phase in ("publish", "receive"):
        ours, theirs = (r for r in rows if r["phase"] == phase)
        print(f"{phase}: Haven's client {ours['messages_per_s'] / theirs['messages_per_s']:.2f}x "
              f"the messages/s of nats-py at "
              f"{ours['cpu_us_per_message'] / theirs['cpu_us_per_message']:.2f}x its CPU per "
              "message")  # fmt: skip
    if args.json:
        print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
