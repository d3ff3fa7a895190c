"""A Haven relay under cProfile, for benchmarks only (``--profile`` in relay_bench).

``haven serve`` forbids every file write after start-up (relay/ramonly.py), which
would also stop cProfile from saving its results; this runner serves the same relay
without that guard, profiles it, and writes the stats when SIGINT drains it. Never use
it to serve real users.

    python -m bench.profile_relay --out FILE [haven serve flags...]
"""

from __future__ import annotations

import cProfile
import signal
import sys
from pathlib import Path

import trio

from haven.relay.cli import build_parser
from haven.relay.config import load, scalar_fields
from haven.relay.server import RelayInfo, serve


async def run(argv: list[str], profile: cProfile.Profile) -> None:
    args = build_parser().parse_args(["serve", *argv])
    config = load({f.name: getattr(args, f.name) for f in scalar_fields()}, env={})
    async with trio.open_nursery() as nursery:
        info: RelayInfo = await nursery.start(serve, config)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            print(info.banner(), flush=True)
            profile.enable()
            async for _ in signals:
                info.relay.drain_requested.set()
                break
    profile.disable()


def main() -> int:
    argv = sys.argv[1:]
    if len(argv) < 2 or argv[0] != "--out":
        print("usage: python -m bench.profile_relay --out FILE [serve flags]", file=sys.stderr)
        return 2
    out, rest = Path(argv[1]), argv[2:]
    profile = cProfile.Profile()
    trio.run(run, rest, profile)
    profile.dump_stats(str(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
