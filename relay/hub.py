"""The relay's state and logic as one synchronous object: no I/O, time passed in.

The Trio shell feeds the hub decoded requests (``handle``), connection losses
(``disconnect``) and the passing of time (``handle_timers`` whenever ``next_deadline``
has come); the hub answers by appending ``(peer, message)`` pairs to ``out``, which the
shell encodes, encrypts and queues. Nothing here awaits, so one request is handled
atomically and the whole room logic can be tested without a network.

Flows beyond plain rooms (intake queues, handoff, moderation, schedules, crisis) are one
``Extension`` (``relay.extension``) the hub is built with: every hook the hub calls is
a method of that interface, named where it is called.

The hub is split so each part reads in one sitting: ``relay.peer`` (a connection as the
hub sees it), ``relay.delivery`` (replies and events), ``relay.seats`` (room and seat
life, tokens), ``relay.requests`` (the plain-room requests) and, here, the hub itself:
construction and composition, connections, dispatch, errors and timers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from haven.protocol import messages as m
from haven.protocol.errors import ErrorCode, HavenError, RequestError

from .budget import MemoryBudget
from .config import Config
from .extension import Extension, Handler, PlainRooms
from .limits import TokenBucket
from .peer import (
    MAX_STRIKES,
    REFILL_BYTES,
    STRIKE_REFILL_PER_S,
    Peer,
    bucket_members,
    fail,
)
from .requests import RoomRequests
from .rooms import Room, Seat
from .timers import Deadlines

log = logging.getLogger("haven.hub")


class Hub(RoomRequests):
    """All rooms, seats and resume tokens of one relay process."""

    def __init__(
        self,
        config: Config,
        now: float,
        extend: Callable[[Hub], Extension] | None = None,
        on_error: Callable[[ErrorCode], None] | None = None,
    ) -> None:
        """``extend`` builds the flows on this hub (``PlainRooms`` without it);
        ``on_error`` sees the code of every error reply (metrics)."""
        self.config = config
        self.started = now
        #: The newest time the hub was given (for answers computed outside a request).
        self.latest = now
        self._on_error = on_error
        self.rooms: dict[str, Room] = {}
        self.tokens: dict[bytes, Any] = {}  #: resume token -> Seat (or a queue ticket)
        self.held: set[Seat] = set()  #: seats whose connection dropped
        self.token_prefix = b""
        self.on_room: Callable[[Room, bool], None] | None = None
        self.out: list[tuple[Peer, m.Message]] = []
        #: Connections the shell must close, with the reason (rule breakers, shedding).
        self.to_close: list[tuple[Peer, ErrorCode]] = []
        #: Client-held state against ``memory_budget_bytes`` (relay/budget.py).
        self.memory = MemoryBudget(config.memory_budget_bytes)
        self.peers = 0
        #: Current proof-of-work difficulty in bits (admission control adjusts it).
        self.pow_difficulty = 0
        #: Expensive requests seen (``check_pow``), for admission control's rate.
        self.expensive_requests = 0
        #: When held seats give up and rooms expire (relay/timers.py): no scans.
        self.timers: Deadlines[Seat | Room] = Deadlines()
        self.stats: dict[str, int] = {
            "messages": 0,
            "deliveries": 0,
            "resumes": 0,
            "resume_failed": 0,
            "rooms_created": 0,
        }
        #: Rooms ended, by reason (``m.CLOSE_REASONS``; "empty" when the last seat left).
        self.rooms_closed: dict[str, int] = {
            reason: 0 for reason in m.CLOSE_REASONS if reason != "taken_over"
        }
        self.handlers: dict[type[Any], Handler] = {
            m.Ping: self._ping,
            m.CreateRoom: self._create_room,
            m.Join: self._join,
            m.Leave: self._leave,
            m.Send: self._send,
            m.Typing: self._typing,
            m.Resume: self.resume_seat,
            m.Directory: self._directory,
        }
        #: The flows built on this hub: the only code the hub calls beyond its own.
        self.ext: Extension = extend(self) if extend is not None else PlainRooms(self)
        added = self.ext.handlers()
        clash = set(added) & set(self.handlers)
        if clash:
            raise ValueError(f"an extension may not replace the hub's own handlers: {clash}")
        self.handlers.update(added)
        #: Resume handlers for tokens that are not seats (queue places), by target type.
        self.resumers = dict(self.ext.resumers())

    def connect(self, now: float, sink: Any = None, pow_seed: bytes = b"") -> Peer:
        """Register a new connection after its handshake."""
        self.peers += 1
        return Peer(self.config, now, sink, pow_seed)

    def charge(self, peer: Peer, now: float) -> float | None:
        """Charge one inbound frame to the peer's token bucket: ``None``, or the wait.

        Every frame costs a token before any other work (a reused id, a malformed
        envelope, a ping, a refused request alike), so a connection's cost is capped by
        its rate limit. Refused frames are answered (so a client never waits for a reply
        that will not come) but draw on a second, small bucket: a connection that keeps
        sending while refused (more than ``MAX_STRIKES`` refusals, refilled at one per
        second) is breaking the rules and is closed with 4400.
        """
        wait = peer.bucket.take(now)
        if wait is None:
            return None
        if peer.refusals is None:
            peer.refusals = TokenBucket(STRIKE_REFILL_PER_S, MAX_STRIKES, now)
        if peer.refusals.take(now) is not None:
            self.to_close.append((peer, ErrorCode.RATE_LIMITED))
        return wait

    def handle(self, peer: Peer, req: m.Request, now: float) -> None:
        """Handle one request; its reply (or typed error) and events land in ``out``."""
        self.latest = now
        try:
            wait = self.charge(peer, now)
            if wait is not None:
                fail(ErrorCode.RATE_LIMITED, retry_after=wait)
            if req.id <= peer.last_id:
                fail(ErrorCode.BAD_REQUEST_ID)
            peer.last_id = req.id
            handler = self.handlers.get(type(req))
            if handler is None:
                fail(ErrorCode.UNEXPECTED_MESSAGE, "this relay does not offer that request")
            else:
                handler(peer, req, now)
        except HavenError as exc:
            self.error(peer, req.id, exc)
        except Exception:
            # A bug must cost one request, never the relay. The traceback goes through the
            # privacy filter (relay/logs.py); only the request's type is named here.
            log.exception("request handler failed: %s", type(req).__name__)
            self.error(peer, req.id, RequestError(code=ErrorCode.INTERNAL))

    def error(self, peer: Peer, request_id: int, exc: HavenError) -> None:
        """Queue a typed error reply for ``peer``."""
        if self._on_error is not None:
            self._on_error(ErrorCode(exc.code))
        retry = None if exc.retry_after is None else max(1, round(exc.retry_after + 0.4999))
        error = m.Error(id=request_id, code=int(exc.code), message=exc.message, retry_after=retry)
        self.out.append((peer, error))

    def bad_request(self, peer: Peer, exc: HavenError, request_id: int, now: float) -> None:
        """Answer an envelope that did not decode; it costs a rate-limit token too."""
        wait = self.charge(peer, now)
        if wait is not None:
            exc = RequestError(code=ErrorCode.RATE_LIMITED, retry_after=wait)
        self.error(peer, request_id, exc)

    def disconnect(self, peer: Peer, now: float) -> None:
        """The connection is gone: hold its seats for the resume grace window."""
        if peer.closed:
            return
        peer.closed = True
        self.peers -= 1
        self.latest = max(self.latest, now)
        grace = self.config.resume_grace
        for seat in list(peer.seats.values()):
            seat.peer = None
            seat.behind = None  # a resume says where the client really is
            seat.away_since = now
            self.held.add(seat)
            self.timers.set(seat, now + grace)
            self._presence(seat, "away")
        peer.seats.clear()
        self.ext.on_disconnect(peer, now)

    # ------------------------------------------------------------------ timers

    def next_deadline(self) -> float | None:
        """When ``handle_timers`` must next run: a held seat's grace or a room's TTL ends,
        or a flow's timer is due (``None``: nothing is waiting)."""
        own = self.timers.next()
        theirs = self.ext.next_deadline()
        if own is None:
            return theirs
        return own if theirs is None else min(own, theirs)

    def handle_timers(self, now: float) -> None:
        """Release held seats past their grace, end rooms past their TTLs, run the
        flows' due timers. Only what is due is touched: nothing is scanned."""
        self.latest = max(self.latest, now)
        due = self.timers.pop_due(now)
        # Held seats before rooms, as the old scan did: a room whose last member's grace
        # ended in the same pass ends "empty" after its members heard "left".
        for key in due:
            if not isinstance(key, Room) and key in self.held:
                self.release(key, "left")
        for key in due:
            if isinstance(key, Room):
                self._room_timer(key, now)
        if (theirs := self.ext.next_deadline()) is not None and theirs <= now:
            self.ext.on_timer(now)

    def _room_timer(self, room: Room, now: float) -> None:
        """A room's TTL timer fired: end it, or (active since) wait for the new deadline.

        Sends move ``last_activity`` without touching the timer (the hot path stays
        free of heap work); the timer finds out here and sets itself again.
        """
        if self.rooms.get(room.code) is not room:
            return
        due = min(room.created + room.hard_ttl, room.last_activity + room.idle_ttl)
        if due > now:
            self.timers.set(room, due)
        else:
            self.close_room(room, "expired")


__all__ = [
    "MAX_STRIKES", "REFILL_BYTES", "Handler", "Hub", "Peer", "bucket_members", "fail",
]  # fmt: skip
