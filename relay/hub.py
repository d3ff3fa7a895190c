"""The relay's state and logic as one synchronous object: no I/O, time passed in.

The Trio shell feeds the hub decoded requests (``handle``), connection losses
(``disconnect``) and the passing of time (``handle_timers`` whenever ``next_deadline``
has come); the hub answers by appending ``(peer, message)`` pairs to ``out``, which the
shell encodes, encrypts and queues. Nothing here awaits, so one request is handled
atomically and the whole room logic can be tested without a network.

Flows beyond plain rooms (intake queues, handoff, moderation, schedules, crisis) are one
``Extension`` (``relay.extension``) the hub is built with: every hook the hub calls is
a method of that interface, named where it is called.
"""

from __future__ import annotations

import logging
import secrets
from collections import deque
from collections.abc import Callable
from typing import Any

from haven.protocol import codes, pow
from haven.protocol import messages as m
from haven.protocol.errors import CodeFormatError, ErrorCode, HavenError, RequestError

from .aliases import new_alias
from .budget import ROOM_BYTES, SEAT_BYTES, MemoryBudget
from .config import Config
from .extension import Extension, Handler, PlainRooms
from .limits import TokenBucket
from .rooms import EVENT_OVERHEAD, Room, Seat, event_bytes
from .timers import Deadlines

log = logging.getLogger("haven.hub")

#: Seconds a request refused with RELAY_BUSY is told to wait.
BUSY_RETRY_AFTER = 5
#: Bytes of ring events queued for a catching-up connection per refill (the shell
#: refills whenever the connection's socket has drained).
REFILL_BYTES = 128 * 1024
#: Rate-limited frames a connection may send (refilled at ``STRIKE_REFILL_PER_S``)
#: before it is closed with 4400: it keeps sending although told to wait.
MAX_STRIKES = 50
STRIKE_REFILL_PER_S = 1.0
#: Most directory entries in one reply (each entry is ~15 codec items; 2048 allowed).
MAX_DIRECTORY = 100
#: Coarse member-count buckets shown in the directory, so exact counts do not leak.
MEMBER_BUCKETS = (0, 1, 5, 10, 25, 50, 100)


def bucket_members(n: int) -> int:
    """Round ``n`` down to the nearest directory bucket."""
    out = 0
    for b in MEMBER_BUCKETS:
        if n >= b:
            out = b
    return out


class Peer:
    """One connection as the core sees it: its seats, auth claims and rate limit.

    ``sink`` is the shell's handle for delivering to this peer; the core never uses it.
    """

    __slots__ = (
        "bucket", "catching_up", "claims", "closed", "congested", "last_id", "pow_seed",
        "refusals", "seats", "sink", "tickets",
    )  # fmt: skip

    def __init__(
        self, config: Config, now: float, sink: Any = None, pow_seed: bytes = b""
    ) -> None:
        self.seats: dict[str, Seat] = {}  #: room code -> seat
        self.tickets: dict[str, Any] = {}  #: queue name -> place in line (flows)
        self.claims: Any = None  #: verified token claims (flows)
        self.last_id = 0
        #: Budget of rate-limit refusals before the connection is closed (``Hub.charge``).
        self.refusals: TokenBucket | None = None
        self.bucket = TokenBucket(config.rate_per_s, config.rate_burst, now)
        self.sink = sink
        self.closed = False
        #: Set by the shell while this connection's unsent bytes are over the low-water
        #: mark: new room events are then not pushed but pulled from the ring later.
        self.congested = False
        #: Some seat of this peer is catching up (``Seat.behind``): refill on drain.
        self.catching_up = False
        #: Random per-connection seed of the proof-of-work challenge (see protocol.pow).
        self.pow_seed = pow_seed or secrets.token_bytes(32)


def fail(code: ErrorCode, message: str | None = None, retry_after: float | None = None) -> None:
    """Raise the typed error a request handler refuses with."""
    raise RequestError(message, code=code, retry_after=retry_after)


class Hub:
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

    # ------------------------------------------------------------ connection life

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

    def admit(self, cost: int) -> None:
        """Refuse new state of about ``cost`` bytes near the memory budget (502)."""
        if not self.memory.admits(cost):
            fail(ErrorCode.RELAY_BUSY, retry_after=BUSY_RETRY_AFTER)

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
        for key in self.timers.pop_due(now):
            if isinstance(key, Room):
                self._room_timer(key, now)
            elif key in self.held:
                self.release(key, "left")
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

    # ------------------------------------------------------------------- helpers

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

    def _presence(self, seat: Seat, what: str) -> None:
        room = seat.room
        seq = room.next_seq()
        event = m.Presence(
            room=room.code, seq=seq, alias=seat.alias, event=what, members=room.members
        )
        self.broadcast(room, event, seq, exclude=seat)

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

    # ------------------------------------------------------------- room life

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
            token=codes.new_token(),
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
        self.forget_tokens(seat)
        self.held.discard(seat)
        self.timers.cancel(seat)
        if seat.peer is not None:
            seat.peer.seats.pop(room.code, None)
            seat.peer = None
        for entry in [e for e in room.pending.values() if e.author is seat]:
            del room.pending[entry.item]
        if not room.seats:
            self.rooms_closed["empty"] += 1
            self.drop_room(room)
        else:
            self._presence(seat, what)

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
            self.forget_tokens(seat)
            self.held.discard(seat)
            self.timers.cancel(seat)
            if seat.peer is not None:
                seat.peer.seats.pop(room.code, None)
                seat.peer = None
            seat.missed = None
        room.seats.clear()
        room.clear_ring()
        room.pending.clear()
        room.removed_tokens.clear()
        self.rooms.pop(room.code, None)
        self.timers.cancel(room)
        self.ext.on_room_end(room)

    # ------------------------------------------------------------------ handlers

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

    def is_moderator_for(self, peer: Peer, room_code: str | None) -> bool:
        """Whether the peer's token lets it moderate ``room_code`` now (the extension
        decides; the plain relay has no moderators)."""
        return self.ext.is_moderator_for(peer, room_code, self.latest)

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
        seat.token = codes.new_token()
        self.tokens[seat.token] = seat

    def forget_tokens(self, seat: Seat) -> None:
        """Drop every token that leads to ``seat`` (it is released or its room ended)."""
        self.tokens.pop(seat.token, None)
        if seat.prev_token is not None:
            self.tokens.pop(seat.prev_token, None)

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
