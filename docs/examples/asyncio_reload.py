"""The asyncio SDK, and picking a conversation back up after a page reload.

Run from the repository root: ``.venv/bin/python docs/examples/asyncio_reload.py URL KEY``.

A FastAPI or Django back end runs on asyncio; the SDK is the same there as under Trio
(``import haven``). This example is what such a back end does when a visitor's browser
reloads: the first connection ends without leaving, the seat's token and the last
``seq`` shown were kept (in the page's memory, say), and a new connection takes the seat
back with ``resume``, receiving exactly the messages it missed. The test suite runs this
file against a real relay (tests/client/test_examples.py).
"""

from __future__ import annotations

import asyncio
import sys

import haven
from haven.protocol import messages as m


async def next_body(room: haven.Room) -> tuple[bytes, int]:
    async for event in room.events():
        if isinstance(event, m.Deliver):
            return event.body, event.seq
    raise RuntimeError("the room ended")


async def main(url: str, relay_key: str) -> list[bytes]:
    """A helper and a visitor talk; the visitor's page reloads; nothing is lost."""
    async with haven.connect(url, relay_key) as helper:
        room = await helper.create_room(kind="direct")
        async with haven.connect(url, relay_key) as visitor:
            seat = await visitor.join(room.code)
            await room.send(b"hello, I'm here to listen")
            body, seq = await next_body(seat)
            received = [body]
            saved_token = seat.seat.token  # what the page keeps across the reload
        # The page reloads: the old connection is gone, the seat is held for a while.
        await room.send(b"take your time")
        async with haven.connect(url, relay_key) as visitor_again:
            back = await visitor_again.resume(saved_token, after=seq)
            assert isinstance(back, haven.Room)
            body, _ = await next_body(back)  # sent while the page was reloading
            received.append(body)
            await back.leave()
    return received


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: asyncio_reload.py URL KEY (both printed by `haven serve`)")
    for line in asyncio.run(main(sys.argv[1], sys.argv[2])):
        print(line.decode())
