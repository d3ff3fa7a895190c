"""The members of a worker's rooms: connecting, seats, events, sending, drops and leaves.

``MemberDriver`` holds a worker's state and everything one member does: connect (with
back-off when admission control refuses), create or join a room (with a proof of work
when asked), account for every event it receives (synchronously, on the hot path), send
at its rate, and churn (forced drops with resume, leaves with rejoin). ``Worker``
(``loadtest.worker``) runs whole rooms on top of it.

Timing is on Trio's clock (so tests run it under a mock clock); latency is measured on
``time.monotonic_ns`` stamped into each body, which is one clock for every process on
the host.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from functools import partial
from typing import Any

import trio

from haven.protocol import messages as m
from haven.protocol.errors import ErrorCode

from . import body, histo
from .accounting import Accountant, Receipt
from .spec import POW_RETRIES, REFUSAL_RETRIES, VISITOR_HEADROOM, LoadSpec, ProgressSink
from .wire import LoadClient, ReceiveHook, ReplyError, WireError, connect, reply_kind


class Member:
    """One member's seat in one room, across reconnects (forced drops) and rejoins."""

    __slots__ = (
        "alias", "conn", "id", "last_seq", "moves", "number", "present", "room", "token",
    )  # fmt: skip

    def __init__(self, member_id: int) -> None:
        self.id = member_id
        self.conn: LoadClient | None = None
        self.room = ""
        self.alias = ""
        self.token = b""
        self.last_seq = 0
        self.number = 0
        self.present = False
        self.moves = 0  #: resumes so far (each on the next process of a cluster)


class MemberDriver:
    """A worker's state and what each of its members does (see the module docstring)."""

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

    async def _until(self, deadline: float) -> None:
        """Sleep until ``deadline``, or until the run is stopped early."""
        assert self._stop is not None
        with trio.move_on_at(deadline):
            await self._stop.wait()

    # ------------------------------------------------------------- connections

    async def _connect(self, initial: bool, url: str | None = None) -> LoadClient:
        assert self._nursery is not None
        url = url or self.spec.url
        began = time.monotonic()
        if initial and self.connect_start is None:
            self.connect_start = began
        attempt = 0
        while True:
            try:
                conn, seconds = await connect(
                    url, self.spec.key, self._nursery, self.spec.connect_timeout
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

    def _attach(self, member: Member, conn: LoadClient) -> None:
        member.conn = conn
        conn.on_event = lambda c, msg: self._on_event(member, msg)

    async def _create(self, member: Member) -> str:
        spec = self.spec
        conn = await self._connect(initial=True, url=spec.url_for(member.id))
        self._attach(member, conn)
        max_members = None if spec.kind == "direct" else spec.members + VISITOR_HEADROOM
        kind = "direct" if spec.kind == "direct" else "group"
        reply = await self._create_room(conn, kind=kind, max_members=max_members)
        self._seated(member, reply.seat)
        return reply.seat.room

    async def _join(self, member: Member, code: str, *, initial: bool) -> None:
        conn = await self._connect(initial=initial, url=self.spec.url_for(member.id))
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

    def _seated(self, member: Member, seat: m.Seat) -> None:
        member.room = seat.room
        member.alias = seat.alias
        member.token = seat.token
        member.last_seq = seat.seq
        member.present = True
        self.members_up += 1
        self.acct.seat(member.id, seat.room, seat.alias, seat.seq)

    # ------------------------------------------------------------------ events

    def _on_event(self, member: Member, msg: m.Message) -> None:
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

    async def _member_loop(self, member: Member, may_leave: bool) -> None:
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

    async def _send(self, member: Member) -> None:
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

    async def _drop_and_resume(self, member: Member) -> None:
        """Churn: hang up without a close frame, reconnect, resume the seat."""
        conn = member.conn
        assert conn is not None
        conn.abort()
        self._conns.discard(conn)
        self.churn["drops"] += 1
        await self._resume(member)

    async def _resume(self, member: Member) -> None:
        old = member.conn
        if old is not None:
            old.abort()
            self._conns.discard(old)
        member.moves += 1
        try:
            url = self.spec.url_for(member.id, member.moves)
            conn = await self._connect(initial=False, url=url)
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

    async def _leave_and_rejoin(self, member: Member) -> None:
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


def _create(nonce: bytes | None, fields: dict[str, Any], request_id: int) -> m.Request:
    return m.CreateRoom(id=request_id, pow=nonce, **fields)


__all__ = ["Member", "MemberDriver"]
