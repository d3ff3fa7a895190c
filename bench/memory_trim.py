"""Does memory come back after many rooms expire? (issue: +39 % RSS after 10,000 rooms)

Drives the relay's synchronous hub (the same objects a running relay holds: rooms,
seats, rings of real ``deliver`` events) without sockets, so the figures isolate the
allocator's behaviour: RSS before, with N rooms, after they all expire, and after
glibc's ``malloc_trim(0)``; then a second cycle to tell retention from a leak.

    PYTHONPATH=. python -m bench.memory_trim --rooms 10000 --messages 20
"""

from __future__ import annotations

import argparse
import gc

import psutil

from haven.protocol import messages as m
from haven.relay import flows
from haven.relay.config import Config
from haven.relay.hub import Hub
from haven.relay.trim import trim_heap

MIB = 1024 * 1024


def rss() -> float:
    return psutil.Process().memory_info().rss / MIB


def fill(hub: Hub, rooms: int, messages: int, now: float) -> None:
    for k in range(rooms):
        a = hub.connect(now)
        b = hub.connect(now)
        hub.handle(a, m.CreateRoom(id=1, kind="group"), now)
        code = next(iter(a.seats))
        hub.handle(b, m.Join(id=1, room=code), now)
        for i in range(messages):
            hub.handle(a, m.Send(id=2 + i, room=code, body=bytes([k % 256]) * 200), now)
        hub.out.clear()
        hub.disconnect(a, now)
        hub.disconnect(b, now)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rooms", type=int, default=10_000)
    p.add_argument("--messages", type=int, default=20)
    args = p.parse_args()
    config = Config(port=0, metrics_port=None, rate_per_s=1e9, rate_burst=10**9,
                    max_rooms=10**6)  # fmt: skip
    hub = Hub(config, 0.0, extend=flows.extension(config))
    gc.collect()
    print(f"start                {rss():8.1f} MiB")
    now = 0.0
    for cycle in (1, 2):
        fill(hub, args.rooms, args.messages, now)
        print(f"cycle {cycle}: {len(hub.rooms)} rooms  {rss():8.1f} MiB")
        now += config.room_hard_ttl + 1
        hub.handle_timers(now)
        gc.collect()
        assert not hub.rooms
        print(f"cycle {cycle}: expired        {rss():8.1f} MiB")
        trimmed = trim_heap()
        print(f"cycle {cycle}: malloc_trim    {rss():8.1f} MiB (available: {trimmed})")


if __name__ == "__main__":
    main()
