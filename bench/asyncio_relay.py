"""A reference relay on asyncio and the ``websockets`` library, with no crypto at all.

Same contract as ``bench.bare_relay`` (the request path names the room; each binary
message goes to the room's other members, one ``await ws.send`` per peer; no
envelopes, sequence numbers or acks), on the runtime and WebSocket library most Python
relays would use. Issue 14 measures Haven against it: ``bench.relay_bench --relays
bare,asyncio,haven`` reports both ratios from one run.

Run: ``python -m bench.asyncio_relay --port 0``. The first stdout line is
``asyncio relay ws://HOST:PORT/`` with the real port. SIGINT or SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed


class AsyncioRelay:
    """Rooms are sets of open connections, keyed by the request path."""

    def __init__(self) -> None:
        self.rooms: dict[str, set[ServerConnection]] = {}

    async def handle(self, ws: ServerConnection) -> None:
        """Join the room named by the path, forward until the peer goes."""
        path = ws.request.path if ws.request is not None else "/"
        room = self.rooms.setdefault(path, set())
        room.add(ws)
        try:
            async for message in ws:
                for peer in list(room):
                    if peer is not ws:
                        try:
                            await peer.send(message)
                        except ConnectionClosed:
                            room.discard(peer)
        except ConnectionClosed:
            pass
        finally:
            room.discard(ws)
            if not room:
                self.rooms.pop(path, None)


async def run(host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM; print the banner with the real port first."""
    relay = AsyncioRelay()
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(
        relay.handle, host, port, compression=None, ping_interval=None, max_size=2**20
    ) as server:
        real_port = next(iter(server.sockets)).getsockname()[1]
        print(f"asyncio relay ws://{host}:{real_port}/", flush=True)
        await stop


def main() -> None:
    parser = argparse.ArgumentParser(description="asyncio websockets room relay (reference)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(run(args.host, args.port))


if __name__ == "__main__":
    main()
