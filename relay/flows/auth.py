"""The ``auth`` request and every authorization decision the flows make.

A connection presents a token (``relay.tokens``) inside its encrypted channel; the
verified claims live on the ``Peer`` (one per role; a newer token of the same role
replaces the older) and die with the connection. Every privileged request re-checks
expiry at the moment it is made, so a token that expires mid-shift stops working
without the connection being touched.

Refusals are typed and ordered so that they say what the client must do:

* ``UNAUTHORIZED`` — no token was presented at all;
* ``FORBIDDEN`` — tokens were presented, but none of the right role or scope;
* ``TOKEN_EXPIRED`` — the right role, but every such token has expired.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from haven.protocol import messages as m
from haven.protocol.errors import ErrorCode

from ..hub import Hub, Peer, fail
from ..rooms import Room, Seat
from ..tokens import Claims, verify
from .clock import Clock
from .settings import FlowSettings

#: Most tokens (one per role) a connection may hold.
MAX_CLAIMS = 3


class Auth:
    """Token verification and role/scope checks for the other flows."""

    def __init__(
        self,
        hub: Hub,
        settings: FlowSettings,
        clock: Clock,
        room_name: Callable[[str], str | None],
    ) -> None:
        self.hub = hub
        self.settings = settings
        self.clock = clock
        #: Scheduled-room name for a room code (moderator scopes may name rooms).
        self.room_name = room_name

    # ---------------------------------------------------------------- request

    def handle_auth(self, peer: Peer, req: m.Auth, now: float) -> None:
        """Verify the token, keep its claims for this connection, answer ``authed``."""
        claims = verify(
            req.token,
            self.settings.issuers,
            self.clock.wall(now),
            audience=self.hub.config.token_audience,
        )
        kept = tuple(c for c in self.claims(peer) if c.role != claims.role)
        peer.claims = (*kept, claims)[-MAX_CLAIMS:]
        if claims.role == "moderator":
            # Seats taken before the token was shown become moderator seats now.
            for seat in peer.seats.values():
                if self._covers(claims, seat.room):
                    seat.moderator = True
        # The reply tells the client what the token covers (protocol §7.4), so a client
        # can show staff which queues and rooms they may act on without decoding it.
        self.hub.reply(
            peer,
            m.Authed(
                id=req.id,
                role=claims.role,
                expires=claims.expires,
                queues=claims.queues,
                rooms=claims.rooms,
            ),
        )

    # ---------------------------------------------------------------- checks

    @staticmethod
    def claims(peer: Peer) -> tuple[Claims, ...]:
        value = peer.claims
        return value if isinstance(value, tuple) else ()

    def require(
        self,
        peer: Peer,
        now: float,
        roles: Iterable[str],
        covers: Callable[[Claims], bool] | None = None,
    ) -> Claims:
        """A live claim of one of ``roles`` that ``covers`` the target, or a typed error."""
        held = self.claims(peer)
        if not held:
            fail(ErrorCode.UNAUTHORIZED)
        wanted = tuple(roles)
        of_role = [c for c in held if c.role in wanted]
        if not of_role:
            fail(ErrorCode.FORBIDDEN, f"this needs a {' or '.join(wanted)} token")
        wall = self.clock.wall(now)
        live = [c for c in of_role if c.valid_at(wall)]
        if not live:
            fail(ErrorCode.TOKEN_EXPIRED)
        if covers is not None:
            live = [c for c in live if covers(c)]
            if not live:
                fail(ErrorCode.FORBIDDEN, "your token does not cover this queue or room")
        return live[0]

    def require_staff(self, peer: Peer, queue: str, now: float) -> Claims:
        """Staff on ``queue`` (duty, take_next)."""
        return self.require(peer, now, ("staff",), lambda c: c.covers_queue(queue))

    def is_staff(self, peer: Peer, queue: str, now: float) -> bool:
        """Whether ``peer`` holds a live staff token covering ``queue`` (no error)."""
        wall = self.clock.wall(now)
        return any(
            c.role == "staff" and c.valid_at(wall) and c.covers_queue(queue)
            for c in self.claims(peer)
        )

    def _covers(self, claims: Claims, room: Room) -> bool:
        return room.kind == "group" and claims.covers_room(room.code, self.room_name(room.code))

    def moderator_seat(self, peer: Peer, room_code: str, now: float) -> Seat:
        """The peer's seat in a group room it may moderate (or the typed refusal)."""
        self.require(peer, now, ("moderator",))
        room = self.hub.find_room(room_code)
        self.require(peer, now, ("moderator",), lambda c: self._covers(c, room))
        seat = self.hub.seat_of(peer, room.code)
        seat.moderator = True
        return seat

    def moderates(self, seat: Seat) -> bool:
        """Whether ``seat`` holds moderator power *now*.

        Derived at the moment of use from the live claims of the seat's current
        connection, never from a stored flag: a seat whose token expired, or that was
        resumed on a connection that has not sent a fresh ``auth`` covering the room,
        is an ordinary member (its messages are pre-moderated, it gets no ``pending``
        or ``crisis_alert``, a live moderator may mute or remove it). A held seat (no
        connection) moderates nothing until it resumes and authenticates. Cheap: at
        most ``MAX_CLAIMS`` claims are looked at.
        """
        peer = seat.peer
        return peer is not None and self.is_moderator_for(peer, seat.room.code)

    def live_moderators(self, room: Room) -> list[Seat]:
        """Seats of ``room`` that hold moderator power now (see ``moderates``)."""
        return [s for s in room.seats.values() if s.peer is not None and self.moderates(s)]

    def is_moderator_for(self, peer: Peer, room_code: str | None) -> bool:
        """Hub hook: may ``peer`` moderate ``room_code`` (None: create listed rooms)?

        Creating listed or pre-moderated rooms needs a moderator token for all rooms
        (``*``); a room-scoped token moderates only the rooms it names.
        """
        if room_code is not None:
            room = self.hub.rooms.get(room_code)
            if room is not None and room.kind != "group":
                return False
        wall = self.clock.wall(self.clock.latest)
        for c in self.claims(peer):
            if c.role != "moderator" or not c.valid_at(wall):
                continue
            if room_code is None:
                if c.covers_room():
                    return True
            elif c.covers_room(room_code, self.room_name(room_code)):
                return True
        return False
