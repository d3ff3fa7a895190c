"""The origin side of the cluster link: a client's requests that another process must
handle travel there, and what comes back is sealed for the client.

A request naming a room this process does not hold, a ``resume`` whose token another
process minted, or a request about the shared space (the leader's) is charged to the
connection's rate limit, its id checked, and published sealed to the room's subject or
the process's node subject. Its reply subject is this process's node subject plus a
number, so NATS itself says "no responders" when nobody holds the target (asked again
twice, then ``ROOM_NOT_FOUND`` or ``RESUME_FAILED``). While a request is away, the
connection's later requests wait (at most ``MAX_WAITING``): replies keep request order.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from haven.protocol import codec, codes
from haven.protocol import messages as m
from haven.protocol.errors import CodeFormatError, ErrorCode, HavenError, RequestError
from haven.protocol.frames import unpad

from . import nats, wire
from .base import FORWARD_TIMEOUT, GONE, REQ, RETRY_AFTER, TAG_BYTES, LinkState

if TYPE_CHECKING:
    from haven.relay.connection import ClientSocket

#: Rooms on other processes remembered per connection (more than it may hold at once).
MAX_REMEMBERED_ROOMS = 64
#: Seconds before asking again after NATS found no responder (then the answer stands).
NO_RESPONDERS_RETRY = (0.02, 0.1)
#: ``gone`` messages kept while the bus is down (then the homes time the proxies out).
MAX_GONE_LATER = 65536
#: Requests one connection may have waiting behind a forwarded one.
MAX_WAITING = 64
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
    #: Subjects of forwards that got no answer: their target may hold a proxy of it
    #: (at most ``MAX_REMEMBERED_ROOMS``; the homes' checks catch the rest).
    unanswered: set[bytes] = field(default_factory=set)
    #: Rooms it joined or resumed on other processes: code -> home (newest last).
    rooms: dict[str, bytes] = field(default_factory=dict)


class Forwarding(LinkState):
    """The origin side (a part of ``ClusterLink``)."""

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
        items = [REQ, self.tag, remote.number, codec.encode(req), _claims_out(peer.claims),
                 peer.pow_seed]  # fmt: skip
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
        room = getattr(req, "room", None)
        if room is not None and (room in peer.seats or room in hub.rooms):
            return None  # the common case, first: a room held here (no shared-space
            # request names a room, so none is kept here by mistake)
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
        if not isinstance(room, str):
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
        self._answered.append(conn)

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
            items: list[Any] = [GONE, self.tag, [remote.number]]
            try:
                self._publish(subject, items)
            except nats.NatsError:
                # Sent when the bus is back (or the home drops the proxy when this
                # process stays silent past PEER_TIMEOUT).
                if len(self._gone_later) < MAX_GONE_LATER:
                    self._gone_later.append((subject, items))
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
        self._answered.extend(answered)  # after this read's flush (``_after_batch``)

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


def _claims_out(claims: Any) -> list[Any] | None:
    """A connection's verified token claims, as plain values for the bus."""
    if not isinstance(claims, tuple) or not claims:
        return None
    return [[c.role, list(c.queues), list(c.rooms), c.issued, c.expires, c.token_id, c.issuer]
            for c in claims]  # fmt: skip


__all__ = ["MAX_WAITING", "Forward", "Forwarding", "Remote"]
