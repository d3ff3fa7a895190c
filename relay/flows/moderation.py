"""Group-room moderation: pre-moderation, mute, remove, lock, close, announcements.

In a *pre-moderated* room a peer's ``send`` is held (``hub.hold_for_moderation``): the
author gets ``sent`` with an item number, the room's moderators get ``pending``, and a
moderator then

* ``approve``s it — delivered to everyone, the author included (that is how the author
  learns it went out);
* ``edit``s it — delivered with the new body and ``edited = true``;
* ``deny``s it — only the author is told (``denied``, with the optional reason).

Pending items are bounded per room and per author and expire after ``pending_ttl``
(the author is then told, as a ``denied`` with reason "expired"). Every decision and
every other moderation request is authorized by ``Auth.moderator_seat``: a live
moderator token whose scope covers the room, and a seat in it.

A removed seat is gone for good: its resume token answers ``REMOVED`` (not just
"unknown") for the grace window, and the same connection cannot join the room again.
People are anonymous, so a new connection can; moderators can lock the room.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from haven.protocol import messages as m
from haven.protocol.errors import ErrorCode

from ..hub import Hub, Peer, fail
from ..rooms import EVENT_OVERHEAD, PendingEntry, Room, Seat
from ..timers import Deadlines
from .auth import Auth
from .settings import FlowSettings

EXPIRED_REASON = "expired: no moderator decided in time"
#: Bytes of bodies (plus per-item overhead) one ``pending_items`` reply may carry, so
#: that it always fits one envelope (``codec.MAX_ENVELOPE`` is 65,517).
PENDING_REPLY_BUDGET = 60_000
PENDING_ITEM_OVERHEAD = 64


@dataclass(eq=False, slots=True)
class RemovedSeat:
    """What a removed seat's resume token points to until the grace window ends."""

    room: Room
    token: bytes
    since: float


class Moderation:
    """Moderation requests and the pre-moderation hook."""

    def __init__(
        self,
        hub: Hub,
        settings: FlowSettings,
        auth: Auth,
        before_close: Callable[[Room, float], None] | None = None,
    ) -> None:
        self.hub = hub
        self.auth = auth
        self.limits = settings.moderation
        #: Rooms with held messages, due when their oldest held message expires.
        self.with_pending: Deadlines[Room] = Deadlines()
        self.removed_tokens: dict[bytes, RemovedSeat] = {}
        self.removed_peers: dict[Room, set[Peer]] = {}
        #: Called before a moderator closes a room (schedules keep it closed).
        self.before_close = before_close

    # ------------------------------------------------------------ pre-moderation

    def hold_for_moderation(self, seat: Seat, body: bytes, now: float) -> int:
        """Hub hook: hold a peer's message for the moderators; returns its item number."""
        room = seat.room
        limits = self.limits
        self._expire_room(room, now)
        self.hub.admit(EVENT_OVERHEAD + len(body))
        if len(room.pending) >= limits.max_pending:
            oldest = min(e.expires for e in room.pending.values())
            fail(ErrorCode.PENDING_FULL, retry_after=max(1.0, oldest - now))
        mine = [e for e in room.pending.values() if e.author is seat]
        if len(mine) >= limits.max_pending_per_author:
            oldest = min(e.expires for e in mine)
            fail(
                ErrorCode.PENDING_FULL,
                "wait for a moderator to decide on your earlier messages",
                retry_after=max(1.0, oldest - now),
            )
        item = room.next_item
        room.next_item += 1
        room.pending[item] = PendingEntry(
            item=item, author=seat, body=body, expires=now + limits.pending_ttl
        )
        if room not in self.with_pending:
            self.with_pending.set(room, now + limits.pending_ttl)
        event = m.Pending(
            room=room.code, item=m.PendingItem(item=item, alias=seat.alias, body=body)
        )
        # Only seats with a live moderator token now; with none live the item waits
        # in the room (bounded, expires) for ``pending_list`` by one who authenticates.
        for moderator in self.auth.live_moderators(room):
            self.hub.private(moderator, event)
        return item

    def _entry(self, room: Room, item: int, now: float) -> PendingEntry:
        self._expire_room(room, now)
        entry = room.pending.pop(item, None)
        if entry is None:
            fail(ErrorCode.ITEM_NOT_FOUND)
        assert entry is not None
        return entry

    def _deliver(self, room: Room, entry: PendingEntry, body: bytes, edited: bool) -> None:
        seq = room.next_seq()
        event = m.Deliver(
            room=room.code, seq=seq, sender=entry.author.alias, body=body, edited=edited
        )
        self.hub.broadcast(room, event, seq, exclude=None)

    def pending_list(self, peer: Peer, req: m.PendingList, now: float) -> None:
        room = self.auth.moderator_seat(peer, req.room, now).room
        self._expire_room(room, now)
        # Oldest first, as many as fit one envelope (bodies may be up to max_body_bytes
        # each); ``more`` says the rest waits for a decision on these.
        items: list[m.PendingItem] = []
        budget = PENDING_REPLY_BUDGET
        for entry in room.pending.values():
            cost = len(entry.body) + PENDING_ITEM_OVERHEAD
            if cost > budget or len(items) == m.MAX_LIST_LEN:
                break
            budget -= cost
            items.append(m.PendingItem(item=entry.item, alias=entry.author.alias, body=entry.body))
        more = len(items) < len(room.pending)
        self.hub.reply(
            peer, m.PendingItems(id=req.id, room=room.code, items=tuple(items), more=more)
        )

    def approve(self, peer: Peer, req: m.Approve, now: float) -> None:
        room = self.auth.moderator_seat(peer, req.room, now).room
        entry = self._entry(room, req.item, now)
        self._deliver(room, entry, entry.body, edited=False)
        self.hub.reply(peer, m.Ok(id=req.id))

    def edit(self, peer: Peer, req: m.Edit, now: float) -> None:
        room = self.auth.moderator_seat(peer, req.room, now).room
        self._check_body(req.body)
        entry = self._entry(room, req.item, now)
        self._deliver(room, entry, req.body, edited=True)
        self.hub.reply(peer, m.Ok(id=req.id))

    def deny(self, peer: Peer, req: m.Deny, now: float) -> None:
        room = self.auth.moderator_seat(peer, req.room, now).room
        entry = self._entry(room, req.item, now)
        self.hub.private(entry.author, m.Denied(room=room.code, item=entry.item, reason=req.reason))
        self.hub.reply(peer, m.Ok(id=req.id))

    def _check_body(self, body: bytes) -> None:
        limit = self.hub.config.max_body_bytes
        if len(body) > limit:
            fail(ErrorCode.TOO_LARGE, f"bodies may be at most {limit} bytes")

    def _expire_room(self, room: Room, now: float) -> None:
        expired = [e for e in room.pending.values() if e.expires <= now]
        for entry in expired:
            del room.pending[entry.item]
            self.hub.private(
                entry.author, m.Denied(room=room.code, item=entry.item, reason=EXPIRED_REASON)
            )
        if room.pending:
            self.with_pending.set(room, min(e.expires for e in room.pending.values()))
        else:
            self.with_pending.cancel(room)

    # ------------------------------------------------------------ members

    def _target(self, room: Room, alias: str) -> Seat:
        target = room.seats.get(alias)
        if target is None:
            fail(ErrorCode.MEMBER_NOT_FOUND)
        assert target is not None
        if self.auth.moderates(target):
            fail(ErrorCode.FORBIDDEN, "moderators cannot be muted or removed")
        return target

    def _moderation_event(self, room: Room, action: str, alias: str | None) -> None:
        seq = room.next_seq()
        event = m.Moderation(room=room.code, seq=seq, action=action, alias=alias)
        self.hub.broadcast(room, event, seq, exclude=None)

    def mute(self, peer: Peer, req: m.Mute, now: float) -> None:
        room = self.auth.moderator_seat(peer, req.room, now).room
        target = self._target(room, req.alias)
        if target.muted != req.muted:
            target.muted = req.muted
            self._moderation_event(room, "muted" if req.muted else "unmuted", target.alias)
        self.hub.reply(peer, m.Ok(id=req.id))

    def remove(self, peer: Peer, req: m.Remove, now: float) -> None:
        room = self.auth.moderator_seat(peer, req.room, now).room
        target = self._target(room, req.alias)
        if target.peer is not None:
            self.removed_peers.setdefault(room, set()).add(target.peer)
            self.hub.reply(target.peer, m.Removed(room=room.code))
        tokens = [t for t in (target.token, target.prev_token) if t is not None]
        self.hub.release(target, "removed")
        if room.code in self.hub.rooms:
            for token in tokens:
                marker = RemovedSeat(room=room, token=token, since=now)
                self.removed_tokens[token] = marker
                self.hub.tokens[token] = marker
        self.hub.reply(peer, m.Ok(id=req.id))

    def resume_removed(self, peer: Peer, req: m.Resume, marker: RemovedSeat, now: float) -> None:
        """Hub resumer for a removed seat's token: a typed ``REMOVED``."""
        fail(ErrorCode.REMOVED)

    def check_join(self, peer: Peer, room: Room, now: float) -> None:
        """Part of the hub's join check: a removed connection cannot come back."""
        removed = self.removed_peers.get(room)
        if removed is not None and peer in removed:
            fail(ErrorCode.REMOVED)

    # ------------------------------------------------------------ room-wide

    def lock(self, peer: Peer, req: m.Lock, now: float) -> None:
        room = self.auth.moderator_seat(peer, req.room, now).room
        if room.locked != req.locked:
            room.locked = req.locked
            self._moderation_event(room, "locked" if req.locked else "unlocked", None)
        self.hub.reply(peer, m.Ok(id=req.id))

    def announce(self, peer: Peer, req: m.Announce, now: float) -> None:
        seat = self.auth.moderator_seat(peer, req.room, now)
        room = seat.room
        self._check_body(req.body)
        room.last_activity = now
        seq = room.next_seq()
        self.hub.broadcast(room, m.Announcement(room=room.code, seq=seq, body=req.body), seq, seat)
        self.hub.reply(peer, m.Sent(id=req.id, room=room.code, seq=seq))

    def close_room(self, peer: Peer, req: m.CloseRoom, now: float) -> None:
        """Moderators close group rooms; the staff seat closes its direct room.

        The caller's role is checked before the room is looked up, so a caller with no
        staff or moderator token gets the same refusal for a live and an ended room
        (``join`` is the one request that tells a code holder whether a room lives).
        """
        self.auth.require(peer, now, ("staff", "moderator"))
        room = self.hub.find_room(req.room)
        if room.kind == "direct":
            self.auth.require(peer, now, ("staff",))
            seat = self.hub.seat_of(peer, room.code)
            if seat.role != "staff":
                fail(ErrorCode.FORBIDDEN, "only the staff seat can close a direct room")
        else:
            self.auth.moderator_seat(peer, req.room, now)
        if self.before_close is not None:
            self.before_close(room, now)
        self.hub.close_room(room, "closed")
        self.hub.reply(peer, m.Ok(id=req.id))

    # ------------------------------------------------------------ lifecycle

    def next_deadline(self) -> float | None:
        """When a held message expires, or a removed member's token is forgotten."""
        pending = self.with_pending.next()
        for removed in self.removed_tokens.values():  # oldest first
            forget = removed.since + self.hub.config.resume_grace
            return forget if pending is None else min(pending, forget)
        return pending

    def on_timer(self, now: float) -> None:
        for room in self.with_pending.pop_due(now):
            self._expire_room(room, now)
        grace = self.hub.config.resume_grace
        tokens = self.removed_tokens
        while tokens:
            token, removed = next(iter(tokens.items()))
            if now - removed.since < grace:
                break
            del tokens[token]
            if isinstance(self.hub.tokens.get(token), RemovedSeat):
                del self.hub.tokens[token]

    def on_disconnect(self, peer: Peer, now: float) -> None:
        for peers in self.removed_peers.values():
            peers.discard(peer)

    def on_room_end(self, room: Room) -> None:
        self.with_pending.cancel(room)
        self.removed_peers.pop(room, None)
        for token in [t for t, r in self.removed_tokens.items() if r.room is room]:
            del self.removed_tokens[token]
            if isinstance(self.hub.tokens.get(token), RemovedSeat):
                del self.hub.tokens[token]
