"""One relay process's link to the others: rooms and resumes across processes on NATS.

Every room lives on one process, its *home*: the process whose hub created it. The
hub's logic is not changed or copied: a member connected to another process is, on the
home, a *proxy peer* (a ``Peer`` whose sink is this link instead of a socket). So every
guarantee a room gives (one ``seq`` order, ``sent`` after the delivery is queued for
every member, the ring and resume) is the home hub's, as in one process.

The way a request travels (docs/operations.md, "Cluster"):

1. A client's process (its *origin*) gets a request naming a room it does not hold
   (``join``, ``send``, ``leave``, ``typing``, moderation...), or a ``resume`` whose
   token another process minted (tokens start with their home's 8-byte tag).
2. The origin charges the connection's rate limit, checks the request id, and publishes
   the request's envelope, sealed, to the room's subject (the home subscribed it when
   the room opened) or to the home's node subject (a resume). Its reply subject is the
   origin's node subject plus a number, so NATS itself answers "no responders" when no
   process holds the room: the client gets ``ROOM_NOT_FOUND`` (or ``RESUME_FAILED``).
3. The home handles it on the connection's proxy peer and sends whatever its hub
   queued for proxy peers of that origin (replies, room events, closes) as one sealed
   bus message per origin per flush; a room event for several members there travels
   once.
4. The origin seals each frame for its client. Until a forwarded request's reply is
   back, the connection's later requests wait (bounded), so replies keep request order.

The shared space (intake queues, handoff codes, listed and scheduled rooms, the
directory) lives on the *leader*, the longest-running process (``ClusterLink.leader``).

A connection that ends on its origin is announced to every home it used (``gone``):
there its seats are held for resume like any dropped connection. Processes send a
heartbeat every second; a process not heard for ``PEER_TIMEOUT`` is dead: its proxy
peers are dropped (their seats held, resumable on any process). The rooms a dead
process was home to end with it; that loss is stated in docs/operations.md.

Everything on the bus is sealed under the cluster key (``cluster.seal``): subjects
are HMACs, payloads AEAD, so the bus learns only traffic volume.

This module holds the link's life (the bus, heartbeats, the leader, dispatch of what
arrives, expiry); its parts are ``cluster.forwarding`` (steps 1, 2 and 4),
``cluster.proxies`` (step 3) and ``cluster.escalations``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
import time
from typing import TYPE_CHECKING, Any

import msgpack
import trio

from haven.protocol.errors import ErrorCode, RequestError
from haven.protocol.session import CLOSE_GOING_AWAY
from haven.relay import flows
from haven.relay.config import ConfigError

from . import nats, wire
from .base import (
    BEAT,
    CHECK,
    CHECK_EVERY,
    ESC,
    ESC_DONE,
    GONE,
    HEARTBEAT,
    OUT,
    PEER_TIMEOUT,
    REQ,
    RETRY_AFTER,
    SETTLE,
    TAG_BYTES,
)  # fmt: skip
from .escalations import Escalations
from .forwarding import MAX_REMEMBERED_ROOMS, Forwarding
from .proxies import Proxies
from .seal import BusSealError, ClusterKey, Opener, Sealer

if TYPE_CHECKING:
    from haven.relay.config import Config
    from haven.relay.connection import ClientSocket
    from haven.relay.peer import Peer
    from haven.relay.server import Relay

log = logging.getLogger("haven.cluster")


#: Subjects remembered (room codes and process tags); the table starts afresh when full.
MAX_SUBJECTS = 16384


def nats_options(config: Config) -> nats.Options:
    """How to reach the bus, from the relay's settings (``cluster``, ``nats_*``)."""
    assert config.cluster is not None
    servers = [nats.Server.parse(url.strip()) for url in config.cluster.split(",")]
    password = None
    if config.nats_password_file is not None:
        path = config.nats_password_file
        mode = os.stat(path).st_mode
        if mode & 0o077:
            raise ConfigError(f"the NATS password file {path} is readable by group or others "
                              f"(mode {mode & 0o777:o}); run: chmod 600 {path}")  # fmt: skip
        password = path.read_text("utf-8").strip()
    context = None
    if config.nats_ca_file is not None or any(s.tls for s in servers):
        cafile = str(config.nats_ca_file) if config.nats_ca_file is not None else None
        context = ssl.create_default_context(cafile=cafile)
    return nats.Options(
        servers, user=config.nats_user, password=password, tls=context, name="haven-relay"
    )


class ClusterLink(Forwarding, Proxies, Escalations):
    """The link (see the module docstring); ``run`` keeps it going."""

    def __init__(self, relay: Relay, options: nats.Options, cluster_key: bytes) -> None:
        self.relay = relay
        self.key = ClusterKey(cluster_key)
        self.tag = os.urandom(TAG_BYTES)
        self.sealer = Sealer(self.key)
        self.opener = Opener(self.key)
        self.client = nats.NatsClient(options, on_state=self._on_state)
        # Every publication here is written by ``kick`` at the end of the relay's flush
        # (``_publish`` puts the link on the flush's list), so none wakes a writer task.
        self.client.batched = True
        self.client.on_batch = self._after_batch
        self._answered = []
        self._out_seq = {}
        self._in_seq = {}
        #: ``gone`` messages that could not be sent (the bus was down): sent on return.
        self._gone_later: list[tuple[bytes, list[Any]]] = []
        self._subjects: dict[tuple[str, bytes | str], bytes] = {}
        self.node_subject = self.subject("node", self.tag)
        self.beat_subject = self.subject("heartbeat", b"")
        #: (origin tag, connection number) -> the proxy peer standing for it here.
        self.proxies: dict[tuple[bytes, int], Peer] = {}
        #: Local connections by bus number, and their forwarded requests by number.
        self.remotes: dict[int, ClientSocket] = {}
        self.forwards: dict[int, ClientSocket] = {}
        self.room_subs: dict[str, nats.Subscription] = {}
        #: Other processes, by tag, with when they were last heard.
        self.peers_seen: dict[bytes, float] = {}
        self._next = 1
        self._out: dict[bytes, list[tuple[int, int, bytes]]] = {}
        self._closes: dict[bytes, list[tuple[int, int]]] = {}
        self.dirty = False
        self._nursery: trio.Nursery | None = None
        self._was_up = False
        #: When this process started (wall clock): the oldest process leads.
        self.started = time.time()
        self.started_of: dict[bytes, float] = {}
        self.link_up_at: float | None = None
        #: Escalations sent to the leader: number -> (moderator, request id, deadline).
        self.escalations: dict[int, tuple[Peer, int, float]] = {}
        self.flows = flows.installed(relay.hub) if isinstance(relay.hub.ext, flows.Flows) else None
        if self.flows is not None:
            self.flows.schedules.enabled = self.is_leader
            self.flows.queues.elsewhere = self.escalate_elsewhere
        # Aggregate counters (metrics): never per room, connection or process.
        self.forwarded = 0
        relay.hub.token_prefix = self.tag
        relay.hub.on_room = self._room_changed

    @property
    def ready(self) -> bool:
        """Linked, and long enough to have heard the others (so it knows the leader)."""
        return self.client.connected and self.settled

    @property
    def settled(self) -> bool:
        up = self.link_up_at
        return up is not None and trio.current_time() - up >= SETTLE

    def leader(self) -> bytes | None:
        """The process that holds the shared space: the longest-running one heard.

        ``None`` until this process has been linked long enough to have heard every
        other's heartbeat (a process that has just started must not think it leads).
        A process started later never takes over; when the leader is gone (silent for
        ``PEER_TIMEOUT``), the next oldest leads, and what the old one held is lost.
        """
        if not self.settled:
            return None
        best = (self.started, self.tag)
        for tag in self.peers_seen:
            started = self.started_of.get(tag)
            if started is not None and (started, tag) < best:
                best = (started, tag)
        return best[1]

    def is_leader(self) -> bool:
        return self.leader() == self.tag

    async def run(self) -> None:
        self.client.subscribe(self.node_subject, self._on_bus)
        self.client.subscribe(self.node_subject + b".*", self._on_status)
        self.client.subscribe(self.beat_subject, self._on_bus)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self.client.run)
            nursery.start_soon(self._beat)

    async def _beat(self) -> None:
        next_check = trio.current_time() + CHECK_EVERY
        while True:
            now = trio.current_time()
            if self.client.connected:
                self._publish(self.beat_subject, [BEAT, self.tag, self.started])
                if now >= next_check:
                    next_check = now + CHECK_EVERY
                    self._check_proxies()
            self._expire(now)
            self.relay.flush()
            await trio.sleep(HEARTBEAT / 2)

    def _on_state(self, up: bool) -> None:
        """The bus came or went (``/readyz`` follows ``ready``).

        When it comes back, connections holding rooms on other processes may have missed
        frames those processes sent meanwhile: they are closed (1001) so that their
        clients resume, and the rooms' homes replay exactly what each missed.
        """
        if up:
            log.info("cluster link up")
            self.link_up_at = trio.current_time()
            if self._was_up:
                for conn in list(self.remotes.values()):
                    if conn.bus is not None and conn.bus.homes and not conn.closing:
                        conn.close(CLOSE_GOING_AWAY, "cluster link restored: resume")
                later, self._gone_later = self._gone_later, []
                for subject, items in later:
                    with contextlib.suppress(nats.NatsError):
                        self._publish(subject, items)
                self.client.write_now()
            self._was_up = True
        else:
            self.link_up_at = None

    def _publish(self, subject: bytes, items: list[Any], reply: bytes | None = None) -> None:
        plain = msgpack.packb(items, use_bin_type=True)
        self.client.publish(subject, self.sealer.seal(subject, plain), reply)
        if not self.dirty:
            # Written at the end of this flush, in one system call with the rest.
            self.dirty = True
            self.relay.dirty.append(self)  # type: ignore[arg-type]

    def subject(self, kind: str, name: bytes | str) -> bytes:
        """``ClusterKey.subject``, remembered (an HMAC per forwarded message adds up)."""
        key = (kind, name)
        subject = self._subjects.get(key)
        if subject is None:
            if len(self._subjects) >= MAX_SUBJECTS:
                self._subjects.clear()
            subject = self._subjects[key] = self.key.subject(kind, name)
        return subject

    def _on_bus(self, msg: wire.Msg) -> None:
        try:
            _sender, plain = self.opener.open(msg.subject, msg.payload)
            items = msgpack.unpackb(plain, raw=False, strict_map_key=True)
            kind = items[0]
            if kind == REQ:
                _, origin, number, envelope, claims, pow_seed = items
                self._heard(origin)
                self._handle_request(origin, number, envelope, claims, pow_seed)
            elif kind == OUT:
                _, home, seq, frames, entries, closes = items
                self._heard(home)
                last = self._in_seq.get(home)
                self._in_seq[home] = seq
                if last is not None and seq != last + 1:
                    self._missed(home)
                self._deliver(home, frames, entries, closes)
            elif kind == GONE:
                _, origin, numbers = items
                for number in numbers:
                    self.drop_key(origin, number)
            elif kind == CHECK:
                _, home, numbers = items
                self._heard(home)
                gone = [n for n in numbers if n not in self.remotes]
                if gone:
                    self._publish(self.subject("node", home), [GONE, self.tag, gone])
            elif kind == BEAT:
                _, tag, started = items
                self._heard(tag)
                if tag != self.tag:
                    self.started_of[tag] = float(started)
            elif kind == ESC:
                _, asker, n, origin, number, queue = items
                self._heard(asker)
                self._on_escalate(asker, n, origin, number, queue)
            elif kind == ESC_DONE:
                _, leader, n, code = items
                self._heard(leader)
                self._on_escalated(n, code)
        except BusSealError:
            self.relay.metrics.cluster_dropped.inc()
        except (ValueError, TypeError, IndexError, msgpack.UnpackException):
            # Sealed under our key but not understood: a bug or a newer version.
            self.relay.metrics.cluster_dropped.inc()
            log.warning("a cluster message could not be understood")

    def _after_batch(self) -> None:
        """One read from the bus is handled: deliver what it caused, in one flush, then
        let connections whose forwarded request was answered go on."""
        self.relay.flush()
        if self._answered:
            answered, self._answered = self._answered, []
            for conn in answered:
                self._continue(conn)

    def _check_proxies(self) -> None:
        """Ask each origin which of the connections proxied here still exist; it answers
        ``gone`` for the others (whose own ``gone`` the bus lost)."""
        by_origin: dict[bytes, list[int]] = {}
        for origin, number in self.proxies:
            by_origin.setdefault(origin, []).append(number)
        for origin, numbers in by_origin.items():
            with contextlib.suppress(nats.NatsError):
                self._publish(self.subject("node", origin), [CHECK, self.tag, numbers])

    def _missed(self, home: bytes) -> None:
        """Frames from ``home`` were lost on the bus: its members here resume (1001),
        before anything later from it is delivered, so the replay fills the gap."""
        for conn in list(self.remotes.values()):
            if conn.bus is not None and home in conn.bus.homes and not conn.closing:
                conn.close(CLOSE_GOING_AWAY, "frames lost between relay processes: resume")

    def _heard(self, tag: bytes) -> None:
        """Any message from a process shows it is alive (not only its heartbeat)."""
        if tag != self.tag:
            self.peers_seen[tag] = trio.current_time()

    def _expire(self, now: float) -> None:
        """Processes not heard from are gone; forwards not answered in time fail."""
        for tag, seen in list(self.peers_seen.items()):
            if now - seen > PEER_TIMEOUT:
                del self.peers_seen[tag]
                self.started_of.pop(tag, None)
                self._out_seq.pop(tag, None)
                self._in_seq.pop(tag, None)
                log.warning("a relay process of the cluster went silent")
                self._home_lost(tag)
                for origin, number in list(self.proxies):
                    if origin == tag:
                        self.drop_key(origin, number)
        for n, (moderator, rid, deadline) in list(self.escalations.items()):
            if deadline <= now:
                del self.escalations[n]
                if not moderator.closed:
                    self.relay.hub.error(moderator, rid, RequestError(
                        "the cluster's leader did not answer in time",
                        code=ErrorCode.RELAY_BUSY, retry_after=RETRY_AFTER,
                    ))  # fmt: skip
        for number, conn in list(self.forwards.items()):
            remote = conn.bus
            fwd = remote.forward if remote is not None else None
            if fwd is None or fwd.number != number:
                self.forwards.pop(number, None)
                continue
            if fwd.deadline <= now:
                assert remote is not None
                self.forwards.pop(number, None)
                remote.forward = None
                if len(remote.unanswered) < MAX_REMEMBERED_ROOMS:
                    remote.unanswered.add(fwd.subject)
                if conn.peer is not None and not conn.closing:
                    self.relay.hub.error(conn.peer, fwd.request.id, RequestError(
                        "another relay process did not answer in time",
                        code=ErrorCode.RELAY_BUSY, retry_after=RETRY_AFTER,
                    ))  # fmt: skip
                self._continue(conn)


__all__ = ["ClusterLink", "nats_options"]
