"""One task reads every client connection: the relay's read loop.

Why: with a reader task per connection, each message costs a Trio wait on its socket
(an ``epoll_ctl`` to re-arm it, a task switch, a reschedule) before the read itself.
Under load that machinery was about a quarter of the relay's CPU per message
(docs/benchmarks.md). Here every connection's socket is registered once, from accept
to close, level triggered, in an epoll set of the relay's own; a single task waits for
that set to be readable (one Trio wait per batch of ready sockets, not per message),
then reads each ready socket once and hands the bytes to the connection, which drives
its handshake and then its session synchronously (``ClientSocket.on_readable``). Each
connection keeps its task, parked, as the owner of its lifetime (the handshake
deadline, closing, the writer, the close deadline).

Fairness: one read (at most ``RECEIVE_SIZE`` bytes) per ready socket per batch, and at
most ``MAX_EVENTS`` sockets per batch before the task yields to the rest of the relay.
A bug while handling one connection's bytes ends that connection, never the loop.
"""

from __future__ import annotations

import contextlib
import logging
import select
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from .connection import ClientSocket
    from .server import Relay

log = logging.getLogger("haven.relay")

#: Most ready sockets handled in one batch before the loop yields.
MAX_EVENTS = 256


class ReadPoller:
    """The relay's client connections, read from one task (see the module doc)."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self._epoll = select.epoll()
        self._conns: dict[int, ClientSocket] = {}

    def add(self, conn: ClientSocket) -> None:
        """Start reading ``conn`` (just accepted; its stream is a real socket)."""
        self._epoll.register(conn.fd, select.EPOLLIN | select.EPOLLRDHUP)
        self._conns[conn.fd] = conn

    def remove(self, conn: ClientSocket) -> None:
        """Stop reading ``conn`` (before its socket is closed; idempotent)."""
        fd = conn.fd
        if self._conns.get(fd) is conn:
            del self._conns[fd]
            # Closed already: the socket, or the set itself when the relay stops.
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(fd)

    def __len__(self) -> int:
        """Connections being read (those that have not ended)."""
        return len(self._conns)

    def handle_ready(self) -> int:
        """Read each ready socket once and handle what came; return how many were ready.

        Synchronous: no other task runs during a batch, so a connection cannot close
        (and its descriptor number be reused) half-way through one. The hub's output
        for the whole batch is flushed once at its end, so frames bound for the same
        connection (an ack and a delivery, several deliveries of a group) share a write.
        """
        ready = self._epoll.poll(0, MAX_EVENTS)
        if not ready:
            return 0
        conns = self._conns
        now = trio.current_time()
        for fd, _mask in ready:
            conn = conns.get(fd)
            if conn is None:
                continue
            if conn.closing:
                self.remove(conn)
                continue
            try:
                conn.on_readable(now)
            except Exception:
                log.exception("connection task failed")
                self.remove(conn)
                conn.abort()
        self.relay.flush(now)
        return len(ready)

    async def run(self) -> None:
        """Handle batches of ready sockets until cancelled (yielding between batches)."""
        try:
            while True:
                await trio.lowlevel.wait_readable(self._epoll.fileno())
                self.handle_ready()
        finally:
            self._epoll.close()


__all__ = ["ReadPoller"]
