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

A connection that ends on its origin is announced to every home it used (``gone``):
there its seats are held for resume like any dropped connection. Processes send a
heartbeat every second; a process not heard for ``PEER_TIMEOUT`` is dead: its proxy
peers are dropped (their seats held, resumable on any process). The rooms a dead
process was home to end with it; that loss is stated in docs/operations.md.

Everything on the bus is sealed under the cluster key (``cluster.seal``): subjects
are HMACs, payloads AEAD, so the bus learns only traffic volume.
"""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgpack
import trio

from haven.protocol import codec, codes
from haven.protocol import messages as m
from haven.protocol.errors import (
    CodeFormatError,
    DecodeError,
    ErrorCode,
    HavenError,
    RequestError,
)
from haven.protocol.frames import unpad
from haven.protocol.session import CLOSE_GOING_AWAY
from haven.relay import flows
from haven.relay.config import ConfigError
from haven.relay.limits import TokenBucket
from haven.relay.tokens import Claims

from . import nats, wire
from .seal import BusSealError, ClusterKey, Opener, Sealer

if TYPE_CHECKING:
    from haven.relay.config import Config
    from haven.relay.connection import ClientSocket
    from haven.relay.peer import Peer
    from haven.relay.rooms import Room
    from haven.relay.server import Relay

log = logging.getLogger("haven.cluster")

TAG_BYTES = 8
#: Seconds between heartbeats, and after which an unheard process counts as gone.
HEARTBEAT = 1.0
PEER_TIMEOUT = 3.5
#: Seconds a new link waits to hear the others before it decides who leads.
SETTLE = 1.5 * HEARTBEAT
#: Seconds a forwarded request may wait for its reply before the client is told to retry.
FORWARD_TIMEOUT = 3.0
#: Rooms on other processes remembered per connection (more than it may hold at once).
MAX_REMEMBERED_ROOMS = 64
#: Subjects remembered (room codes and process tags); the table starts afresh when full.
MAX_SUBJECTS = 16384
#: Seconds before asking again after NATS found no responder (then the answer stands).
NO_RESPONDERS_RETRY = (0.02, 0.1)
#: Requests one connection may have waiting behind a forwarded one.
MAX_WAITING = 64
RETRY_AFTER = 2
#: Bus message kinds (the first item of every sealed msgpack payload).
REQ, OUT, GONE, BEAT, ESC, ESC_DONE = 1, 2, 3, 4, 5, 6
#: Requests about the cluster's shared space (queues, handoff codes, the directory):
#: handled by the *leader*, the longest-running process (see ``ClusterLink.leader``).
SHARED_SPACE = (
    m.RequestHelp, m.CancelHelp, m.StaffCount, m.Duty, m.TakeNext, m.HandoffAccept,
    m.Directory,
)  # fmt: skip
#: ``_target``'s answer for a request the leader must handle while none is known yet.
UNSETTLED = b""


@dataclass
class Forward:
    """A request away on the bus, waiting for its reply."""

    number: int
    request: m.Request
    deadline: float
    subject: bytes = b""
    items: list[Any] = field(default_factory=list)
    #: Times NATS said "no responders" and the request was sent again (see ``_on_status``).
    retries: int = 0


@dataclass
class Remote:
    """What the link keeps for one local connection that uses other processes."""

    number: int  #: the connection's id on the bus (unique in this process)
    forward: Forward | None = None
    waiting: deque[m.Request] = field(default_factory=deque)
    homes: set[bytes] = field(default_factory=set)  #: processes holding a proxy of it
    #: Subjects of forwards that got no answer: their target may hold a proxy of it.
    unanswered: set[bytes] = field(default_factory=set)
    #: Rooms it joined or resumed on other processes: code -> home (newest last).
    rooms: dict[str, bytes] = field(default_factory=dict)


class ProxySink:
    """Stands for a remote connection where the hub expects a ``ClientSocket``."""

    __slots__ = ("closing", "conn", "link", "origin", "peer")

    proxy = True  #: ``Relay.flush`` hands it the message too (``push_message``)

    def __init__(self, link: ClusterLink, origin: bytes, conn: int) -> None:
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


class ClusterLink:
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
        self.unsealable = 0
        self.forward_timeouts = 0
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

    # ------------------------------------------------------------ the Trio side

    async def run(self) -> None:
        self.client.subscribe(self.node_subject, self._on_bus)
        self.client.subscribe(self.node_subject + b".*", self._on_status)
        self.client.subscribe(self.beat_subject, self._on_bus)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self.client.run)
            nursery.start_soon(self._beat)

    async def _beat(self) -> None:
        while True:
            now = trio.current_time()
            if self.client.connected:
                self._publish(self.beat_subject, [BEAT, self.tag, self.started])
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
            self._was_up = True
        else:
            self.link_up_at = None

    # ----------------------------------------------------------- the origin side

    def route(self, conn: ClientSocket, req: m.Request, now: float) -> bool:
        """Forward ``req`` if another process must handle it (``True``: taken care of)."""
        remote = conn.bus
        if remote is not None and remote.forward is not None:
            # One request away at a time per connection: replies keep request order.
            if len(remote.waiting) >= MAX_WAITING:
                hub = self.relay.hub
                assert conn.peer is not None
                hub.to_close.append((conn.peer, ErrorCode.RATE_LIMITED))
                return True
            remote.waiting.append(req)
            return True
        subject = self._target(conn, req)
        if subject is None:
            return False
        hub = self.relay.hub
        peer = conn.peer
        assert peer is not None
        wait = hub.charge(peer, now)
        if wait is not None:
            hub.error(peer, req.id, RequestError(code=ErrorCode.RATE_LIMITED, retry_after=wait))
            return True
        if req.id <= peer.last_id:
            hub.error(peer, req.id, RequestError(code=ErrorCode.BAD_REQUEST_ID))
            return True
        peer.last_id = req.id
        if subject == UNSETTLED:
            hub.error(peer, req.id, RequestError(
                "the relay is joining its cluster; retry shortly", code=ErrorCode.RELAY_BUSY,
                retry_after=RETRY_AFTER,
            ))  # fmt: skip
            return True
        if remote is None:
            remote = conn.bus = Remote(self._number())
            self.remotes[remote.number] = conn
        number = self._number()
        reply = self.node_subject + b".%d" % number
        items = [REQ, self.tag, remote.number, codec.encode(req), _claims_out(peer.claims)]
        try:
            self._publish(subject, items, reply)
        except nats.NatsError:
            hub.error(peer, req.id, RequestError(
                "the relay cannot reach the rest of its cluster", code=ErrorCode.RELAY_BUSY,
                retry_after=RETRY_AFTER,
            ))  # fmt: skip
            return True
        self.forwarded += 1
        remote.forward = Forward(number, req, now + FORWARD_TIMEOUT, subject, items)
        self.forwards[number] = conn
        return True

    def _target(self, conn: ClientSocket, req: m.Request) -> bytes | None:
        """The subject of the process that must handle ``req``, or ``None`` (here)."""
        hub = self.relay.hub
        peer = conn.peer
        assert peer is not None
        if isinstance(req, m.Resume):
            token = req.token
            if token in hub.tokens or len(token) <= TAG_BYTES:
                return None
            home = token[:TAG_BYTES]
            if home == self.tag:
                return None
            return self.subject("node", home)
        if isinstance(req, SHARED_SPACE) or (isinstance(req, m.CreateRoom) and req.listed):
            return self._leader_subject()
        if isinstance(req, m.CreateRoom):
            return None
        room = getattr(req, "room", None)
        if not isinstance(room, str) or room in peer.seats or room in hub.rooms:
            return None
        try:
            canonical = codes.parse_room_code(room)
        except CodeFormatError:
            return None  # answered here (BAD_CODE)
        if canonical in peer.seats or canonical in hub.rooms:
            return None
        flows_ = self.flows
        if isinstance(req, m.Join) and flows_ is not None and canonical in flows_.schedules.by_code:
            return self._leader_subject()  # scheduled rooms open on the leader
        return self.subject("room", canonical)

    def _leader_subject(self) -> bytes | None:
        leader = self.leader()
        if leader is None:
            return UNSETTLED
        if leader == self.tag:
            return None
        return self.subject("node", leader)

    def _number(self) -> int:
        n = self._next
        self._next = n + 1
        return n

    def _on_status(self, msg: wire.Msg) -> None:
        """NATS answered a forwarded request itself: no process holds its target."""
        if msg.status != 503:
            return
        try:
            number = int(msg.subject.rpartition(b".")[2])
        except ValueError:
            return
        conn = self.forwards.pop(number, None)
        if conn is None or conn.bus is None or conn.bus.forward is None:
            return
        fwd = conn.bus.forward
        if fwd.retries < len(NO_RESPONDERS_RETRY) and self._nursery is not None:
            # A room made on another process a moment ago may not be known yet to the
            # NATS node this process uses (interest spreads between nodes in a few ms):
            # ask again shortly before saying the room does not exist.
            delay = NO_RESPONDERS_RETRY[fwd.retries]
            fwd.retries += 1
            self._nursery.start_soon(self._resend, conn, fwd, delay)
            return
        req = fwd.request
        conn.bus.forward = None
        code = ErrorCode.NOT_A_MEMBER
        if isinstance(req, m.Join):
            code = ErrorCode.ROOM_NOT_FOUND
        elif isinstance(req, m.Resume):
            code = ErrorCode.RESUME_FAILED
            self.relay.hub.stats["resume_failed"] += 1
        if conn.peer is not None and not conn.closing:
            self.relay.hub.error(conn.peer, req.id, RequestError(code=code))
        self._continue(conn)

    async def _resend(self, conn: ClientSocket, fwd: Forward, delay: float) -> None:
        await trio.sleep(delay)
        if conn.closing or conn.bus is None or conn.bus.forward is not fwd:
            return
        number = self._number()
        try:
            self._publish(fwd.subject, fwd.items, self.node_subject + b".%d" % number)
        except nats.NatsError:
            return  # the forward times out and the client is told to retry
        fwd.number = number
        self.forwards[number] = conn
        self.relay.flush()

    def _continue(self, conn: ClientSocket) -> None:
        """A forwarded request is answered: handle what waited behind it, in order."""
        relay = self.relay
        remote = conn.bus
        relay.flush()
        while remote is not None and remote.forward is None and remote.waiting:
            if conn.closing or conn.peer is None:
                remote.waiting.clear()
                return
            req = remote.waiting.popleft()
            now = trio.current_time()
            if not self.route(conn, req, now):
                relay.hub.handle(conn.peer, req, now)
            relay.flush()

    def connection_closed(self, conn: ClientSocket) -> None:
        """A local connection ended: tell every process holding a proxy of it."""
        remote = conn.bus
        if remote is None:
            return
        conn.bus = None
        self.remotes.pop(remote.number, None)
        if remote.forward is not None:
            self.forwards.pop(remote.forward.number, None)
        subjects = {self.subject("node", home) for home in remote.homes} | remote.unanswered
        for subject in subjects:
            # If the bus is down, the home drops the proxy when this process goes silent.
            with contextlib.suppress(nats.NatsError):
                self._publish(subject, [GONE, self.tag, remote.number])
        self.client.write_now()  # no flush follows a connection's end

    def _deliver(self, home: bytes, frames: list[bytes], entries: list[Any],
                 closes: list[Any]) -> None:  # fmt: skip
        """Frames a home sent for local connections: seal each for its client."""
        answered: list[ClientSocket] = []
        for number, rid, index in entries:
            conn = self.remotes.get(number)
            if conn is None or conn.closing or conn.bus is None:
                continue
            remote = conn.bus
            remote.homes.add(home)
            if rid:
                fwd = remote.forward
                if fwd is None or fwd.request.id != rid:
                    continue  # a reply that came after its request timed out
                remote.forward = None
                self.forwards.pop(fwd.number, None)
                answered.append(conn)
                waited = trio.current_time() - (fwd.deadline - FORWARD_TIMEOUT)
                self.relay.metrics.bus_latency.observe(waited)
                if isinstance(fwd.request, m.Join | m.Resume):
                    self._learn(remote, home, frames[index])
            conn.push_padded(frames[index])
        for number, code in closes:
            conn = self.remotes.get(number)
            if conn is not None:
                conn.close(code, "closed by the relay")
        self.relay.flush()
        for conn in answered:
            self._continue(conn)

    @staticmethod
    def _learn(remote: Remote, home: bytes, padded: bytes) -> None:
        """Note which room a granted seat is in (to end it if its home is lost)."""
        try:
            reply = codec.decode_server(unpad(padded))
        except HavenError:
            return
        if isinstance(reply, m.Joined):
            rooms = remote.rooms
            rooms.pop(reply.seat.room, None)
            rooms[reply.seat.room] = home
            if len(rooms) > MAX_REMEMBERED_ROOMS:
                del rooms[next(iter(rooms))]

    def _home_lost(self, tag: bytes) -> None:
        """Rooms whose home process is gone end for members here (``room_closed``
        ``draining``: the relay holding the room went away), at once rather than when
        their next request finds no one."""
        hub = self.relay.hub
        for conn in list(self.remotes.values()):
            remote = conn.bus
            if remote is None or tag not in remote.homes or conn.peer is None:
                continue
            remote.homes.discard(tag)
            for code in [c for c, home in remote.rooms.items() if home == tag]:
                del remote.rooms[code]
                hub.out.append((conn.peer, m.RoomClosed(room=code, reason="draining")))

    # ------------------------------------------------------------- the home side

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
            try:
                self._publish(
                    self.subject("node", origin),
                    [OUT, self.tag, frames, entries, closes.get(origin, [])],
                )
            except nats.NatsError:
                # The origin's clients miss these; it will see them as a gap and resume.
                self.relay.metrics.cluster_dropped.inc(len(entries))
        self.dirty = False
        self.client.write_now()
        self._refill()

    def _refill(self) -> None:
        """Proxy peers catching up (a resume) get the rest of the ring at once: the
        origin's own outbound bound then decides, as for any slow reader."""
        hub = self.relay.hub
        for _ in range(64):
            behind = [p for p in self.proxies.values() if p.catching_up and not p.closed]
            if not behind:
                return
            for peer in behind:
                hub.refill(peer, 1 << 20)

    def drop_proxy(self, sink: ProxySink) -> None:
        sink.closing = True
        peer = self.proxies.pop((sink.origin, sink.conn), None)
        if peer is not None:
            self.relay.hub.disconnect(peer, trio.current_time())

    def _proxy(self, origin: bytes, number: int, now: float) -> Peer:
        key = (origin, number)
        peer = self.proxies.get(key)
        if peer is None:
            sink = ProxySink(self, origin, number)
            peer = self.relay.hub.connect(now, sink=sink)
            # The origin charged the connection's rate limit for every request it
            # forwards; charging again here would refuse bursts the bus compressed.
            peer.bucket = TokenBucket(1e12, 2**53, now)
            sink.peer = peer
            self.proxies[key] = peer
        return peer

    def _handle_request(
        self, origin: bytes, number: int, envelope: bytes, claims: list[Any] | None
    ) -> None:
        hub = self.relay.hub
        now = trio.current_time()
        peer = self._proxy(origin, number, now)
        # The origin verified the connection's tokens; its claims come along (a process
        # of the cluster is trusted: it holds the cluster key).
        peer.claims = _claims_in(claims)
        try:
            req = codec.decode_request(envelope)
        except DecodeError as exc:
            hub.bad_request(peer, exc, exc.request_id, now)
        else:
            hub.handle(peer, req, now)
        self.relay.flush()

    # ----------------------------------------------------------- escalations

    def escalate_elsewhere(self, moderator: Peer, req: m.Escalate, target: Peer,
                           now: float) -> bool:  # fmt: skip
        """A moderator here escalates a member into a queue the leader holds: ask the
        leader; the moderator's reply follows its answer (``ESC_DONE``)."""
        leader = self.leader()
        if leader is None:
            raise RequestError("the relay is joining its cluster; retry shortly",
                               code=ErrorCode.RELAY_BUSY, retry_after=RETRY_AFTER)  # fmt: skip
        if leader == self.tag:
            return False
        address = self._address(target)
        if address is None:
            raise RequestError(code=ErrorCode.MEMBER_NOT_FOUND)
        origin, number = address
        n = self._number()
        try:
            self._publish(self.subject("node", leader),
                          [ESC, self.tag, n, origin, number, req.queue])  # fmt: skip
        except nats.NatsError:
            raise RequestError(
                "the relay cannot reach the rest of its cluster",
                code=ErrorCode.RELAY_BUSY, retry_after=RETRY_AFTER,
            ) from None  # fmt: skip
        self.escalations[n] = (moderator, req.id, now + FORWARD_TIMEOUT)
        return True

    def _address(self, peer: Peer) -> tuple[bytes, int] | None:
        """Where a peer's connection is: (its process, its number there)."""
        sink = peer.sink
        if isinstance(sink, ProxySink):
            return sink.origin, sink.conn
        conn = sink
        if conn is None or getattr(conn, "closing", True):
            return None
        if conn.bus is None:
            conn.bus = Remote(self._number())
            self.remotes[conn.bus.number] = conn
        return self.tag, conn.bus.number

    def _on_escalate(self, asker: bytes, n: int, origin: bytes, number: int, queue: str) -> None:
        """The leader: put the member into the queue's priority lane, answer the asker."""
        assert self.flows is not None
        now = trio.current_time()
        if origin == self.tag:
            conn = self.remotes.get(number)
            peer = conn.peer if conn is not None and not conn.closing else None
        else:
            peer = self._proxy(origin, number, now)
        code = 0
        if peer is None:
            code = int(ErrorCode.MEMBER_NOT_FOUND)
        else:
            try:
                self.flows.queues.line(queue)
                self.flows.queues.escalate(peer, queue, now)
            except HavenError as exc:
                code = int(exc.code)
        with contextlib.suppress(nats.NatsError):
            self._publish(self.subject("node", asker), [ESC_DONE, self.tag, n, code])
        self.relay.flush()

    def _on_escalated(self, n: int, code: int) -> None:
        entry = self.escalations.pop(n, None)
        if entry is None:
            return
        moderator, rid, _ = entry
        hub = self.relay.hub
        if moderator.closed:
            return
        if code:
            hub.error(moderator, rid, RequestError(code=ErrorCode(code)))
        else:
            hub.reply(moderator, m.Ok(id=rid))
        self.relay.flush()

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

    # ------------------------------------------------------------------ the bus

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
                _, origin, number, envelope, claims = items
                self._heard(origin)
                self._handle_request(origin, number, envelope, claims)
            elif kind == OUT:
                _, home, frames, entries, closes = items
                self._heard(home)
                self._deliver(home, frames, entries, closes)
            elif kind == GONE:
                _, origin, number = items
                peer = self.proxies.get((origin, number))
                if peer is not None:
                    sink = peer.sink
                    assert isinstance(sink, ProxySink)
                    self.drop_proxy(sink)
                    self.relay.flush()
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
            self.unsealable += 1
            self.relay.metrics.cluster_dropped.inc()
        except (ValueError, TypeError, IndexError, msgpack.UnpackException):
            # Sealed under our key but not understood: a bug or a newer version.
            self.relay.metrics.cluster_dropped.inc()
            log.warning("a cluster message could not be understood")

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
                log.warning("a relay process of the cluster went silent")
                self._home_lost(tag)
                for key, peer in list(self.proxies.items()):
                    if key[0] == tag:
                        sink = peer.sink
                        assert isinstance(sink, ProxySink)
                        self.drop_proxy(sink)
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
                remote.unanswered.add(fwd.subject)
                self.forward_timeouts += 1
                if conn.peer is not None and not conn.closing:
                    self.relay.hub.error(conn.peer, fwd.request.id, RequestError(
                        "another relay process did not answer in time",
                        code=ErrorCode.RELAY_BUSY, retry_after=RETRY_AFTER,
                    ))  # fmt: skip
                self._continue(conn)


def _claims_out(claims: Any) -> list[Any] | None:
    """A connection's verified token claims, as plain values for the bus."""
    if not isinstance(claims, tuple) or not claims:
        return None
    return [[c.role, list(c.queues), list(c.rooms), c.issued, c.expires, c.token_id, c.issuer]
            for c in claims]  # fmt: skip


def _claims_in(items: list[Any] | None) -> tuple[Claims, ...] | None:
    if not items:
        return None
    return tuple(
        Claims(role=r, queues=tuple(q), rooms=tuple(rs), issued=i, expires=e, token_id=t,
               issuer=iss)
        for r, q, rs, i, e, t, iss in items
    )


__all__ = ["ClusterLink", "ProxySink", "Remote"]
