"""How the hub delivers: replies, private events, room events (pushed or pulled from the
ring as a slow socket drains), typing, and presence.

A mixin of ``Hub`` (``relay.hub``); the attributes it uses are declared below.
"""

from __future__ import annotations

from collections import deque

from haven.protocol import messages as m
from haven.protocol.errors import ErrorCode

from .config import Config
from .peer import Peer
from .rooms import Room, Seat, event_bytes


class Delivery:
    """Delivery of replies and events to peers (part of ``Hub``)."""

    config: Config
    out: list[tuple[Peer, m.Message]]
    to_close: list[tuple[Peer, ErrorCode]]
    stats: dict[str, int]

    def reply(self, peer: Peer, msg: m.Message) -> None:
        """Queue a reply or private event for a connected peer."""
        self.out.append((peer, msg))

    def private(self, seat: Seat, msg: m.Message) -> None:
        """Deliver a private (unsequenced) event to one seat, holding it if away."""
        if seat.peer is not None and seat.behind is None:
            self.out.append((seat.peer, msg))
            return
        # Held, or catching up: kept, and delivered after the room events it follows.
        if seat.missed is None:
            seat.missed = deque()
        if len(seat.missed) < self.config.resume_private_buffer:
            seat.missed.append(msg)
        else:
            seat.missed_overflow = True

    def broadcast(self, room: Room, event: m.Message, seq: int, exclude: Seat | None) -> None:
        """Deliver a sequenced room event to every present seat but ``exclude``.

        A seat whose connection is congested is not pushed to: it switches to catching
        up and will pull this event from the ring when its socket drains. A catching-up
        seat whose next event has left the ring can no longer be served without a gap:
        its connection is dropped as a slow consumer (its resume then fails with 209).
        """
        room.record(seq, event, exclude)
        oldest = room.ring[0][0]
        out = self.out
        n = 0
        for seat in room.seats.values():
            peer = seat.peer
            if peer is None or seat is exclude:
                continue
            behind = seat.behind
            if behind is None:
                if not peer.congested:
                    out.append((peer, event))
                    n += 1
                    continue
                seat.behind = behind = seq - 1
                peer.catching_up = True
            if behind + 1 < oldest:
                self.to_close.append((peer, ErrorCode.SLOW_CONSUMER))
        self.stats["deliveries"] += n

    def ephemeral(self, room: Room, event: m.Message, exclude: Seat | None) -> None:
        """Deliver an unsequenced, never-replayed event (typing) to present seats.

        Skipped for seats that are behind: typing is worthless late.
        """
        for seat in room.seats.values():
            peer = seat.peer
            if (
                peer is not None
                and seat is not exclude
                and seat.behind is None
                and not peer.congested
            ):
                self.out.append((peer, event))

    def refill(self, peer: Peer, budget: int) -> None:
        """Queue up to ``budget`` bytes of ring events for the peer's catching-up seats.

        Called by the shell when the peer's socket has drained (and at once after a
        resume). A seat that reaches its room's last event gets its kept private events
        and goes live again. A seat whose next event has left the ring is a slow
        consumer (its connection is closed; see ``broadcast``).
        """
        still = False
        for seat in list(peer.seats.values()):
            behind = seat.behind
            if behind is None:
                continue
            room = seat.room
            if behind < room.seq and room.oldest_replayable() > behind + 1:
                self.to_close.append((peer, ErrorCode.SLOW_CONSUMER))
                return
            for seq, event, exclude in room.ring:
                if seq <= behind:
                    continue
                if budget <= 0:
                    break
                if exclude is not seat:
                    self.out.append((peer, event))
                    budget -= event_bytes(event)
                behind = seq
            seat.behind = behind
            if behind < room.seq:
                still = True
                continue
            seat.behind = None
            if seat.missed_overflow:
                self.to_close.append((peer, ErrorCode.SLOW_CONSUMER))
                return
            if seat.missed is not None:
                self.out.extend((peer, event) for event in seat.missed)
                seat.missed = None
        peer.catching_up = still

    def _presence(self, seat: Seat, what: str) -> None:
        room = seat.room
        seq = room.next_seq()
        event = m.Presence(
            room=room.code, seq=seq, alias=seat.alias, event=what, members=room.members
        )
        self.broadcast(room, event, seq, exclude=seat)


__all__ = ["Delivery"]
