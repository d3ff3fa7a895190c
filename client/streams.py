"""The two kinds of event streams the SDK hands to applications.

``EventStream`` (rooms, queue tickets) is bounded and *blocking*: when the application
does not read a room's events, the buffer fills, the SDK's single reader blocks on it,
trio-websocket stops reading the socket, and TCP pushes back on the relay. Nothing is
ever dropped silently; if the application stays behind for long, the relay drops the
connection as a slow consumer (close 4406) and the SDK resumes, replaying what was
missed. Note the consequence: while the reader is blocked, replies to *other* requests
on the same connection wait too. Read every room you hold, or ``leave`` it.

``LossyStream`` (connection-level events) keeps only the newest ``size`` items and never
blocks: these events (difficulty changes, draining notices) are advisory, the SDK acts
on them itself, and an application that ignores them must not stall its rooms.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

import trio

T = TypeVar("T")


class EventStream(Generic[T]):
    """A bounded async iterator that ends normally or by raising a terminal exception."""

    __slots__ = ("_error", "_recv", "_send", "ended")

    def __init__(self, size: int) -> None:
        self._send, self._recv = trio.open_memory_channel[T](size)
        self._error: BaseException | None = None
        self.ended = False

    async def put(self, item: T) -> None:
        """Append ``item``, waiting while the buffer is full (backpressure)."""
        try:
            await self._send.send(item)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return  # ended while we waited: the item no longer has a reader

    def end(self, error: BaseException | None = None) -> None:
        """End the stream: buffered items are still delivered, then ``error`` (if any)."""
        if self.ended:
            return
        self.ended = True
        self._error = error
        self._send.close()

    def __aiter__(self) -> EventStream[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self._recv.receive()
        except trio.EndOfChannel:
            if self._error is not None:
                raise self._error from None
            raise StopAsyncIteration from None


class LossyStream(Generic[T]):
    """An async iterator over the newest ``size`` items; ``put`` never blocks."""

    __slots__ = ("_error", "_items", "_lot", "dropped", "ended")

    def __init__(self, size: int) -> None:
        self._items: deque[T] = deque(maxlen=size)
        self._lot = trio.lowlevel.ParkingLot()
        self._error: BaseException | None = None
        self.ended = False
        #: Items discarded because the application did not read them in time.
        self.dropped = 0

    def put(self, item: T) -> None:
        if self.ended:
            return
        if len(self._items) == self._items.maxlen:
            self.dropped += 1
        self._items.append(item)
        self._lot.unpark_all()

    def end(self, error: BaseException | None = None) -> None:
        if self.ended:
            return
        self.ended = True
        self._error = error
        self._lot.unpark_all()

    def __aiter__(self) -> LossyStream[T]:
        return self

    async def __anext__(self) -> T:
        await trio.lowlevel.checkpoint()
        while not self._items:
            if self.ended:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            await self._lot.park()
        return self._items.popleft()


__all__ = ["EventStream", "LossyStream"]
