"""One worker's share of the load: its rooms, their members, churn, and its ledger.

A room and all of its members live in one worker, so the worker's ``Accountant`` sees
every send and every receipt of the room and can account for loss exactly without
talking to other processes. The worker sends the parent only totals and encoded
histograms.

Timing is on Trio's clock (so tests run it under a mock clock); latency is measured on
``time.monotonic_ns`` stamped into each body, which is one clock for every process on
the host.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio

from haven.protocol import messages as m
from haven.protocol.errors import ErrorCode

from . import body, histo
from .accounting import Accountant, Receipt
from .wire import LoadClient, ReceiveHook, ReplyError, WireError, connect, reply_kind

KINDS = ("direct", "group", "premoderated")
#: Handshakes refused by admission control (4402) are retried this many times.
REFUSAL_RETRIES = 8
#: A create_room refused for its proof of work is retried (new challenge) this often.
POW_RETRIES = 3
#: Extra member slots a group room is created with, for churn visitors.
VISITOR_HEADROOM = 16
#: Member ids of churn visitors start here (room members use small ids).
VISITOR_BASE = 0x8000_0000


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """What to run (picklable: it is handed to worker processes)."""

    url: str
    key: bytes
    rooms: int = 10
    members: int = 2
    rate: float = 1.0  #: messages per second per member (0: connect and stay idle)
    size: int = 64  #: body bytes (at least the 16-byte stamp)
    ramp_up: float = 0.0  #: seconds over which rooms start, evenly spaced
    duration: float = 10.0  #: seconds of sending after the ramp-up
    kind: str = "group"
    churn_leave: float = 0.0  #: leaves per second per member (it rejoins after churn_pause)
    churn_join: float = 0.0  #: visitors per second per room (join, stay, leave)
    churn_drop: float = 0.0  #: forced disconnects (then resume) per second per member
    churn_pause: float = 1.0
    visitor_stay: float = 5.0
    settle: float = 10.0  #: longest wait after sending for outstanding deliveries
    connect_timeout: float = 10.0
    moderator_token: bytes | None = None
    timeline_interval: float = 1.0
    seed: int = 0

    def validate(self) -> None:
        """Refuse loads that cannot run, with a message saying why (``ValueError``)."""
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        if self.kind == "direct" and self.members != 2:
            raise ValueError("direct rooms have exactly 2 members (--members 2)")
        if self.kind == "direct" and self.churn_join:
            raise ValueError("direct rooms have no room for churn visitors (--churn-join)")
        if self.kind == "premoderated" and self.moderator_token is None:
            raise ValueError("pre-moderated rooms need a moderator token")
        if self.members < 1 or self.rooms < 0 or self.rate < 0 or self.duration < 0:
            raise ValueError("rooms, members, rate and duration must not be negative")
        if min(self.churn_leave, self.churn_join, self.churn_drop) < 0:
            raise ValueError("churn rates must not be negative")

    @property
    def stride(self) -> int:
        """Member ids reserved per room."""
        return self.members + 1


@dataclass(slots=True)
class WorkerResult:
    """What a worker hands back (picklable; the parent merges several)."""

    counts: dict[str, int]
    sent: int  #: sends the relay acknowledged (``sent`` replies)
    steady_sent: int  #: of which stamped after the ramp-up
    latency: bytes
    handshake: bytes
    timeline: dict[int, bytes]
    errors: dict[str, int]
    churn: dict[str, int]
    handshakes: int
    connect_start: float | None  #: time.monotonic() of the first initial connect
    connect_end: float | None  #: and of the last one finished
    send_start: float | None
    send_end: float | None
    members: int
    connections: int  #: initial connections (members and moderator bots)
    sends_behind: int = 0
    approvals: int = 0
    refusals: int = 0
    pow_solved: int = 0
    unnumbered: int = 0  #: approved pre-moderated messages nobody received (so no seq)
    extra: dict[str, Any] = field(default_factory=dict)


ProgressSink = Callable[[dict[str, Any]], None]


class _Member:
    """One member's seat in one room, across reconnects (forced drops) and rejoins."""

    __slots__ = ("alias", "conn", "id", "last_seq", "number", "present", "room", "token")

    def __init__(self, member_id: int) -> None:
        self.id = member_id
        self.conn: LoadClient | None = None
        self.room = ""
        self.alias = ""
        self.token = b""
        self.last_seq = 0
        self.number = 0
        self.present = False


class Worker:
    """Drives ``room_indices`` of ``spec`` and accounts for every delivery."""

    def __init__(
        self,
        spec: LoadSpec,
        room_indices: list[int],
        index: int = 0,
        *,
        progress: ProgressSink | None = None,
        receive_hook: ReceiveHook | None = None,
        start_monotonic: float | None = None,
    ) -> None:
        spec.validate()
        self.spec = spec
        self.room_indices = room_indices
        self.index = index
        self.progress = progress
        self.receive_hook = receive_hook
        self.start_monotonic = start_monotonic
        self.rng = random.Random(spec.seed * 1_000_003 + index)
        self.acct = Accountant()
        self.latency = histo.new()
        self.handshake = histo.new()
        self.timeline: dict[int, Any] = {}
        self.errors: Counter[str] = Counter()
        self.churn: Counter[str] = Counter()
        self.handshakes = 0
        self.initial_connects = 0
        self.refusals = 0  #: handshakes refused with SERVER_FULL, then retried
        self.pow_solved = 0  #: create_room requests that needed a proof of work
        self.connect_start: float | None = None
        self.connect_end: float | None = None
        self.send_start: float | None = None
        self.send_end: float | None = None
        self.sent = 0
        self.steady_sent = 0  #: of which sent after the ramp-up
        self.members_up = 0
        self.sends_behind = 0
        self.approvals = 0
        self.numbered_approvals: set[tuple[str, int, int]] = set()
        self.approved: set[tuple[str, int, int]] = set()
        self.phase = "connecting"  #: until the run settles; see ``_phase``
        self._visitors = 0
        self._t0_ns = 0
        self._steady_ns = 0
        self._end = 0.0
        #: Set by ``stop_early`` (Ctrl-C): senders stop, the run settles and reports.
        self._stop: trio.Event | None = None
        self.stopped_early = False
        #: ``stop_early`` came before the run began (Ctrl-C during start-up): honoured
        #: as soon as the run starts, instead of being lost.
        self._stop_requested = False
        self._nursery: trio.Nursery | None = None
        self._conns: set[LoadClient] = set()

    # ---------------------------------------------------------------- the run

    async def run(self) -> WorkerResult:
        """Connect, load, settle, account; returns this worker's totals."""
        spec = self.spec
        if self.start_monotonic is not None:
            await trio.sleep(max(0.0, self.start_monotonic - time.monotonic()))
        self._stop = trio.Event()
        self._t0_ns = time.monotonic_ns()
        # Latency percentiles cover messages sent after the ramp-up (steady state); the
        # timeline and the loss accounting cover the whole run.
        self._steady_ns = self._t0_ns + int(spec.ramp_up * 1e9)
        start = trio.current_time()
        self._end = start + spec.ramp_up + spec.duration
        if self._stop_requested:
            self.stop_early()
        n = max(1, spec.rooms)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._report_progress)
            async with trio.open_nursery() as rooms:
                for room_index in self.room_indices:
                    at = start + spec.ramp_up * room_index / n
                    rooms.start_soon(self._room, room_index, at)
            self.phase = "settling"
            await self._settle()
            self.phase = "done"
            for conn in list(self._conns):
                conn.abort()
            nursery.cancel_scope.cancel()
        return self._result()

    def stop_early(self) -> None:
        """Stop sending now (the operator pressed Ctrl-C); what was measured is kept."""
        if self._stop is None:
            self._stop_requested = True
            return
        if self._stop.is_set():
            return
        self.stopped_early = True
        self._end = min(self._end, trio.current_time())
        self._stop.set()

    async def _until(self, deadline: float) -> None:
        """Sleep until ``deadline``, or until the run is stopped early."""
        assert self._stop is not None
        with trio.move_on_at(deadline):
            await self._stop.wait()

    async def _settle(self) -> None:
        """Wait until nothing is outstanding, or ``settle`` seconds: checks back off."""
        deadline = trio.current_time() + self.spec.settle
        wait = 0.05
        while self.acct.counts().lost and trio.current_time() < deadline:
            await trio.sleep(min(wait, max(0.0, deadline - trio.current_time())))
            wait = min(wait * 2, 1.0)

    async def _report_progress(self) -> None:
        while True:
            if self.progress is not None:
                self.progress(self.snapshot())
            await trio.sleep(0.5)

    def snapshot(self) -> dict[str, Any]:
        """Cheap running totals for the live display."""
        return {
            "worker": self.index,
            "phase": self._phase(),
            "members": self.members_up,
            "sent": self.sent,
            "receipts": self.acct.receipts,
            "errors": sum(self.errors.values()),
            "handshakes": self.handshakes,
            "drops": self.churn.get("drops", 0),
            "resumes": self.churn.get("resumes", 0),
            "p99_ms": (self.latency.get_value_at_percentile(99) / 1000
                       if self.latency.get_total_count() else 0.0),
        }

    def _phase(self) -> str:
        if self.phase != "connecting":
            return self.phase
        now = trio.current_time()
        if now < self._end - self.spec.duration:
            return "ramping up"
        return "sending" if now < self._end else "settling"

    def _result(self) -> WorkerResult:
        counts = self.acct.counts()
        unnumbered = len(self.approved - self.numbered_approvals)
        return WorkerResult(
            counts=counts.as_dict(),
            sent=self.sent,
            steady_sent=self.steady_sent,
            latency=histo.encode(self.latency),
            handshake=histo.encode(self.handshake),
            timeline={k: histo.encode(h) for k, h in self.timeline.items()},
            errors=dict(self.errors),
            churn=dict(self.churn),
            handshakes=self.handshakes,
            connect_start=self.connect_start,
            connect_end=self.connect_end,
            send_start=self.send_start,
            send_end=self.send_end,
            members=self.members_up,
            connections=self.initial_connects,
            sends_behind=self.sends_behind,
            approvals=self.approvals,
            refusals=self.refusals,
            pow_solved=self.pow_solved,
            unnumbered=unnumbered,
        )

    # ------------------------------------------------------------- connections

    async def _connect(self, initial: bool) -> LoadClient:
        assert self._nursery is not None
        began = time.monotonic()
        if initial and self.connect_start is None:
            self.connect_start = began
        attempt = 0
        while True:
            try:
                conn, seconds = await connect(
                    self.spec.url, self.spec.key, self._nursery, self.spec.connect_timeout
                )
                break
            except WireError as exc:
                if exc.kind != "SERVER_FULL" or attempt >= REFUSAL_RETRIES:
                    self.errors[exc.kind] += 1
                    raise
            # Admission control refused the handshake (rate cap): back off like a client.
            self.refusals += 1
            await trio.sleep(min(4.0, 0.25 * 2**attempt) * (0.5 + self.rng.random()))
            attempt += 1
        self.handshakes += 1
        histo.record_us(self.handshake, round(seconds * 1e6))
        if initial:
            self.connect_end = time.monotonic()
            self.initial_connects += 1
        conn.receive_hook = self.receive_hook
        self._conns.add(conn)
        return conn

    def _attach(self, member: _Member, conn: LoadClient) -> None:
        member.conn = conn
        conn.on_event = lambda c, msg: self._on_event(member, msg)

    # -------------------------------------------------------------------- rooms

    async def _room(self, room_index: int, at: float) -> None:
        """Set up one room (creator, members, moderator bot), then run its members."""
        spec = self.spec
        await trio.sleep_until(at)
        base = room_index * spec.stride
        members = [_Member(base + j) for j in range(spec.members)]
        moderator: tuple[LoadClient, trio.MemoryReceiveChannel[tuple[str, int]]] | None = None
        try:
            if spec.kind == "premoderated":
                code, bot, pending = await self._start_moderator()
                moderator = (bot, pending)
                first = 0
            else:
                code = await self._create(members[0])
                first = 1
            for member in members[first:]:
                await self._join(member, code, initial=True)
        except (WireError, ReplyError) as exc:
            if not isinstance(exc, WireError):  # WireErrors were counted where raised
                self.errors[reply_kind(exc)] += 1
            return
        if moderator is not None:
            # In the worker's nursery: the bot keeps approving through the settle phase.
            assert self._nursery is not None
            self._nursery.start_soon(self._approve_all, *moderator)
        async with trio.open_nursery() as nursery:
            for member in members:
                nursery.start_soon(self._member_loop, member, member is not members[0])
            if spec.churn_join:
                nursery.start_soon(self._visitors_loop, code)

    async def _create(self, member: _Member) -> str:
        spec = self.spec
        conn = await self._connect(initial=True)
        self._attach(member, conn)
        max_members = None if spec.kind == "direct" else spec.members + VISITOR_HEADROOM
        kind = "direct" if spec.kind == "direct" else "group"
        reply = await self._create_room(conn, kind=kind, max_members=max_members)
        self._seated(member, reply.seat)
        return reply.seat.room

    async def _join(self, member: _Member, code: str, *, initial: bool) -> None:
        conn = await self._connect(initial=initial)
        self._attach(member, conn)
        reply = await conn.request(lambda i: m.Join(id=i, room=code))
        assert isinstance(reply, m.Joined)
        self._seated(member, reply.seat)

    async def _create_room(self, conn: LoadClient, **fields: Any) -> m.Joined:
        """``create_room`` with a proof of work whenever the relay asks for one."""
        attempt = 0
        while True:
            request_id = conn.reserve_id()
            nonce = await conn.pow_for(request_id)
            if nonce is not None:
                self.pow_solved += 1
            try:
                reply = await conn.request(partial(_create, nonce, fields), request_id)
            except ReplyError as exc:
                retry = exc.error.code in (ErrorCode.POW_REQUIRED, ErrorCode.POW_INVALID)
                if not retry or attempt >= POW_RETRIES:
                    raise
                attempt += 1  # the relay sent the current challenge before refusing
                continue
            assert isinstance(reply, m.Joined)
            return reply

    def _seated(self, member: _Member, seat: m.Seat) -> None:
        member.room = seat.room
        member.alias = seat.alias
        member.token = seat.token
        member.last_seq = seat.seq
        member.present = True
        self.members_up += 1
        self.acct.seat(member.id, seat.room, seat.alias, seat.seq)

    # ------------------------------------------------------------------ events

    def _on_event(self, member: _Member, msg: m.Message) -> None:
        """Every pushed event of a member's connection (synchronous, on the hot path)."""
        if isinstance(msg, m.Deliver):
            if msg.seq > member.last_seq:
                member.last_seq = msg.seq
            stamp = body.read(msg.body)
            if stamp is not None and self.spec.kind == "premoderated":
                if stamp.member == member.id:
                    return  # the author's copy of its own approved message
                self._numbered(msg.room, msg.seq, stamp)
            receipt = self.acct.received(member.id, msg.room, msg.seq)
            if stamp is not None and receipt in (Receipt.FIRST, Receipt.REORDERED):
                now = time.monotonic_ns()
                micros = (now - stamp.sent_ns) // 1000
                if stamp.sent_ns >= self._steady_ns:
                    histo.record_us(self.latency, micros)
                slot = int((now - self._t0_ns) / 1e9 / self.spec.timeline_interval)
                hist = self.timeline.get(slot)
                if hist is None:
                    hist = self.timeline[slot] = histo.new(histo.TIMELINE_DIGITS)
                histo.record_us(hist, micros)
        elif isinstance(msg, m.Presence):
            if msg.seq > member.last_seq:
                member.last_seq = msg.seq
            if msg.event in ("left", "removed"):
                self.acct.ended(msg.room, msg.alias, msg.seq)
        elif isinstance(msg, m.Announcement | m.Moderation):
            if msg.seq > member.last_seq:
                member.last_seq = msg.seq
        elif isinstance(msg, m.RoomClosed):
            member.present = False
            self.errors["room_closed"] += 1
        elif isinstance(msg, m.Draining):
            self.errors["draining"] += 1
        elif isinstance(msg, m.Error):
            self.errors[reply_kind(ReplyError(msg))] += 1

    def _numbered(self, room: str, seq: int, stamp: body.Stamp) -> None:
        """A pre-moderated message got its room seq on approval: now it is owed."""
        self.acct.expect(room, seq, stamp.member)
        self.numbered_approvals.add((room, stamp.member, stamp.number))

    # ----------------------------------------------------------------- members

    def _next_churn(self, rate: float, now: float) -> float:
        return math.inf if rate <= 0 else now + self.rng.expovariate(rate)

    async def _member_loop(self, member: _Member, may_leave: bool) -> None:
        """Send at ``rate`` until the end, with forced drops and leaves as configured."""
        spec = self.spec
        now = trio.current_time()
        interval = 1.0 / spec.rate if spec.rate > 0 else math.inf
        next_send = now + self.rng.random() * interval if spec.rate > 0 else math.inf
        next_drop = self._next_churn(spec.churn_drop, now)
        next_leave = self._next_churn(spec.churn_leave if may_leave else 0.0, now)
        try:
            while member.present:
                due = min(next_send, next_drop, next_leave)
                if due >= self._end:
                    await self._until(self._end)
                    return
                await self._until(due)
                if due >= self._end:
                    return  # stopped early while waiting
                now = trio.current_time()
                if due == next_drop:
                    await self._drop_and_resume(member)
                    next_drop = self._next_churn(spec.churn_drop, trio.current_time())
                elif due == next_leave:
                    await self._leave_and_rejoin(member)
                    next_leave = self._next_churn(spec.churn_leave, trio.current_time())
                else:
                    await self._send(member)
                    next_send += interval
                    if next_send < trio.current_time() - interval:
                        # Open loop, but never a burst to catch up: count the skip.
                        self.sends_behind += 1
                        next_send = trio.current_time()
        except (WireError, ReplyError) as exc:
            self.errors["connection_lost" if isinstance(exc, WireError) else reply_kind(exc)] += 1
            member.present = False

    async def _send(self, member: _Member) -> None:
        conn = member.conn
        assert conn is not None
        member.number += 1
        number = member.number
        size = self.spec.size
        if self.send_start is None:
            self.send_start = time.monotonic()

        stamped = [0]

        def build(i: int) -> m.Request:
            stamped[0] = time.monotonic_ns()
            return m.Send(id=i, room=member.room,
                          body=body.make(member.id, number, stamped[0], size))  # fmt: skip

        try:
            reply = await conn.request(build)
        except ReplyError as exc:
            self.errors[reply_kind(exc)] += 1
            return
        except WireError:
            # Not forced by us: the connection broke. Count it, then try to resume.
            self.errors["connection_lost"] += 1
            await self._resume(member)
            return
        self.send_end = time.monotonic()
        assert isinstance(reply, m.Sent)
        self.sent += 1
        if stamped[0] >= self._steady_ns:
            self.steady_sent += 1
        if reply.seq is not None:
            self.acct.expect(member.room, reply.seq, member.id)

    async def _drop_and_resume(self, member: _Member) -> None:
        """Churn: hang up without a close frame, reconnect, resume the seat."""
        conn = member.conn
        assert conn is not None
        conn.abort()
        self._conns.discard(conn)
        self.churn["drops"] += 1
        await self._resume(member)

    async def _resume(self, member: _Member) -> None:
        old = member.conn
        if old is not None:
            old.abort()
            self._conns.discard(old)
        try:
            conn = await self._connect(initial=False)
        except WireError:
            member.present = False
            return
        self._attach(member, conn)
        token, after = member.token, member.last_seq
        try:
            reply = await conn.request(lambda i: m.Resume(id=i, token=token, after=after))
        except ReplyError as exc:
            self.errors[reply_kind(exc)] += 1
            member.present = False
            return
        assert isinstance(reply, m.Joined)
        member.token = reply.seat.token
        self.churn["resumes"] += 1

    async def _leave_and_rejoin(self, member: _Member) -> None:
        """Churn: give the seat up, wait ``churn_pause``, join again as a new seat."""
        conn = member.conn
        assert conn is not None
        code = member.room
        await conn.request(lambda i: m.Leave(id=i, room=code))
        self.acct.gone(member.id, code)
        self.members_up -= 1
        self.churn["leaves"] += 1
        await trio.sleep(self.spec.churn_pause)
        reply = await conn.request(lambda i: m.Join(id=i, room=code))
        assert isinstance(reply, m.Joined)
        self._seated(member, reply.seat)
        self.churn["rejoins"] += 1

    async def _visitors_loop(self, code: str) -> None:
        """Churn: visitors arrive at ``churn_join`` per second, stay, send, and leave."""
        spec = self.spec
        async with trio.open_nursery() as nursery:
            while True:
                at = self._next_churn(spec.churn_join, trio.current_time())
                if at + spec.visitor_stay >= self._end:
                    return
                await self._until(at)
                if at + spec.visitor_stay >= self._end:
                    return
                self._visitors += 1
                visitor_id = VISITOR_BASE + (self.index << 20) + self._visitors
                nursery.start_soon(self._visit, _Member(visitor_id), code)

    async def _visit(self, member: _Member, code: str) -> None:
        spec = self.spec
        try:
            await self._join(member, code, initial=False)
            self.churn["visitors"] += 1
            interval = 1.0 / spec.rate if spec.rate > 0 else math.inf
            leave_at = trio.current_time() + spec.visitor_stay
            next_send = trio.current_time() + self.rng.random() * interval
            while next_send < leave_at and member.present:
                await trio.sleep_until(next_send)
                await self._send(member)
                next_send += interval
            await trio.sleep_until(leave_at)
            conn = member.conn
            assert conn is not None
            await conn.request(lambda i: m.Leave(id=i, room=code))
            self.acct.gone(member.id, code)
            self.members_up -= 1
            conn.abort()
            self._conns.discard(conn)
        except (WireError, ReplyError) as exc:
            if isinstance(exc, ReplyError):
                self.errors[reply_kind(exc)] += 1

    # --------------------------------------------------------------- moderation

    async def _start_moderator(
        self,
    ) -> tuple[str, LoadClient, trio.MemoryReceiveChannel[tuple[str, int]]]:
        """A moderator bot: authenticate, create the pre-moderated room, approve all."""
        spec = self.spec
        assert spec.moderator_token is not None
        token = spec.moderator_token
        conn = await self._connect(initial=True)
        await conn.request(lambda i: m.Auth(id=i, token=token))
        send_pending, receive_pending = trio.open_memory_channel[tuple[str, int]](math.inf)

        def on_event(c: LoadClient, msg: m.Message) -> None:
            if isinstance(msg, m.Pending):
                send_pending.send_nowait((msg.room, msg.item.item))
                stamp = body.read(msg.item.body)
                if stamp is not None:
                    self.approved.add((msg.room, stamp.member, stamp.number))
            elif isinstance(msg, m.Deliver):
                stamp = body.read(msg.body)
                if stamp is not None:
                    self._numbered(msg.room, msg.seq, stamp)
            elif isinstance(msg, m.Presence) and msg.event in ("left", "removed"):
                self.acct.ended(msg.room, msg.alias, msg.seq)

        conn.on_event = on_event
        reply = await self._create_room(
            conn, kind="group", premoderated=True, max_members=spec.members + 1 + VISITOR_HEADROOM
        )
        return reply.seat.room, conn, receive_pending

    async def _approve_all(
        self, conn: LoadClient, pending: trio.MemoryReceiveChannel[tuple[str, int]]
    ) -> None:
        """Approve every pending item as it arrives (cancelled when the run is over)."""
        async for room, item in pending:
            try:
                await conn.request(partial(_approve, room, item))
            except ReplyError as exc:
                self.errors[reply_kind(exc)] += 1
                continue
            except WireError:
                self.errors["connection_lost"] += 1
                return
            self.approvals += 1


def _create(nonce: bytes | None, fields: dict[str, Any], request_id: int) -> m.Request:
    return m.CreateRoom(id=request_id, pow=nonce, **fields)


def _approve(room: str, item: int, request_id: int) -> m.Request:
    return m.Approve(id=request_id, room=room, item=item)


async def run_in_process(
    spec: LoadSpec,
    room_indices: list[int] | None = None,
    *,
    progress: ProgressSink | None = None,
    receive_hook: ReceiveHook | None = None,
) -> WorkerResult:
    """Run one worker in the current Trio loop (``--workers 0``, and the tests)."""
    rooms = list(range(spec.rooms)) if room_indices is None else room_indices
    return await Worker(spec, rooms, progress=progress, receive_hook=receive_hook).run()
