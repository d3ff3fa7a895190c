"""Two anonymous peers in a link-only group room.

Run from the repository root: ``.venv/bin/python docs/examples/two_peers.py URL KEY``.

The URL and key are the two values ``haven serve`` prints on its first line. The test
suite runs this file against a real relay (tests/client/test_examples.py).
"""

from __future__ import annotations

import sys

import trio

from haven import client
from haven.protocol import messages as m


async def main(url: str, relay_key: str) -> list[bytes]:
    """Alice opens a room, Bob joins with its code, they exchange two messages."""
    received: list[bytes] = []
    async with client.connect(url, relay_key) as alice, client.connect(url, relay_key) as bob:
        room = await alice.create_room(kind="group", topic="evening check-in")
        # The code is what Alice shares (say, in a link); any spelling of it works.
        bobs_room = await bob.join(room.code.upper())
        await room.send(b"hello, is anyone here?")
        async for event in bobs_room.events():
            if isinstance(event, m.Deliver):
                received.append(event.body)
                break
        await bobs_room.send(b"yes - take your time")
        async for event in room.events():
            if isinstance(event, m.Deliver):
                received.append(event.body)
                break
        await bobs_room.leave()
    return received


if __name__ == "__main__":
    for body in trio.run(main, sys.argv[1], sys.argv[2]):
        print(body.decode())
