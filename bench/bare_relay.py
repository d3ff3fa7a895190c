"""The baseline: a minimal room relay on trio + trio-websocket, with nothing else.

The request path names the room; every binary message a member sends is forwarded to
the room's other members with one ``await ws.send_message`` per peer. No encryption,
no envelopes, no sequence numbers, no acks: this is the floor that Haven's full
protocol is measured against (``bench.relay_bench`` reports Haven / bare).

Run: ``python -m bench.bare_relay --port 0``. The first stdout line is
``bare relay ws://HOST:PORT`` with the real port. SIGINT or SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import signal

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket


class BareRelay:
    """Rooms are sets of open connections, keyed by the request path."""

    def __init__(self) -> None:
        self.rooms: dict[str, set[WebSocketConnection]] = {}

    async def handle(self, request: WebSocketRequest) -> None:
        """Accept, join the room named by the path, forward until the peer goes."""
        ws = await request.accept()
        path = request.path
        room = self.rooms.setdefault(path, set())
        room.add(ws)
        try:
            while True:
                message = await ws.get_message()
                for peer in list(room):
                    if peer is not ws:
                        try:
                            await peer.send_message(message)
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
    relay = BareRelay()
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, relay.handle, host, port, None)
        print(f"bare relay ws://{host}:{server.port}/", flush=True)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                break
        nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description="bare trio-websocket room relay (baseline)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    trio.run(run, args.host, args.port)


if __name__ == "__main__":
    main()
