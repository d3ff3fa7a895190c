"""Relays in a cluster for tests: each a real relay (its own listener, hub, metrics and
NATS link) on loopback, all on one real nats-server and one cluster key.

The relays of one cluster share their static key, as a deployment must: a client pins
one key whatever process it reaches (and resumes on another).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import trio
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from prometheus_client import CollectorRegistry

from haven import client
from haven.cluster.seal import ClusterKey
from haven.protocol.messages import Deliver
from haven.relay import config as config_mod
from haven.relay import server
from haven.relay.keys import write_cluster_key


def cluster_key_file(directory: Path) -> Path:
    path = directory / "cluster.key"
    if not path.exists():
        write_cluster_key(path, ClusterKey.generate())
    return path


async def start_cluster(
    nursery: trio.Nursery, nats_url: str, directory: Path, n: int, **overrides: Any
) -> list[Any]:
    """``n`` relays of one cluster; returns their ``RelayInfo`` once all are linked."""
    key = X25519PrivateKey.generate()
    infos = []
    for _ in range(n):
        config = config_mod.Config(
            port=0, metrics_port=None, cluster=nats_url,
            cluster_key=cluster_key_file(directory), **overrides,
        )  # fmt: skip
        infos.append(
            await nursery.start(
                partial(server.serve, config, static_key=key, registry=CollectorRegistry())
            )
        )
    with trio.fail_after(10):
        for info in infos:
            await info.relay.cluster.client.wait_connected()
            await info.relay.cluster.client.flush()
    # Linked long enough to have heard each other: all agree on the leader.
    await until(lambda: all(i.relay.cluster.ready for i in infos))
    await until(lambda: len({i.relay.cluster.leader() for i in infos}) == 1)
    return infos


async def next_of(room: client.Room, kind: type[Any]) -> Any:
    """The next event of type ``kind`` in ``room``'s stream (others are skipped)."""
    with trio.fail_after(20):
        async for event in room.events():
            if isinstance(event, kind):
                return event
    raise AssertionError(f"stream ended before a {kind.__name__}")


async def deliveries(room: client.Room, n: int) -> list[Deliver]:
    """The next ``n`` messages delivered in ``room``, in order."""
    return [await next_of(room, Deliver) for _ in range(n)]


async def until(predicate: Any) -> None:
    """Poll relay or client state (no event to wait on) until ``predicate()`` (10 s)."""
    with trio.fail_after(10):
        while not predicate():  # noqa: ASYNC110 (relay state)
            await trio.sleep(0.01)


__all__ = ["cluster_key_file", "deliveries", "next_of", "start_cluster", "until"]
