"""What the parts of a relay's cluster link share: the bus message kinds, the timings,
and the state each part reads (``LinkState``), so that each part reads on its own.

``ClusterLink`` (``cluster.link``) is made of three parts, one module each:
``cluster.forwarding`` (the origin side: requests for other processes, their replies),
``cluster.proxies`` (the home side: proxy peers standing for remote connections) and
``cluster.escalations`` (crisis escalations into the leader's queues).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import trio

    from haven.relay import flows
    from haven.relay.connection import ClientSocket
    from haven.relay.peer import Peer
    from haven.relay.server import Relay

    from . import nats, wire
    from .seal import ClusterKey

TAG_BYTES = 8
#: Seconds between heartbeats, and after which an unheard process counts as gone.
HEARTBEAT = 1.0
PEER_TIMEOUT = 3.5
#: Seconds a new link waits to hear the others before it decides who leads.
SETTLE = 1.5 * HEARTBEAT
#: Seconds a forwarded request may wait for its reply before the client is told to retry.
FORWARD_TIMEOUT = 3.0
RETRY_AFTER = 2
#: Bus message kinds (the first item of every sealed msgpack payload).
REQ, OUT, GONE, BEAT, ESC, ESC_DONE, CHECK = 1, 2, 3, 4, 5, 6, 7
#: Seconds between a home's checks that the connections its proxies stand for still
#: exist (a ``gone`` lost on the bus would otherwise keep a proxy present for ever).
CHECK_EVERY = 10.0


class LinkState:
    """The state and the shared operations every part of the link uses (declared here,
    set up by ``ClusterLink.__init__``, implemented where named)."""

    relay: Relay
    key: ClusterKey
    tag: bytes
    client: nats.NatsClient
    node_subject: bytes
    flows: flows.Flows | None
    #: (origin tag, connection number) -> the proxy peer standing for it here.
    proxies: dict[tuple[bytes, int], Peer]
    #: Local connections by bus number, and their forwarded requests by number.
    remotes: dict[int, ClientSocket]
    forwards: dict[int, ClientSocket]
    escalations: dict[int, tuple[Peer, int, float]]
    dirty: bool
    room_subs: dict[str, nats.Subscription]
    #: This flush's frames and closes for proxies, by origin (``Proxies.kick``).
    _out: dict[bytes, list[tuple[int, int, bytes]]]
    _closes: dict[bytes, list[tuple[int, int]]]
    _next: int
    #: Numbers of the frame batches sent to each origin, and received from each home.
    _out_seq: dict[bytes, int]
    _in_seq: dict[bytes, int]
    #: Connections whose forwarded request was answered in this read (``_continue``
    #: runs for each after the read's one flush).
    _answered: list[ClientSocket]
    _gone_later: list[tuple[bytes, list[Any]]]
    forwarded: int
    _nursery: trio.Nursery | None

    if TYPE_CHECKING:

        def _publish(
            self, subject: bytes, items: list[Any], reply: bytes | None = None
        ) -> None: ...

        def subject(self, kind: str, name: bytes | str) -> bytes: ...

        def leader(self) -> bytes | None: ...

        def _number(self) -> int: ...

        def _proxy(
            self, origin: bytes, number: int, now: float, pow_seed: bytes = b""
        ) -> Peer: ...

        def _address(self, peer: Peer) -> tuple[bytes, int] | None: ...

        def _continue(self, conn: ClientSocket) -> None: ...

        def _on_bus(self, msg: wire.Msg) -> None: ...

        def outgoing(self, origin: bytes) -> list[tuple[int, int, bytes]]: ...

        def outgoing_close(self, origin: bytes, conn: int, code: int) -> None: ...

        def drop_proxy(self, sink: Any) -> None: ...


__all__ = [
    "BEAT", "CHECK", "CHECK_EVERY", "ESC", "ESC_DONE", "FORWARD_TIMEOUT", "GONE",
    "HEARTBEAT", "OUT", "PEER_TIMEOUT", "REQ", "RETRY_AFTER", "SETTLE", "TAG_BYTES",
    "LinkState",
]  # fmt: skip
