"""The hub's own requests: ping, create a room, join, leave, send, typing, resume a
seat, and the directory. Flows add the others through the hub's ``Extension``.

A mixin of ``Hub`` (``relay.hub``); the attributes it uses are declared below.
"""

from __future__ import annotations

from typing import Any

from haven.protocol import messages as m
from haven.protocol import pow
from haven.protocol.errors import ErrorCode, HavenError

from .peer import MAX_DIRECTORY, REFILL_BYTES, Peer, bucket_members, fail
from .rooms import EVENT_OVERHEAD, Seat
from .seats import Seating


class RoomRequests(Seating):
    """Handlers of the plain-room requests (part of ``Hub``)."""

    pow_difficulty: int
    expensive_requests: int
    resumers: dict[type[Any], Any]

    def _ping(self, peer: Peer, req: m.Ping, now: float) -> None:
        self.reply(peer, m.Pong(id=req.id))

    def check_pow(self, peer: Peer, req: Any, now: float) -> None:
        """Proof-of-work gate for expensive requests (create room, request help, handoff).

        ``pow_difficulty`` is set by admission control; at 0 no work is asked for. Each
        call counts towards admission control's rate of expensive requests. A peer whose
        proof fails is sent the current challenge first, so it can solve the right one.
        """
        self.expensive_requests += 1
        try:
            pow.verify(peer.pow_seed, req.id, self.pow_difficulty, req.pow)
        except HavenError:
            challenge = m.Challenge(seed=peer.pow_seed, difficulty=self.pow_difficulty)
            self.out.append((peer, m.ChallengeUpdate(challenge=challenge)))
            raise

    def _create_room(self, peer: Peer, req: m.CreateRoom, now: float) -> None:
        self.check_pow(peer, req, now)
        moderator = self.is_moderator_for(peer, None)
        if (req.listed or req.premoderated) and not moderator:
            fail(ErrorCode.UNAUTHORIZED, "only moderators create listed or pre-moderated rooms")
        if req.kind == "direct" and (req.listed or req.premoderated):
            fail(ErrorCode.BAD_FIELD, "direct rooms cannot be listed or pre-moderated")
        if req.max_members is not None and req.max_members > self.config.max_members_limit:
            fail(ErrorCode.BAD_FIELD, "max_members is above this relay's limit")
        if len(peer.seats) >= self.config.max_rooms_per_connection:
            fail(ErrorCode.TOO_MANY_ROOMS, "this connection holds as many rooms as it may")
        room = self.new_room(
            now,
            kind=req.kind,
            topic=req.topic,
            listed=req.listed,
            premoderated=req.premoderated,
            max_members=req.max_members,
            idle_ttl=req.idle_ttl,
            hard_ttl=req.hard_ttl,
            rules=req.rules,
        )
        seat = self.add_seat(peer, room, now, moderator=moderator)
        self.reply(peer, m.Joined(id=req.id, seat=self.seat_view(seat, seat.join_seq)))

    def _join(self, peer: Peer, req: m.Join, now: float) -> None:
        self.ext.prepare_join(peer, req.room, now)
        room = self.find_room(req.room)
        self.ext.check_join(peer, room, now)
        seat = self.add_seat(peer, room, now, moderator=self.is_moderator_for(peer, room.code))
        self.reply(peer, m.Joined(id=req.id, seat=self.seat_view(seat, seat.join_seq)))

    def _leave(self, peer: Peer, req: m.Leave, now: float) -> None:
        seat = self.seat_of(peer, req.room)
        self.release(seat, "left")
        self.reply(peer, m.Left(id=req.id, room=req.room))

    def _send(self, peer: Peer, req: m.Send, now: float) -> None:
        seat = self.seat_of(peer, req.room)
        if len(req.body) > self.config.max_body_bytes:
            fail(ErrorCode.TOO_LARGE, f"bodies may be at most {self.config.max_body_bytes} bytes")
        if seat.muted:
            fail(ErrorCode.MUTED)
        room = seat.room
        # The ring keeps it once; each present member's buffer may hold it once more.
        self.admit((EVENT_OVERHEAD + len(req.body)) * room.members)
        wait = room.budget.take(now, EVENT_OVERHEAD + len(req.body))
        if wait is not None:
            fail(ErrorCode.RATE_LIMITED, "the room carries as much as it may", retry_after=wait)
        room.last_activity = now
        self.stats["messages"] += 1
        # Power is derived from the sender's live token now, not from a stored flag.
        if room.premoderated and not self.is_moderator_for(peer, room.code):
            item = self.ext.hold_for_moderation(seat, req.body, now)
            self.reply(peer, m.Sent(id=req.id, room=room.code, item=item))
            return
        seq = room.next_seq()
        event = m.Deliver(room=room.code, seq=seq, sender=seat.alias, body=req.body)
        self.broadcast(room, event, seq, seat)
        self.reply(peer, m.Sent(id=req.id, room=room.code, seq=seq))

    def _typing(self, peer: Peer, req: m.Typing, now: float) -> None:
        seat = self.seat_of(peer, req.room)
        wait = seat.last_typing + self.config.typing_interval - now
        if wait > 0:
            fail(ErrorCode.RATE_LIMITED, "typing events are rate-limited", retry_after=wait)
        if seat.muted:
            fail(ErrorCode.MUTED)
        seat.last_typing = now
        self.ephemeral(seat.room, m.TypingEvent(room=seat.room.code, alias=seat.alias), seat)
        self.reply(peer, m.Ok(id=req.id))

    def resume_seat(self, peer: Peer, req: m.Resume, now: float) -> None:
        """``resume``: a seat by its token (other targets go to ``resumers``)."""
        target = self.tokens.get(req.token)
        if target is None:
            self.stats["resume_failed"] += 1
            fail(ErrorCode.RESUME_FAILED)
        if not isinstance(target, Seat):
            self.resumers[type(target)](peer, req, target, now)
            return
        seat = target
        if req.token == seat.prev_token and seat.peer is not None:
            # The previous token only stands in for a ``joined`` lost with a dropped
            # connection: while the seat is connected it is as dead as any old token.
            self.stats["resume_failed"] += 1
            fail(ErrorCode.RESUME_FAILED)
        room = seat.room
        after = max(req.after, seat.join_seq)
        if after > room.seq:
            fail(ErrorCode.BAD_FIELD, "'after' is beyond the room's last event")
        if seat.peer is not peer and room.code in peer.seats:
            fail(ErrorCode.ALREADY_MEMBER)
        if seat.peer is not peer and len(peer.seats) >= self.config.max_rooms_per_connection:
            fail(ErrorCode.TOO_MANY_ROOMS, "this connection holds as many rooms as it may")
        if room.oldest_replayable() > after + 1 or seat.missed_overflow:
            # The seat missed more than the relay keeps: say so, never leave a gap.
            self.stats["resume_failed"] += 1
            self.release(seat, "left")
            fail(ErrorCode.RESUME_FAILED, "too many events were missed; join again")
        if seat.peer is not None and seat.peer is not peer:
            # The old connection has not noticed it is gone; the token holder wins, and
            # the old connection is told that this room ended for it.
            seat.peer.seats.pop(room.code, None)
            self.out.append((seat.peer, m.RoomClosed(room=room.code, reason="taken_over")))
        was_away = seat.peer is None
        self._rotate(seat, req.token)
        seat.peer = peer
        seat.away_since = None
        self.held.discard(seat)
        self.timers.cancel(seat)
        peer.seats[room.code] = seat
        self.stats["resumes"] += 1
        self.reply(peer, m.Joined(id=req.id, seat=self.seat_view(seat, after, resumed=True)))
        # The replay is pulled as the socket drains (never queued whole): it starts now
        # with one refill, then the shell refills each time the connection has drained.
        seat.behind = after
        peer.catching_up = True
        self.refill(peer, REFILL_BYTES)
        if was_away:
            self._presence(seat, "back")

    def _directory(self, peer: Peer, req: m.Directory, now: float) -> None:
        entries = [
            m.RoomInfo(
                room=room.code,
                topic=room.topic or "",
                open=True,
                members=bucket_members(room.members),
                premoderated=room.premoderated,
            )
            for room in self.rooms.values()
            if room.listed and room.schedule is None
        ]
        entries.extend(self.ext.directory(now))
        # Capped so the reply always fits the codec's item budget (docs/protocol.md).
        self.reply(peer, m.Rooms(id=req.id, rooms=tuple(entries[:MAX_DIRECTORY])))


__all__ = ["RoomRequests"]
