"""Rooms and seats over their lifetime: create a room, seat a peer, release a seat, end
a room; tokens (rotation, forgetting); finding rooms and seats by any code spelling.

A mixin of ``Hub`` (``relay.hub``); the attributes it uses are declared below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from haven.protocol import codes
from haven.protocol import messages as m
from haven.protocol.errors import CodeFormatError, ErrorCode, RequestError

from .aliases import new_alias
from .budget import ROOM_BYTES, SEAT_BYTES, MemoryBudget
from .delivery import Delivery
from .extension import Extension
from .limits import TokenBucket
from .peer import BUSY_RETRY_AFTER, Peer, fail
from .rooms import Room, Seat
from .timers import Deadlines


class Seating(Delivery):
    """Room and seat life (part of ``Hub``)."""

    rooms: dict[str, Room]
    tokens: dict[bytes, Any]
    held: set[Seat]
    timers: Deadlines[Seat | Room]
    memory: MemoryBudget
    rooms_closed: dict[str, int]
    ext: Extension
    latest: float
    #: Prepended to every resume token this hub mints (a cluster names the process that
    #: holds the seat with it, so a resume on another process finds it; empty alone).
    token_prefix: bytes
    #: Told when a room opens (``True``) or ends (``False``): a cluster subscribes to it.
    on_room: Callable[[Room, bool], None] | None

    def admit(self, cost: int) -> None:
        """Refuse new state of about ``cost`` bytes near the memory budget (502)."""
        if not self.memory.admits(cost):
            fail(ErrorCode.RELAY_BUSY, retry_after=BUSY_RETRY_AFTER)

    def is_moderator_for(self, peer: Peer, room_code: str | None) -> bool:
        """Whether the peer's token lets it moderate ``room_code`` now (the extension
        decides; the plain relay has no moderators)."""
        return self.ext.is_moderator_for(peer, room_code, self.latest)

    def seat_of(self, peer: Peer, room_code: str) -> Seat:
        """The peer's seat in ``room_code`` (any spelling) or ``NOT_A_MEMBER``."""
        seat = peer.seats.get(room_code)
        if seat is None:
            # Not the canonical spelling (rare): normalise, then look again.
            try:
                seat = peer.seats.get(codes.parse_room_code(room_code))
            except CodeFormatError as exc:
                raise RequestError(exc.message, code=ErrorCode.BAD_CODE) from None
        if seat is None:
            fail(ErrorCode.NOT_A_MEMBER)
        assert seat is not None
        return seat

    def find_room(self, code: str) -> Room:
        """Look a room up by any spelling of its code (checksum checked first)."""
        try:
            canonical = codes.parse_room_code(code)
        except CodeFormatError as exc:
            raise RequestError(exc.message, code=ErrorCode.BAD_CODE) from None
        room = self.rooms.get(canonical)
        if room is None:
            fail(ErrorCode.ROOM_NOT_FOUND)
        assert room is not None
        return room

    def seat_view(self, seat: Seat, after: int, resumed: bool = False) -> m.Seat:
        """The ``Seat`` a client is given for ``seat``."""
        room = seat.room
        return m.Seat(
            room=room.code,
            alias=seat.alias,
            token=seat.token,
            seq=after,
            members=room.members,
            kind=room.kind,
            topic=room.topic,
            premoderated=room.premoderated,
            # What the seat can do now (a resumed seat has no power before a fresh auth).
            moderator=seat.peer is not None and self.is_moderator_for(seat.peer, room.code),
            rules=room.rules,
            resumed=resumed,
        )

    def new_room(
        self,
        now: float,
        *,
        kind: str,
        topic: str | None = None,
        listed: bool = False,
        premoderated: bool = False,
        max_members: int | None = None,
        idle_ttl: float | None = None,
        hard_ttl: float | None = None,
        rules: str | None = None,
        code: str | None = None,
    ) -> Room:
        """Create an empty room (``TOO_MANY_ROOMS`` at the global cap)."""
        cfg = self.config
        if len(self.rooms) >= cfg.max_rooms:
            fail(ErrorCode.TOO_MANY_ROOMS, "the relay holds as many rooms as it may")
        self.admit(ROOM_BYTES + SEAT_BYTES)
        cap = 2 if kind == "direct" else min(max_members or cfg.max_members, cfg.max_members_limit)
        if code is None:
            code = codes.new_room_code()
        room = Room(
            code=code,
            kind=kind,
            created=now,
            max_members=cap,
            idle_ttl=min(idle_ttl or cfg.room_idle_ttl, cfg.room_idle_ttl),
            hard_ttl=min(hard_ttl or cfg.room_hard_ttl, cfg.room_hard_ttl),
            ring_size=cfg.resume_buffer,
            ring_max_bytes=cfg.resume_buffer_bytes,
            budget=TokenBucket(cfg.room_rate_bytes_per_s, cfg.room_burst_bytes, now),
            memory=self.memory,
            topic=topic,
            listed=listed,
            premoderated=premoderated,
            rules=rules,
            last_activity=now,
        )
        self.rooms[code] = room
        if self.on_room is not None:
            self.on_room(room, True)
        self.timers.set(room, min(now + room.hard_ttl, now + room.idle_ttl))
        self.stats["rooms_created"] += 1
        return room

    def add_seat(
        self,
        peer: Peer,
        room: Room,
        now: float,
        *,
        moderator: bool = False,
        role: str | None = None,
        over_cap: bool = False,
    ) -> Seat:
        """Give ``peer`` a new seat in ``room`` and tell the others."""
        if room.code in peer.seats:
            fail(ErrorCode.ALREADY_MEMBER)
        if len(peer.seats) >= self.config.max_rooms_per_connection:
            fail(ErrorCode.TOO_MANY_ROOMS, "this connection holds as many rooms as it may")
        if room.locked and not moderator:
            fail(ErrorCode.ROOM_LOCKED)
        if room.members >= room.max_members + (1 if over_cap else 0):
            fail(ErrorCode.ROOM_FULL)
        self.admit(SEAT_BYTES)
        seat = Seat(
            room=room,
            alias=new_alias(room.seats),
            token=self.token_prefix + codes.new_token(),
            peer=peer,
            join_seq=room.seq,
            moderator=moderator,
            role=role,
        )
        room.seats[seat.alias] = seat
        peer.seats[room.code] = seat
        self.tokens[seat.token] = seat
        room.last_activity = now
        self._presence(seat, "joined")
        seat.join_seq = room.seq
        return seat

    def release(self, seat: Seat, what: str) -> None:
        """Take a seat away for good (left, grace expired, removed)."""
        room = seat.room
        if room.seats.get(seat.alias) is not seat:
            return
        del room.seats[seat.alias]
        self._unseat(seat)
        for entry in [e for e in room.pending.values() if e.author is seat]:
            del room.pending[entry.item]
        if not room.seats:
            self.rooms_closed["empty"] += 1
            self.drop_room(room)
        else:
            self._presence(seat, what)

    def _unseat(self, seat: Seat) -> None:
        """Cut every tie to ``seat``: tokens, the held set, its timer, its connection."""
        self.forget_tokens(seat)
        self.held.discard(seat)
        self.timers.cancel(seat)
        if seat.peer is not None:
            seat.peer.seats.pop(seat.room.code, None)
            seat.peer = None

    def close_room(self, room: Room, reason: str) -> None:
        """End a room for everyone present and forget everything about it.

        A seat still catching up first gets the ring events it has not pulled and its
        kept private events, then ``room_closed``: the room is about to be forgotten, so
        this is the last chance to give it a gap-free end. (This bypasses pacing once;
        it is bounded by the ring, ``resume_buffer_bytes``.)
        """
        event = m.RoomClosed(room=room.code, reason=reason)
        self.rooms_closed[reason] = self.rooms_closed.get(reason, 0) + 1
        lagging: list[Peer] = []
        for seat in room.seats.values():
            peer = seat.peer
            if peer is None:
                continue
            behind = seat.behind
            if behind is not None:
                unseen = (ev for seq, ev, ex in room.ring if seq > behind and ex is not seat)
                self.out.extend((peer, ev) for ev in unseen)
                if seat.missed is not None and not seat.missed_overflow:
                    self.out.extend((peer, ev) for ev in seat.missed)
                seat.behind = None
                lagging.append(peer)
            self.out.append((peer, event))
        self.drop_room(room)
        for peer in lagging:
            peer.catching_up = any(s.behind is not None for s in peer.seats.values())

    def drop_room(self, room: Room) -> None:
        """Forget a room and every seat, token and pending item in it."""
        for seat in room.seats.values():
            self._unseat(seat)
            seat.missed = None
        room.seats.clear()
        room.clear_ring()
        room.pending.clear()
        room.removed_tokens.clear()
        self.rooms.pop(room.code, None)
        if self.on_room is not None:
            self.on_room(room, False)
        self.timers.cancel(room)
        self.ext.on_room_end(room)

    def _rotate(self, seat: Seat, presented: bytes) -> None:
        """Give the seat a new token; the one just presented stays as ``prev_token``.

        If the ``joined`` carrying the new token is lost with a connection that drops at
        once, the client still holds only ``presented``: it may resume with it once more
        while the seat is held. Every older token is forgotten.
        """
        for old in (seat.token, seat.prev_token):
            if old is not None and old != presented:
                self.tokens.pop(old, None)
        seat.prev_token = presented
        seat.token = self.token_prefix + codes.new_token()
        self.tokens[seat.token] = seat

    def forget_tokens(self, seat: Seat) -> None:
        """Drop every token that leads to ``seat`` (it is released or its room ended)."""
        self.tokens.pop(seat.token, None)
        if seat.prev_token is not None:
            self.tokens.pop(seat.prev_token, None)


__all__ = ["Seating"]
