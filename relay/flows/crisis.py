"""Crisis escalation: a peer raises a flag, moderators move them to a staffed queue.

``crisis`` (any member of a group room) alerts the room's moderators with the member's
per-room alias only (``crisis_alert``); nothing else about the member is known to
anyone. Repeated flags from one seat within ``crisis_interval`` are acknowledged but do
not alert again, so a distressed person pressing twice is not told off and moderators
are not flooded.

``escalate`` (a moderator of the room) moves that member into the *priority lane* of
an intake queue: the member gets ``queue_position`` with ``priority = true`` and, because
it never asked for help itself, the place's resume ``token``. Staff taking the next
visitor from that queue take priority places first, into a 1:1 direct room; the member
keeps its seat in the group room.
"""

from __future__ import annotations

from haven.protocol import messages as m
from haven.protocol.errors import ErrorCode

from ..hub import Hub, Peer, fail
from ..rooms import Room, Seat
from .auth import Auth
from .queues import Queues
from .settings import FlowSettings


class Crisis:
    """Crisis flags and escalation into a queue's priority lane."""

    def __init__(self, hub: Hub, settings: FlowSettings, auth: Auth, queues: Queues) -> None:
        self.hub = hub
        self.auth = auth
        self.queues = queues
        self.interval = settings.moderation.crisis_interval
        self.last_flag: dict[Seat, float] = {}

    def crisis(self, peer: Peer, req: m.Crisis, now: float) -> None:
        seat = self.hub.seat_of(peer, req.room)
        room = seat.room
        last = self.last_flag.get(seat)
        if last is None or now - last >= self.interval:
            self.last_flag.pop(seat, None)  # re-inserted: the dict stays oldest first
            self.last_flag[seat] = now
            alert = m.CrisisAlert(room=room.code, alias=seat.alias)
            for moderator in self.auth.live_moderators(room):
                if moderator is not seat:
                    self.hub.private(moderator, alert)
        self.hub.reply(peer, m.Ok(id=req.id))

    def escalate(self, peer: Peer, req: m.Escalate, now: float) -> None:
        room = self.auth.moderator_seat(peer, req.room, now).room
        self.queues.line(req.queue)
        target = room.seats.get(req.alias)
        if target is None:
            fail(ErrorCode.MEMBER_NOT_FOUND)
        assert target is not None
        if target.peer is None:
            fail(ErrorCode.MEMBER_NOT_FOUND, "that member is away; try again when they are back")
        assert target.peer is not None
        elsewhere = self.queues.elsewhere
        if elsewhere is not None and elsewhere(peer, req, target.peer, now):
            return  # the cluster's leader holds the queues; it answers for us
        self.queues.escalate(target.peer, req.queue, now)
        self.hub.reply(peer, m.Ok(id=req.id))

    def next_deadline(self) -> float | None:
        """When the oldest flag stops counting (flags are kept oldest first)."""
        for flagged in self.last_flag.values():
            return flagged + self.interval
        return None

    def on_timer(self, now: float) -> None:
        last_flag = self.last_flag
        while last_flag:
            seat, flagged = next(iter(last_flag.items()))
            if now - flagged < self.interval:
                break
            del last_flag[seat]

    def on_room_end(self, room: Room) -> None:
        for seat in [s for s in self.last_flag if s.room is room]:
            del self.last_flag[seat]
