"""Intake queues: visitors wait in line, staff on duty take the next one.

Each configured queue is two FIFO lanes, *priority* (crisis escalations) before
*normal*. A place in line is a ``Ticket``: it belongs to one connection, is resumable
by a secret token (``hub.tokens``) for the resume grace window after that connection
drops, and is told its position (``queue_position``) whenever the line moves.

``take_next`` seats the staff member and the first *present* visitor in a new direct
room: staff gets ``joined``, the visitor gets ``matched``. A visitor whose connection
is down keeps its place but is passed over, so staff never land in a room with nobody
in it. After a match the ticket's token stays valid for the grace window and resumes
the visitor's *seat*: a ``matched`` lost in a drop is not a lost conversation.

Both lanes are bounded (``max_length``); a full queue answers ``QUEUE_FULL`` with the
configured ``retry_after``. Positions are recomputed in one pass per change, so a
change costs O(queue length), which the bound keeps small.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from haven.protocol import codes
from haven.protocol import messages as m
from haven.protocol.errors import ErrorCode

from ..budget import TICKET_BYTES
from ..hub import Hub, Peer, fail
from ..rooms import Seat
from ..timers import Deadlines
from .auth import Auth
from .settings import FlowSettings, QueueDef


@dataclass(eq=False, slots=True)
class Ticket:
    """One visitor's place in one queue."""

    queue: str
    token: bytes
    peer: Peer | None
    priority: bool = False
    away_since: float | None = None
    position: int = 0  #: the position last told to the visitor
    seat: Seat | None = None  #: the visitor's seat once matched
    matched_at: float = 0.0
    since: float = 0.0  #: when the place was made (for the aggregate wait-time metric)


class Line:
    """One queue's lanes and the staff on duty for it."""

    __slots__ = ("definition", "duty", "normal", "priority")

    def __init__(self, definition: QueueDef) -> None:
        self.definition = definition
        # dicts as ordered sets: O(1) removal from anywhere in line.
        self.priority: dict[Ticket, None] = {}
        self.normal: dict[Ticket, None] = {}
        self.duty: set[Peer] = set()

    def order(self) -> Iterator[Ticket]:
        yield from self.priority
        yield from self.normal

    def position_of(self, ticket: Ticket) -> int:
        for i, t in enumerate(self.order(), 1):
            if t is ticket:
                return i
        raise KeyError(ticket.queue)

    def discard(self, ticket: Ticket) -> None:
        self.priority.pop(ticket, None)
        self.normal.pop(ticket, None)


class Queues:
    """All intake queues of the relay."""

    def __init__(self, hub: Hub, settings: FlowSettings, auth: Auth) -> None:
        #: Set by a cluster whose leader holds the queues: escalates a member there
        #: (``True``), answering the moderator when the leader has (``ClusterLink``).
        self.elsewhere: Callable[[Peer, m.Escalate, Peer, float], bool] | None = None
        self.hub = hub
        self.auth = auth
        self.lines = {name: Line(d) for name, d in settings.queues.items()}
        #: Waiting tickets whose connection dropped, due at the end of their grace.
        self.away: Deadlines[Ticket] = Deadlines()
        self.matched: dict[Ticket, None] = {}  #: matched tickets, oldest first
        #: Observers of each match: (queue name, seconds waited). For aggregate metrics.
        self.on_match: list[Callable[[str, float], None]] = []

    def fill(self) -> float:
        """How full the fullest normal lane is (0..1): admission control counts it as load,
        so proof of work is asked for ``request_help`` before a queue can be filled."""
        return max(
            (len(line.normal) / line.definition.max_length for line in self.lines.values()),
            default=0.0,
        )

    def lengths(self) -> dict[str, int]:
        """Places waiting per configured queue, both lanes (aggregate metrics)."""
        return {name: len(line.priority) + len(line.normal) for name, line in self.lines.items()}

    # --------------------------------------------------------------- helpers

    def line(self, name: str) -> Line:
        line = self.lines.get(name)
        if line is None:
            fail(ErrorCode.QUEUE_NOT_FOUND)
        assert line is not None
        return line

    def _reposition(self, line: Line) -> None:
        """Tell every present visitor whose place changed its new position."""
        name = line.definition.name
        for i, ticket in enumerate(line.order(), 1):
            if ticket.position != i:
                ticket.position = i
                if ticket.peer is not None:
                    self.hub.reply(
                        ticket.peer,
                        m.QueuePosition(queue=name, position=i, priority=ticket.priority),
                    )

    def _forget(self, ticket: Ticket) -> None:
        """Drop a waiting ticket: out of line, token dead."""
        self.lines[ticket.queue].discard(ticket)
        self.hub.tokens.pop(ticket.token, None)
        self.away.cancel(ticket)
        if ticket.peer is not None and ticket.peer.tickets.get(ticket.queue) is ticket:
            del ticket.peer.tickets[ticket.queue]
        ticket.peer = None

    def _new_ticket(self, peer: Peer, queue: str, priority: bool, now: float) -> Ticket:
        ticket = Ticket(
            queue=queue, token=self.hub.token_prefix + codes.new_token(), peer=peer,
            priority=priority, since=now,
        )
        self.hub.tokens[ticket.token] = ticket
        peer.tickets[queue] = ticket
        return ticket

    # --------------------------------------------------------------- visitors

    def request_help(self, peer: Peer, req: m.RequestHelp, now: float) -> None:
        line = self.line(req.queue)
        ticket = peer.tickets.get(req.queue)
        if ticket is None:
            self.hub.check_pow(peer, req, now)
            self.hub.admit(TICKET_BYTES)
            if len(line.normal) >= line.definition.max_length:
                fail(ErrorCode.QUEUE_FULL, retry_after=line.definition.retry_after)
            ticket = self._new_ticket(peer, req.queue, priority=False, now=now)
            line.normal[ticket] = None
            ticket.position = line.position_of(ticket)
        self._reply_queued(peer, req.id, ticket)

    def _reply_queued(self, peer: Peer, request_id: int, ticket: Ticket) -> None:
        """Tell a visitor its place in line and the (new) token to resume it with."""
        self.hub.reply(
            peer,
            m.Queued(
                id=request_id,
                queue=ticket.queue,
                position=ticket.position,
                token=ticket.token,
                priority=ticket.priority,
            ),
        )

    def cancel_help(self, peer: Peer, req: m.CancelHelp, now: float) -> None:
        line = self.line(req.queue)
        ticket = peer.tickets.get(req.queue)
        if ticket is None:
            fail(ErrorCode.NOT_QUEUED)
        assert ticket is not None
        self._forget(ticket)
        self._reposition(line)
        self.hub.reply(peer, m.Ok(id=req.id))

    def staff_count(self, peer: Peer, req: m.StaffCount, now: float) -> None:
        line = self.line(req.queue)
        waiting = priority = None
        if self.auth.is_staff(peer, req.queue, now):
            waiting = sum(1 for t in line.normal if t.peer is not None)
            priority = sum(1 for t in line.priority if t.peer is not None)
        self.hub.reply(
            peer,
            m.Staff(id=req.id, queue=req.queue, count=len(line.duty), waiting=waiting,
                    priority=priority),
        )

    def resume(self, peer: Peer, req: m.Resume, ticket: Ticket, now: float) -> None:
        """``resume`` with a queue token: the place in line, or the seat if matched."""
        if ticket.seat is not None:
            seat = ticket.seat
            self.hub.tokens.pop(ticket.token, None)
            self.matched.pop(ticket, None)
            if seat.room.seats.get(seat.alias) is not seat:
                fail(ErrorCode.RESUME_FAILED)
            resume = m.Resume(id=req.id, token=seat.token, after=req.after)
            self.hub.resume_seat(peer, resume, now)
            return
        holder = peer.tickets.get(ticket.queue)
        if holder is not None and holder is not ticket:
            fail(ErrorCode.ALREADY_MEMBER, "this connection already waits in that queue")
        old = ticket.peer
        if old is not None and old is not peer:
            old.tickets.pop(ticket.queue, None)  # the token holder wins
        del self.hub.tokens[ticket.token]
        ticket.token = self.hub.token_prefix + codes.new_token()
        self.hub.tokens[ticket.token] = ticket
        ticket.peer = peer
        ticket.away_since = None
        self.away.cancel(ticket)
        peer.tickets[ticket.queue] = ticket
        self._reply_queued(peer, req.id, ticket)

    # ------------------------------------------------------------------ staff

    def duty(self, peer: Peer, req: m.Duty, now: float) -> None:
        # Role and scope first: a caller without them learns nothing from the lookup.
        self.auth.require_staff(peer, req.queue, now)
        line = self.line(req.queue)
        if req.on:
            line.duty.add(peer)
        else:
            line.duty.discard(peer)
        self.hub.reply(peer, m.Ok(id=req.id))

    def take_next(self, peer: Peer, req: m.TakeNext, now: float) -> None:
        # Role and scope first: a caller without them learns nothing from the lookup.
        self.auth.require_staff(peer, req.queue, now)
        line = self.line(req.queue)
        hub = self.hub
        cap = hub.config.max_rooms_per_connection
        if len(peer.seats) >= cap:
            fail(ErrorCode.TOO_MANY_ROOMS, "this connection holds as many rooms as it may")
        ticket = next(
            (
                t
                for t in line.order()
                if t.peer is not None and t.peer is not peer and len(t.peer.seats) < cap
            ),
            None,
        )
        if ticket is None:
            fail(ErrorCode.QUEUE_EMPTY, "nobody present is waiting")
        assert ticket is not None
        assert ticket.peer is not None
        visitor = ticket.peer
        room = hub.new_room(now, kind="direct")
        staff_seat = hub.add_seat(peer, room, now, role="staff")
        # Seat the visitor while the staff seat is detached, so neither side is sent a
        # presence event for a room it has not been told about yet; both seat views
        # start after both joins.
        staff_seat.peer = None
        visitor_seat = hub.add_seat(visitor, room, now, role="visitor")
        staff_seat.peer = peer
        self._forget(ticket)
        ticket.seat = visitor_seat
        ticket.matched_at = now
        hub.tokens[ticket.token] = ticket  # resumes the seat for the grace window
        self.matched[ticket] = None
        hub.reply(
            peer,
            m.Joined(id=req.id, seat=hub.seat_view(staff_seat, room.seq), priority=ticket.priority),
        )
        hub.reply(
            visitor,
            m.Matched(queue=req.queue, seat=hub.seat_view(visitor_seat, room.seq)),
        )
        self._reposition(line)
        for observer in self.on_match:
            observer(req.queue, now - ticket.since)

    # --------------------------------------------------------------- crisis

    def escalate(self, peer: Peer, queue: str, now: float) -> None:
        """Put ``peer`` (a connected group-room member) at the end of the priority lane."""
        line = self.line(queue)
        if len(line.priority) >= line.definition.max_length:
            fail(ErrorCode.QUEUE_FULL, retry_after=line.definition.retry_after)
        ticket = peer.tickets.get(queue)
        token: bytes | None = None
        if ticket is None:
            ticket = self._new_ticket(peer, queue, priority=True, now=now)
            token = ticket.token
        else:
            line.discard(ticket)
            ticket.priority = True
        line.priority[ticket] = None
        position = line.position_of(ticket)
        ticket.position = position
        self.hub.reply(
            peer, m.QueuePosition(queue=queue, position=position, priority=True, token=token)
        )
        self._reposition(line)

    # ------------------------------------------------------------- lifecycle

    def on_disconnect(self, peer: Peer, now: float) -> None:
        """Hold the peer's places for the grace window; it is off duty everywhere."""
        grace = self.hub.config.resume_grace
        for ticket in peer.tickets.values():
            ticket.peer = None
            ticket.away_since = now
            self.away.set(ticket, now + grace)
        peer.tickets.clear()
        for line in self.lines.values():
            line.duty.discard(peer)

    def next_deadline(self) -> float | None:
        """The next place held past its grace, or matched token to forget."""
        away = self.away.next()
        if self.matched:
            first = next(iter(self.matched)).matched_at + self.hub.config.resume_grace
            return first if away is None else min(away, first)
        return away

    def on_timer(self, now: float) -> None:
        """Give up places held past the grace window; expire matched tokens."""
        grace = self.hub.config.resume_grace
        moved = set()
        for ticket in self.away.pop_due(now):
            self._forget(ticket)
            moved.add(ticket.queue)
        for name in moved:
            self._reposition(self.lines[name])
        while self.matched:
            ticket = next(iter(self.matched))
            if now - ticket.matched_at < grace:
                break
            del self.matched[ticket]
            self.hub.tokens.pop(ticket.token, None)
