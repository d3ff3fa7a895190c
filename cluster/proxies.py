"""The home side of the cluster link: proxy peers stand for connections on other
processes, so the hub's rooms, queues and flows serve them unchanged.

A proxy is made on the first request that arrives from a remote connection and lives
until its origin announces the connection's end (``gone``) or falls silent. What the
hub queues for proxies of one origin during a flush leaves in one sealed bus message
(frames sent to several of its members travel once), written with everything else at
the end of the flush.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from haven.protocol import codec
from haven.protocol import messages as m
from haven.protocol.errors import DecodeError
from haven.relay.limits import TokenBucket
from haven.relay.peer import REFILL_BYTES
from haven.relay.tokens import Claims

from . import nats
from .base import OUT, LinkState

if TYPE_CHECKING:
    from haven.relay.peer import Peer
    from haven.relay.rooms import Room


class ProxySink:
    """Stands for a remote connection where the hub expects a ``ClientSocket``."""

    __slots__ = ("closing", "conn", "link", "origin", "peer")

    proxy = True  #: ``Relay.flush`` hands it the message too (``push_message``)

    def __init__(self, link: LinkState, origin: bytes, conn: int) -> None:
        self.link = link
        self.origin = origin
        self.conn = conn
        self.closing = False
        self.peer: Peer | None = None

    def push_message(self, padded: bytes, msg: m.Message) -> None:
        rid = msg.id if isinstance(msg, m.Reply) else 0
        self.link.outgoing(self.origin).append((self.conn, rid, padded))

    def close(self, code: int | None, reason: str) -> None:
        if not self.closing:
            self.link.outgoing_close(self.origin, self.conn, code or 1000)
            self.link.drop_proxy(self)

    def drop_backlog(self) -> None:
        pass


class Proxies(LinkState):
    """The home side (a part of ``ClusterLink``)."""

    def outgoing(self, origin: bytes) -> list[tuple[int, int, bytes]]:
        """The batch of frames for ``origin`` this flush (sent by ``kick``)."""
        batch = self._out.get(origin)
        if batch is None:
            batch = self._out[origin] = []
            if not self.dirty:
                self.dirty = True
                self.relay.dirty.append(self)  # type: ignore[arg-type]
        return batch

    def outgoing_close(self, origin: bytes, conn: int, code: int) -> None:
        self._closes.setdefault(origin, []).append((conn, code))
        self.outgoing(origin)

    def kick(self, latency: float) -> None:
        """End of a flush: one bus message per origin with everything for it, and all
        of it written to the bus at once."""
        self.dirty = True  # (what is published here is written below)
        out, self._out = self._out, {}
        closes, self._closes = self._closes, {}
        for origin, batch in out.items():
            frames: list[bytes] = []
            index: dict[int, int] = {}
            entries = []
            for conn, rid, padded in batch:
                i = index.get(id(padded))
                if i is None:
                    i = index[id(padded)] = len(frames)
                    frames.append(padded)
                entries.append((conn, rid, i))
            # Numbered per origin: a message lost on the bus shows as a gap there.
            seq = self._out_seq[origin] = self._out_seq.get(origin, 0) + 1
            try:
                self._publish(
                    self.subject("node", origin),
                    [OUT, self.tag, seq, frames, entries, closes.get(origin, [])],
                )
            except nats.NatsError:
                # The origin's clients miss these; it sees the gap and has them resume.
                self.relay.metrics.cluster_dropped.inc(len(entries))
        self.dirty = False
        self.client.write_now()

    def drop_proxy(self, sink: ProxySink) -> None:
        sink.closing = True
        peer = self.proxies.pop((sink.origin, sink.conn), None)
        if peer is not None:
            self.relay.hub.disconnect(peer, trio.current_time())

    def _proxy(self, origin: bytes, number: int, now: float, pow_seed: bytes = b"") -> Peer:
        key = (origin, number)
        peer = self.proxies.get(key)
        if peer is None:
            sink = ProxySink(self, origin, number)
            # The connection's own proof-of-work seed: the client solves for the seed it
            # was given, whichever process checks the proof.
            peer = self.relay.hub.connect(now, sink=sink, pow_seed=pow_seed)
            # The origin charged the connection's rate limit for every request it
            # forwards; charging again here would refuse bursts the bus compressed.
            peer.bucket = TokenBucket(1e12, 2**53, now)
            sink.peer = peer
            self.proxies[key] = peer
        return peer

    def _handle_request(
        self, origin: bytes, number: int, envelope: bytes, claims: list[Any] | None,
        pow_seed: bytes,
    ) -> None:  # fmt: skip
        hub = self.relay.hub
        now = trio.current_time()
        peer = self._proxy(origin, number, now, pow_seed)
        # The origin verified the connection's tokens; its claims come along (a process
        # of the cluster is trusted: it holds the cluster key).
        peer.claims = _claims_in(claims)
        try:
            req = codec.decode_request(envelope)
        except DecodeError as exc:
            hub.bad_request(peer, exc, exc.request_id, now)
        else:
            hub.handle(peer, req, now)
        # A resume leaves the seat catching up, pulled as a socket drains; a proxy has no
        # socket here, so the rest of the ring goes at once (it is bounded by
        # ``resume_buffer_bytes``; the origin's outbound bound then decides, as for any
        # slow reader). Only a resume starts this: a proxy is never congested.
        for _ in range(hub.config.resume_buffer_bytes // REFILL_BYTES + 2):
            if not peer.catching_up or peer.closed:
                break
            hub.refill(peer, REFILL_BYTES)

    def drop_key(self, origin: bytes, number: int) -> None:
        """Let go of the proxy of connection ``number`` of ``origin``, if there is one."""
        peer = self.proxies.get((origin, number))
        if peer is not None:
            sink = peer.sink
            assert isinstance(sink, ProxySink)
            self.drop_proxy(sink)

    def _room_changed(self, room: Room, opened: bool) -> None:
        if opened:
            subject = self.subject("room", room.code)
            self.room_subs[room.code] = self.client.subscribe(subject, self._on_bus)
            if not self.dirty:
                # On this flush's list before the reply that names the room: the
                # subscription reaches NATS before anyone can know the code.
                self.dirty = True
                self.relay.dirty.append(self)  # type: ignore[arg-type]
        else:
            sub = self.room_subs.pop(room.code, None)
            if sub is not None:
                self.client.unsubscribe(sub)


def _claims_in(items: list[Any] | None) -> tuple[Claims, ...] | None:
    if not items:
        return None
    return tuple(
        Claims(role=r, queues=tuple(q), rooms=tuple(rs), issued=i, expires=e, token_id=t,
               issuer=iss)
        for r, q, rs, i, e, t, iss in items
    )


__all__ = ["Proxies", "ProxySink"]
