"""Warm handoff: a spoken one-time code brings a responder into a direct room.

Staff in a direct room ask for an invite (``handoff_invite``) and read the code
(``protocol.codes.new_spoken_code``, e.g. ``42-bison-molecule-tiger``) to a responder
over the phone. The responder (token role ``responder`` or ``staff``) sends it with
``handoff_accept`` and gets a third seat: a direct room admits one seat over its cap of
two for this. Staff then leave with an ordinary ``leave``; the visitor sees each step
as presence events and never reconnects.

Guessing bound
==============

A spoken code has about 30.6 bits, so it must not be guessable: it lives
``SPOKEN_CODE_TTL_S`` seconds and is invalidated after ``SPOKEN_CODE_MAX_ATTEMPTS``
wrong attempts *across all callers*. A wrong guess names no invite, so it cannot be
charged to "its" invite; instead it is charged to every live invite, whatever part of
the code it varies. (Charging it only to invites sharing its number part let a guesser
spread guesses over the 99 numbers and get 5 tries per number, 495 in all: about 100
times the documented odds.) The relay keeps one monotonically increasing count of wrong
guesses; an invite records the count when it was created and is locked once
``count - base`` reaches the maximum. Every wrong guess is therefore counted against
every code that was live when it was made, whoever sent it and however many connections
guess at once (the hub handles one request at a time, so the check and the increment are
one atomic step), and a code is hit with probability at most 5 / SPOKEN_CODE_SPACE.
A locked code answers ``HANDOFF_CODE_LOCKED`` to whoever then presents it, so the staff
member learns to issue a new one; every other guess answers ``HANDOFF_CODE_INVALID``,
which says nothing about which codes exist. The price is collateral: five mistyped codes
relay-wide within a code's lifetime lock it, and staff issue a new one (a cheap,
visible recovery; guessing is the harm that matters).

Only connections holding a responder or staff token may guess at all, and
``handoff_accept`` is behind the proof-of-work gate.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from haven.protocol import codes
from haven.protocol import messages as m
from haven.protocol.errors import CodeFormatError, ErrorCode

from ..hub import Hub, Peer, fail
from ..rooms import Room
from .auth import Auth

TTL = float(codes.SPOKEN_CODE_TTL_S)
MAX_WRONG = codes.SPOKEN_CODE_MAX_ATTEMPTS


@dataclass(eq=False, slots=True)
class Invite:
    """One live spoken code for one direct room."""

    code: str
    room: Room
    expires: float
    base: int = 0  #: the relay's wrong-guess count when this invite was made


class Handoffs:
    """Live handoff invites of the relay."""

    def __init__(self, hub: Hub, auth: Auth) -> None:
        self.hub = hub
        self.auth = auth
        self.by_code: dict[str, Invite] = {}
        #: Wrong guesses ever made (monotonic); an invite is locked once
        #: ``wrong - invite.base`` reaches ``MAX_WRONG``.
        self.wrong = 0
        self.by_room: dict[Room, Invite] = {}
        self.order: deque[Invite] = deque()  #: by expiry (the TTL is constant)

    def live(self) -> int:
        """Invites not yet used or expired (locked ones included)."""
        return len(self.by_room)

    # ---------------------------------------------------------------- state

    def _add(self, invite: Invite) -> None:
        invite.base = self.wrong
        self.by_code[invite.code] = invite
        self.by_room[invite.room] = invite
        self.order.append(invite)

    def _remove(self, invite: Invite) -> None:
        if self.by_code.get(invite.code) is invite:
            del self.by_code[invite.code]
        if self.by_room.get(invite.room) is invite:
            del self.by_room[invite.room]

    def _locked(self, invite: Invite) -> bool:
        """Charged ``MAX_WRONG`` wrong guesses since it was made (O(1), no sweep)."""
        return self.wrong - invite.base >= MAX_WRONG

    def _new_code(self) -> str:
        while True:
            code = codes.new_spoken_code()
            if code not in self.by_code:
                return code

    # ------------------------------------------------------------- requests

    def invite(self, peer: Peer, req: m.HandoffInvite, now: float) -> None:
        self.auth.require(peer, now, ("staff",))
        seat = self.hub.seat_of(peer, req.room)
        room = seat.room
        if room.kind != "direct" or seat.role != "staff":
            fail(ErrorCode.FORBIDDEN, "only the staff seat of a direct room can invite")
        old = self.by_room.get(room)
        if old is not None:
            self._remove(old)  # one live code per room
        code = self._new_code()
        self._add(Invite(code=code, room=room, expires=now + TTL))
        self.hub.reply(
            peer, m.Handoff(id=req.id, room=room.code, code=code, expires_in=int(TTL))
        )

    def accept(self, peer: Peer, req: m.HandoffAccept, now: float) -> None:
        self.auth.require(peer, now, ("responder", "staff"))
        self.hub.check_pow(peer, req, now)
        try:
            code = codes.parse_spoken_code(req.code)
        except CodeFormatError as exc:
            # A malformed code cannot match any invite, so it is not a guess.
            fail(ErrorCode.BAD_CODE, exc.message)
            return
        invite = self.by_code.get(code)
        if invite is None:
            self.wrong += 1  # charged to every live invite at once (see module doc)
            fail(ErrorCode.HANDOFF_CODE_INVALID)
            return
        if invite.expires <= now:
            self._remove(invite)
            fail(ErrorCode.HANDOFF_CODE_INVALID)
        if self._locked(invite):
            fail(ErrorCode.HANDOFF_CODE_LOCKED)
        seat = self.hub.add_seat(peer, invite.room, now, role="responder", over_cap=True)
        self._remove(invite)
        self.hub.reply(peer, m.Joined(id=req.id, seat=self.hub.seat_view(seat, seat.join_seq)))

    # ------------------------------------------------------------- lifecycle

    def next_deadline(self) -> float | None:
        """When the oldest invite expires (invites are kept in expiry order)."""
        order = self.order
        # Drop used invites from the front so the deque stays bounded by live ones.
        while order and self.by_room.get(order[0].room) is not order[0]:
            order.popleft()
        return order[0].expires if order else None

    def on_timer(self, now: float) -> None:
        """Forget expired invites (oldest first; used ones are skipped)."""
        order = self.order
        while order and order[0].expires <= now:
            self._remove(order.popleft())
        # Drop used invites from the front so the deque stays bounded by live ones.
        while order and self.by_room.get(order[0].room) is not order[0]:
            order.popleft()

    def on_room_end(self, room: Room) -> None:
        invite = self.by_room.get(room)
        if invite is not None:
            self._remove(invite)
