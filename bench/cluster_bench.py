"""One relay process against two on NATS, measured in one run (issue 13).

    PYTHONPATH=. python -m bench.cluster_bench [--rates 2000,6000] [--duration 10]

For each offered load (messages/s, rooms of two, or rooms of ten with ``--members 10``)
it runs the load tester twice against fresh relays on 127.0.0.1:

* **single**: one ``haven serve`` process, every member connected to it;
* **cluster**: ``nats-server`` (Debian's package) and two ``haven serve --cluster``
  processes; the load tester's ``--url A --url B`` puts the members of every room on
  different processes, so every message crosses the bus.

It reports deliveries/s, the relays' CPU (plus nats-server's in the cluster) per
delivery, and the delivery latency percentiles, and the ratios the issue sets targets
for: CPU per delivery in the cluster <= 1.5x single, cross-process p99 added <= 1 ms at
2,000 msg/s. The load generator runs in its own process(es); its CPU is not counted.
Nothing is written to disk (the cluster key lives in a temporary directory, removed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import trio

from haven.cluster.seal import ClusterKey
from haven.loadtest import runner
from haven.loadtest.slo import parse
from haven.loadtest.spec import LoadSpec
from haven.relay.keys import write_cluster_key

from .relay_bench import HAVEN_BENCH_FLAGS, ROOT, RelayProcess

NATS = shutil.which("nats-server") or "/usr/sbin/nats-server"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_haven(extra: list[str], key_file: Path) -> RelayProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    cmd = [sys.executable, "-m", "haven", "serve", "--host", "127.0.0.1", "--port", "0",
           "--metrics-port", "none", "--key", str(key_file), *HAVEN_BENCH_FLAGS,
           *extra]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env, cwd=ROOT)  # fmt: skip
    assert proc.stdout is not None
    words = proc.stdout.readline().split()
    if len(words) < 4 or not words[3].startswith("key="):
        proc.kill()
        raise RuntimeError("haven did not start")
    import base64

    text = words[3][4:]
    key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    return RelayProcess("haven", proc, words[2], key)


class Nats:
    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        conf = directory / "nats.conf"
        conf.write_text(f"listen: 127.0.0.1:{self.port}\n")
        self.proc = subprocess.Popen([NATS, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)  # fmt: skip
        self.ps = psutil.Process(self.proc.pid)
        import socket

        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.02)
        self.url = f"nats://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def run_load(urls: list[str], key: bytes, rate: float, members: int, duration: float,
             workers: int) -> dict[str, Any]:  # fmt: skip
    per_member = 10.0
    rooms = max(1, round(rate / (members * per_member)))
    spec = LoadSpec(
        url=urls[0], more_urls=tuple(urls[1:]), key=key, rooms=rooms, members=members,
        rate=rate / (rooms * members), duration=duration, ramp_up=1.0, settle=5.0,
        kind="direct" if members == 2 else "group",
    )  # fmt: skip
    opts = runner.RunOptions(workers=workers, slo=parse("loss=0"))
    return trio.run(runner.run, spec, opts)


def cell(mode: str, rate: float, members: int, args: argparse.Namespace,
         tmp: Path) -> dict[str, Any]:  # fmt: skip
    key_file = tmp / "relay.key"
    if not key_file.exists():
        subprocess.run([sys.executable, "-m", "haven", "keygen", "--out", str(key_file)],
                       check=True, cwd=ROOT, capture_output=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    nats = None
    relays: list[RelayProcess] = []
    try:
        if mode == "single":
            relays.append(start_haven([], key_file))
        else:
            nats = Nats(tmp)
            ck = tmp / "cluster.key"
            if not ck.exists():
                write_cluster_key(ck, ClusterKey.generate())
            for _ in range(2):
                relays.append(start_haven(["--cluster", nats.url, "--cluster-key", str(ck)],
                                          key_file))  # fmt: skip
        time.sleep(1.0)  # links up, heartbeats exchanged
        before = [r.cpu_seconds() for r in relays]
        nats_before = nats.cpu_seconds() if nats else 0.0
        t0 = time.monotonic()
        assert relays[0].key is not None
        rep = run_load([r.url for r in relays], relays[0].key, rate, members, args.duration,
                       args.workers)  # fmt: skip
        wall = time.monotonic() - t0
        relay_cpu = sum(r.cpu_seconds() - b for r, b in zip(relays, before, strict=True))
        nats_cpu = (nats.cpu_seconds() - nats_before) if nats else 0.0
    finally:
        for r in relays:
            r.stop()
        if nats is not None:
            nats.stop()
    delivered = rep["delivered"]
    lat = rep["latency_ms"]
    return {
        "mode": mode, "rate": rate, "members": members, "sent": rep["sent"],
        "delivered": delivered, "lost": rep["lost"], "errors": rep["errors"],
        "deliveries_per_s": rep["deliveries_per_s"],
        "relay_cpu_s": round(relay_cpu, 2), "nats_cpu_s": round(nats_cpu, 2),
        "wall_s": round(wall, 1),
        "cpu_us_per_delivery": round(1e6 * (relay_cpu + nats_cpu) / max(1, delivered), 1),
        "p50_ms": lat["p50"], "p99_ms": lat["p99"], "p999_ms": lat["p999"],
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rates", default="2000,6000", help="offered messages/s (comma list)")
    p.add_argument("--members", type=int, default=2, help="room size (2: direct rooms)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of sending per cell")
    p.add_argument("--workers", type=int, default=1, help="load generator processes")
    p.add_argument("--json", action="store_true", help="print the cells as JSON too")
    args = p.parse_args(argv)
    cells = []
    with tempfile.TemporaryDirectory() as d:
        for text in args.rates.split(","):
            rate = float(text)
            for mode in ("single", "cluster"):
                c = cell(mode, rate, args.members, args, Path(d))
                cells.append(c)
                print(f"{mode:8} {rate:7.0f} msg/s  rooms of {args.members}: "
                      f"{c['deliveries_per_s']:9,.0f} deliveries/s  "
                      f"CPU {c['cpu_us_per_delivery']:6.1f} µs/delivery "
                      f"(relays {c['relay_cpu_s']} s, nats {c['nats_cpu_s']} s)  "
                      f"p50 {c['p50_ms']} ms  p99 {c['p99_ms']} ms  "
                      f"lost {c['lost']} errors {c['errors']}", flush=True)  # fmt: skip
    print()
    for i in range(0, len(cells), 2):
        single, cluster = cells[i], cells[i + 1]
        ratio = cluster["cpu_us_per_delivery"] / max(1e-9, single["cpu_us_per_delivery"])
        print(f"{single['rate']:7.0f} msg/s: CPU per delivery cluster/single {ratio:.2f}x "
              f"(target <= 1.5x); added p50 {cluster['p50_ms'] - single['p50_ms']:+.2f} ms, "
              f"added p99 {cluster['p99_ms'] - single['p99_ms']:+.2f} ms "
              "(target <= 1 ms at 2,000 msg/s)")  # fmt: skip
    if args.json:
        print(json.dumps(cells, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
