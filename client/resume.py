"""Surviving drops: reconnect with backoff, then resume every seat and queue place.

The relay holds a dropped connection's seats and queue places for its grace
window. When a link drops without the application closing it (including the relay's
1001 after ``draining`` and 4406 slow-consumer closes), requests in flight fail with
``ConnectionLost`` and the supervisor reconnects with jittered exponential backoff, for
at most ``resume_timeout`` seconds (default: the relay's ``resume_grace``). On the new
link it re-presents the auth tokens, sends ``resume(token, after=last seq seen)`` for
every seat and ``resume(token, after=0)`` for every queue place, stores each rotated
token, and puts staff back on duty. Only then are new requests let through. The relay
replays the missed events; ``Router`` drops the ones already seen, so each room stream
sees every event once and in order. A seat that cannot be resumed ends its room's
stream with the typed error (``ResumeFailed`` usually).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import cast

import anyio
import anyio.abc

from haven.protocol.errors import ErrorCode
from haven.protocol.messages import (
    Auth,
    Duty,
    Error,
    Request,
    Resume,
)

from .backoff import DEFAULT_BUDGET, backoff_delays
from .core import ConnectionCore, ConnState
from .errors import (
    ConnectionLost,
    HandshakeFailed,
    HavenClientError,
    HavenRequestError,
    RateLimited,
    RelayClosed,
    TLSFailed,
    UnexpectedReply,
)
from .link import Link, Pending, open_link
from .room import QueueTicket, Room

#: Times a rate-limited resume is retried before the seat is given up.
RESUME_RATE_RETRIES = 5

#: Close codes / errors after which reconnecting cannot help.
_FATAL_CODES = frozenset(
    {ErrorCode.UNSUPPORTED_VERSION, ErrorCode.HANDSHAKE_FAILED, ErrorCode.BAD_KEY}
)


def is_fatal(exc: BaseException) -> bool:
    """True for failures a reconnect cannot fix (wrong pinned key, unsupported version)."""
    if isinstance(exc, HandshakeFailed | TLSFailed):
        return True
    if isinstance(exc, HavenRequestError):
        return exc.code in _FATAL_CODES
    if isinstance(exc, RelayClosed):
        return exc.error_code in _FATAL_CODES
    return False


def _as_lost(exc: BaseException, prefix: str) -> ConnectionLost:
    if isinstance(exc, ConnectionLost):
        lost = exc.clone()
        lost.reason = f"{prefix}: {exc.reason}"
        lost.args = (lost.reason,)
        return lost
    lost = ConnectionLost(f"{prefix}: {exc}")
    lost.__cause__ = exc
    return lost


def _auth(i: int, *, token: bytes) -> Request:
    return Auth(id=i, token=token)


def _duty_on(i: int, *, queue: str) -> Request:
    return Duty(id=i, queue=queue, on=True)


class ResumingConnection(ConnectionCore):
    """Adds the supervisor: connect, and on every unexpected drop reconnect and resume."""

    async def _run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Connect, then supervise: on every unexpected drop, reconnect and resume."""
        async with anyio.create_task_group() as bg:
            self._bg = bg
            link: Link | None = await open_link(
                bg,
                self._url,
                self._key,
                connect_timeout=self._connect_timeout,
                ssl_context=self._ssl_context,
            )
            assert link is not None
            self._install(link)
            self._set_state(ConnState.CONNECTED)
            self._ready.set()
            task_status.started()
            while link is not None:
                await link.done.wait()
                if self._closing:
                    # ``close`` closes the current link, but a link that dropped just
                    # before is no longer current: close it here (idempotent).
                    with anyio.CancelScope(shield=True):
                        await link.aclose()
                    break
                await link.aclose()
                if self._final is not None:
                    break
                lost = link.lost()
                if not self._auto_resume or is_fatal(lost):
                    self._finish(lost)
                    break
                self._set_state(ConnState.RECONNECTING)
                link = await self._reconnect(link)
            if not self._closing:  # else ``close`` cancels, after the closing handshake
                bg.cancel_scope.cancel()

    def _budget(self, old: Link) -> float:
        if self._resume_timeout is not None:
            return self._resume_timeout
        grace = old.welcome.limits.resume_grace
        return float(grace) if grace > 0 else DEFAULT_BUDGET

    async def _reconnect(self, old: Link) -> Link | None:
        """Open a new link and resume onto it, with backoff; None if it gave up."""
        budget = self._budget(old)
        deadline = anyio.current_time() + budget
        last: BaseException = old.lost()
        for delay in backoff_delays(budget, first=old.retry_after):
            await anyio.sleep(delay)
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                break
            try:
                link = await open_link(
                    cast(anyio.abc.TaskGroup, self._bg),
                    self._url,
                    self._key,
                    connect_timeout=min(self._connect_timeout, remaining),
                    ssl_context=self._ssl_context,
                )
            except (ConnectionLost, HavenRequestError, HandshakeFailed) as exc:
                if is_fatal(exc):
                    self._finish(_as_lost(exc, "reconnecting failed"))
                    return None
                last = exc
                continue
            self._install(link)
            if await self._restore(link):
                self.resumes += 1
                self._set_state(ConnState.RESUMED)
                self._ready.set()
                return link
            await link.done.wait()
            await link.aclose()
            last = link.lost()
        self._finish(_as_lost(last, f"could not resume within {budget:g} s"))
        return None

    async def _restore(self, link: Link) -> bool:
        """Re-auth, resume every seat and queue place, restore duty; False if it dropped."""
        try:
            for token in list(self._auth_tokens):
                try:
                    await self._call_on(link, partial(_auth, token=token))
                except ConnectionLost:
                    raise
                except HavenClientError as exc:
                    # Expired meanwhile, say: tell the application, stop re-presenting it.
                    self._auth_tokens.remove(token)
                    code = exc.raw_code if isinstance(exc, HavenRequestError) else 501
                    self._events.put(Error(id=0, code=code, message=str(exc)[:500]))
            await self._resume_all(link)
            for queue in list(self._duty):
                try:
                    await self._call_on(link, partial(_duty_on, queue=queue))
                except ConnectionLost:
                    raise
                except HavenClientError:
                    self._duty.discard(queue)
        except ConnectionLost:
            return False
        return True

    async def _call_on(self, link: Link, build: Callable[[int], Request]) -> Pending:
        """A request on ``link`` even though it is not yet open to the application."""
        msg = build(link.take_id())
        return await self._wait(link, msg.id, await self._submit(link, msg))

    async def _resume_all(self, link: Link) -> None:
        """Pipeline one ``resume`` per seat and queue place, then collect the replies."""
        todo: list[Room | QueueTicket] = [*self._rooms.values(), *self._tickets.values()]
        for _ in range(RESUME_RATE_RETRIES + 1):
            if not todo:
                return
            sent: list[tuple[Room | QueueTicket, int, Pending]] = []
            for target in todo:
                msg = self._resume_request(link, target)
                if msg is not None:
                    sent.append((target, msg.id, await self._submit(link, msg)))
            todo, pause = [], 0.0
            for target, rid, slot in sent:
                try:
                    await self._wait(link, rid, slot)
                except RateLimited as exc:
                    todo.append(target)
                    pause = max(pause, exc.retry_after or 1.0)
                except ConnectionLost:
                    raise
                except HavenClientError as exc:
                    self._resume_failed(target, exc)
                else:
                    self._resumed(target, slot)
            if todo:
                await anyio.sleep(pause)
        for target in todo:
            self._resume_failed(target, RateLimited(message="resume kept being rate limited"))

    def _resume_request(self, link: Link, target: Room | QueueTicket) -> Resume | None:
        if isinstance(target, Room):
            if target.ended or not self._router.has_room(target.code):
                return None
            after = self._router.last_seq(target.code)
            return Resume(id=link.take_id(), token=target.seat.token, after=after)
        if target.ended:
            return None
        return Resume(id=link.take_id(), token=target.token, after=0)

    def _resumed(self, target: Room | QueueTicket, slot: Pending) -> None:
        # The reply hook already stored the rotated token (``_granted`` / ``_queued``).
        if isinstance(target, QueueTicket) and isinstance(slot.attachment, Room):
            # Matched while we were away: the place in line came back as a seat.
            self._router.forget_queue(target.queue)
            if self._tickets.get(target.queue) is target:
                del self._tickets[target.queue]
            target._matched_into(slot.attachment, None)
        elif isinstance(target, Room) and slot.attachment is not target:
            self._resume_failed(target, UnexpectedReply("resume did not return this seat"))

    def _resume_failed(self, target: Room | QueueTicket, exc: HavenClientError) -> None:
        if isinstance(target, Room):
            if self._rooms.get(target.code) is target:
                self._forget_room(target.code, exc)
            else:
                target._stream.end(exc)
        elif self._tickets.get(target.queue) is target:
            self._forget_ticket(target.queue, exc)
        else:
            target._end(exc)


__all__ = ["RESUME_RATE_RETRIES", "ResumingConnection", "is_fatal"]
