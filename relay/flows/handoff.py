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
charged to "its" invite; instead it is charged to every live invite it *could* have
matched. Live invites are kept in buckets by the code's number part (1..99) — the
number is part of the guess, so a guess can only ever match invites in its own bucket.
Each bucket keeps a monotonically increasing count of wrong guesses; an invite records
the count when it was created and is locked once ``count - base`` reaches the maximum.
Every wrong guess that could have hit a code is therefore counted against it, whoever
sent it and however many connections guess at once (the hub handles one request at a
time, so the check and the increment are one atomic step). A locked code answers
``HANDOFF_CODE_LOCKED`` to whoever then presents it, so the staff member learns to issue
a new one; every other guess answers ``HANDOFF_CODE_INVALID``, which says nothing about
which codes exist. Bucketing also limits the collateral damage of one responder's typo
to the (about 1 in 99) invites that share its number.

Only connections holding a responder or staff token may guess at all, and
``handoff_accept`` is behind the proof-of-work gate.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from protocol import codes
from protocol import messages as m
from protocol.errors import CodeFormatError, ErrorCode

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
    bucket: int
    base: int  #: the bucket's wrong-guess count when this invite was made
    locked: bool = False


@dataclass(eq=False, slots=True)
class Bucket:
    """Live invites whose code starts with the same number, and wrong guesses at them."""

    wrong: int = 0
    invites: dict[str, Invite] = field(default_factory=dict)


def bucket_of(code: str) -> int:
    """The number part of a canonical spoken code."""
    return int(code.split("-", 1)[0])


class Handoffs:
    """Live handoff invites of the relay."""

    def __init__(self, hub: Hub, auth: Auth) -> None:
        self.hub = hub
        self.auth = auth
        self.buckets: dict[int, Bucket] = {}
        self.by_room: dict[Room, Invite] = {}
        self.order: deque[Invite] = deque()  #: by expiry (the TTL is constant)

    def live(self) -> int:
        """Invites not yet used or expired (locked ones included)."""
        return len(self.by_room)

    # ---------------------------------------------------------------- state

    def _add(self, invite: Invite) -> None:
        bucket = self.buckets.setdefault(invite.bucket, Bucket())
        invite.base = bucket.wrong
        bucket.invites[invite.code] = invite
        self.by_room[invite.room] = invite
        self.order.append(invite)

    def _remove(self, invite: Invite) -> None:
        bucket = self.buckets.get(invite.bucket)
        if bucket is not None and bucket.invites.get(invite.code) is invite:
            del bucket.invites[invite.code]
            if not bucket.invites:
                # Nothing left to protect: the count can start again from zero.
                del self.buckets[invite.bucket]
        if self.by_room.get(invite.room) is invite:
            del self.by_room[invite.room]

    def _wrong_guess(self, number: int) -> None:
        bucket = self.buckets.get(number)
        if bucket is None:
            return
        bucket.wrong += 1
        for invite in bucket.invites.values():
            if bucket.wrong - invite.base >= MAX_WRONG:
                invite.locked = True

    def _new_code(self) -> str:
        while True:
            code = codes.new_spoken_code()
            bucket = self.buckets.get(bucket_of(code))
            if bucket is None or code not in bucket.invites:
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
        self._add(Invite(code=code, room=room, expires=now + TTL, bucket=bucket_of(code), base=0))
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
        bucket = self.buckets.get(bucket_of(code))
        invite = bucket.invites.get(code) if bucket is not None else None
        if invite is None:
            self._wrong_guess(bucket_of(code))
            fail(ErrorCode.HANDOFF_CODE_INVALID)
            return
        if invite.expires <= now:
            self._remove(invite)
            fail(ErrorCode.HANDOFF_CODE_INVALID)
        if invite.locked:
            fail(ErrorCode.HANDOFF_CODE_LOCKED)
        seat = self.hub.add_seat(peer, invite.room, now, role="responder", over_cap=True)
        self._remove(invite)
        self.hub.reply(peer, m.Joined(id=req.id, seat=self.hub.seat_view(seat, seat.join_seq)))

    # ------------------------------------------------------------- lifecycle

    def tick(self, now: float) -> None:
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
