"""Crisis escalation across processes: a moderator on a room's home moves a member into
the priority lane of a queue the leader holds.

The room's home asks the leader (``esc``) with where the member's connection is; the
leader puts a proxy of it in line (the member is told its place as usual) and answers
(``esc_done``) with the outcome, which becomes the moderator's reply: ``ok``, or the
typed error (``QUEUE_FULL``...), or RELAY_BUSY after ``FORWARD_TIMEOUT``.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import trio

from haven.protocol import messages as m
from haven.protocol.errors import ErrorCode, HavenError, RequestError

from . import nats
from .base import ESC, ESC_DONE, FORWARD_TIMEOUT, RETRY_AFTER, LinkState
from .forwarding import Remote
from .proxies import ProxySink

if TYPE_CHECKING:
    from haven.relay.peer import Peer


class Escalations(LinkState):
    """Escalations into the leader's queues (a part of ``ClusterLink``)."""

    def escalate_elsewhere(self, moderator: Peer, req: m.Escalate, target: Peer,
                           now: float) -> bool:  # fmt: skip
        """A moderator here escalates a member into a queue the leader holds: ask the
        leader; the moderator's reply follows its answer (``ESC_DONE``)."""
        leader = self.leader()
        if leader is None:
            raise RequestError("the relay is joining its cluster; retry shortly",
                               code=ErrorCode.RELAY_BUSY, retry_after=RETRY_AFTER)  # fmt: skip
        if leader == self.tag:
            return False
        address = self._address(target)
        if address is None:
            raise RequestError(code=ErrorCode.MEMBER_NOT_FOUND)
        origin, number = address
        n = self._number()
        try:
            self._publish(self.subject("node", leader),
                          [ESC, self.tag, n, origin, number, req.queue])  # fmt: skip
        except nats.NatsError:
            raise RequestError(
                "the relay cannot reach the rest of its cluster",
                code=ErrorCode.RELAY_BUSY, retry_after=RETRY_AFTER,
            ) from None  # fmt: skip
        self.escalations[n] = (moderator, req.id, now + FORWARD_TIMEOUT)
        return True

    def _address(self, peer: Peer) -> tuple[bytes, int] | None:
        """Where a peer's connection is: (its process, its number there)."""
        sink = peer.sink
        if isinstance(sink, ProxySink):
            return sink.origin, sink.conn
        conn = sink
        if conn is None or getattr(conn, "closing", True):
            return None
        if conn.bus is None:
            conn.bus = Remote(self._number())
            self.remotes[conn.bus.number] = conn
        return self.tag, conn.bus.number

    def _on_escalate(self, asker: bytes, n: int, origin: bytes, number: int, queue: str) -> None:
        """The leader: put the member into the queue's priority lane, answer the asker."""
        assert self.flows is not None
        now = trio.current_time()
        if origin == self.tag:
            conn = self.remotes.get(number)
            peer = conn.peer if conn is not None and not conn.closing else None
        else:
            peer = self._proxy(origin, number, now)
        code = 0
        if peer is None:
            code = int(ErrorCode.MEMBER_NOT_FOUND)
        else:
            try:
                self.flows.queues.line(queue)
                self.flows.queues.escalate(peer, queue, now)
            except HavenError as exc:
                code = int(exc.code)
        with contextlib.suppress(nats.NatsError):
            self._publish(self.subject("node", asker), [ESC_DONE, self.tag, n, code])

    def _on_escalated(self, n: int, code: int) -> None:
        entry = self.escalations.pop(n, None)
        if entry is None:
            return
        moderator, rid, _ = entry
        hub = self.relay.hub
        if moderator.closed:
            return
        if code:
            hub.error(moderator, rid, RequestError(code=ErrorCode(code)))
        else:
            hub.reply(moderator, m.Ok(id=rid))


__all__ = ["Escalations"]
