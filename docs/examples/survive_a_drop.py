"""A seat survives a dropped connection: the SDK resumes it and nothing is lost.

Run it against a relay (``./scripts/serve`` prints the URL and KEY), from the repository
root with the project installed (``.venv``):

    .venv/bin/python docs/examples/survive_a_drop.py ws://127.0.0.1:8765 KEY

The relay holds a dropped seat for its grace window (60 s by default); the SDK
reconnects, presents the seat's resume token and the relay replays what was missed,
exactly once and in order.
"""

from __future__ import annotations

import sys

import trio

from haven import client
from haven.protocol import messages as m


async def main(url: str, relay_key: str, drop: object = None) -> list[bytes]:
    """Send three messages while the receiver's connection is cut; it still gets all three.

    ``drop`` is a callable that cuts the receiver's connection (the test passes one
    that closes it on the relay side); run standalone, the receiver's own link is cut
    with ``Connection.interrupt()``, as a flaky mobile network would.
    """
    got: list[bytes] = []
    async with client.connect(url, relay_key) as sender, client.connect(url, relay_key) as me:
        room = await sender.create_room(kind="direct")
        mine = await me.join(room.code)
        if callable(drop):
            drop(mine.seat.alias)
        else:
            me.interrupt()
        for text in (b"one", b"two", b"three"):
            await room.send(text)
        async for event in mine.events():
            if isinstance(event, m.Deliver):
                got.append(event.body)
                if len(got) == 3:
                    break
    return got


if __name__ == "__main__":
    print(trio.run(main, sys.argv[1], sys.argv[2]))
