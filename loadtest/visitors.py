"""Rooms with company: churn visitors who come and go, and the moderator bot that
approves every held message of a pre-moderated room.
"""

from __future__ import annotations

import math
from functools import partial

import trio

from haven.protocol import messages as m

from . import body
from .members import Member, MemberDriver
from .spec import VISITOR_BASE, VISITOR_HEADROOM
from .wire import LoadClient, ReplyError, WireError, reply_kind


class VisitorsAndModerators(MemberDriver):
    """Churn visitors and moderator bots on top of ``MemberDriver``."""

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
                nursery.start_soon(self._visit, Member(visitor_id), code)

    async def _visit(self, member: Member, code: str) -> None:
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



def _approve(room: str, item: int, request_id: int) -> m.Request:
    return m.Approve(id=request_id, room=room, item=item)


__all__ = ["VisitorsAndModerators"]
