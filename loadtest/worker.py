"""One worker's share of the load: its rooms, their members, churn, and its ledger.

A room and all of its members live in one worker, so the worker's ``Accountant`` sees
every send and every receipt of the room and can account for loss exactly without
talking to other processes. The worker sends the parent only totals and encoded
histograms.

The parts: ``loadtest.spec`` (what to run, what comes back), ``loadtest.members`` (state
and what each member does), ``loadtest.visitors`` (churn visitors, moderator bots), and
here the run itself: rooms started over the ramp-up, settling, progress and the result.
"""

from __future__ import annotations

import time
from typing import Any

import trio

from . import histo
from .members import Member
from .spec import KINDS, LoadSpec, ProgressSink, WorkerResult
from .visitors import VisitorsAndModerators
from .wire import LoadClient, ReceiveHook, ReplyError, WireError, reply_kind


class Worker(VisitorsAndModerators):
    """Drives ``room_indices`` of ``spec`` and accounts for every delivery."""

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

    # -------------------------------------------------------------------- rooms

    async def _room(self, room_index: int, at: float) -> None:
        """Set up one room (creator, members, moderator bot), then run its members."""
        spec = self.spec
        await trio.sleep_until(at)
        base = room_index * spec.stride
        members = [Member(base + j) for j in range(spec.members)]
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


__all__ = ["KINDS", "LoadSpec", "Worker", "WorkerResult", "run_in_process"]
