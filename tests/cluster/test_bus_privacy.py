"""Nothing in clear on the bus: a tap on every subject sees only HMACs and ciphertext.

A subscriber on ``>`` (all subjects) records every message the relays exchange while
members on two processes talk; no room code (any spelling), alias, resume token, body
or request field appears in any subject or payload.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from haven import client
from haven.cluster import wire
from haven.cluster.nats import NatsClient, Options, Server
from haven.protocol import codes

from .clusterkit import deliveries, start_cluster
from .natskit import NatsServer, nats_server


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[NatsServer]:
    with nats_server(tmp_path) as s:
        yield s


async def test_a_tap_on_every_subject_learns_nothing(
    nursery: trio.Nursery, bus: NatsServer, tmp_path: Path
) -> None:
    tap = NatsClient(Options([Server.parse(bus.url)], name="tap"))
    recorded: list[wire.Msg] = []
    tap.subscribe(b">", recorded.append)
    nursery.start_soon(tap.run)
    await tap.wait_connected()
    await tap.flush()

    a, b = await start_cluster(nursery, bus.url, tmp_path, 2)
    secrets: list[bytes] = []
    async with (
        client.connect(a.url, a.public_key) as alice,
        client.connect(b.url, b.public_key, auto_resume=False) as bob,
    ):
        room = await alice.create_room(topic="a topic only members know")
        theirs = await bob.join(room.code)
        bodies = [b"BODY-%02d-secret" % i for i in range(10)]
        for body in bodies:
            await theirs.send(body)
        assert [d.body for d in await deliveries(room, len(bodies))] == bodies
        await room.send(b"BODY-from-alice")
        secrets += [*bodies, b"BODY-from-alice", b"a topic only members know"]
        secrets += [room.code.encode(), room.code.replace("-", "").encode()]
        secrets.append(codes.room_code_to_bytes(room.code))
        secrets += [room.alias.encode(), theirs.alias.encode()]
        secrets += [room.seat.token, theirs.seat.token, theirs.seat.token[8:]]
    await tap.flush()
    await trio.sleep(0.2)
    assert len(recorded) > 20  # the tap saw the traffic
    for msg in recorded:
        blob = msg.subject + (msg.reply or b"") + msg.payload + (msg.headers or b"")
        for secret in secrets:
            assert secret not in blob, (secret, msg.subject)
        assert msg.subject.startswith((b"hv.", b"_INBOX."))
