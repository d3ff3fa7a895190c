"""The two kinds of event streams the SDK hands to applications.

``EventStream`` (rooms, queue tickets) is bounded and *blocking*: when the application
does not read a room's events, the buffer fills, the SDK's single reader blocks on it,
the WebSocket library stops reading the socket, and TCP pushes back on the relay. Nothing is
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

import anyio
import anyio.lowlevel

T = TypeVar("T")


class _Buffer(Generic[T]):
    """Items waiting for one reader, an end (with an optional error), and the wake-up."""

    __slots__ = ("_error", "_items", "_readable", "ended")

    def __init__(self, items: deque[T]) -> None:
        self._items = items
        #: Set when an item arrives or the stream ends; replaced before the reader waits.
        self._readable = anyio.Event()
        self._error: BaseException | None = None
        self.ended = False

    def end(self, error: BaseException | None = None) -> None:
        """End the stream: buffered items are still delivered, then ``error`` (if any)."""
        if self.ended:
            return
        self.ended = True
        self._error = error
        self._readable.set()

    async def _next_item(self) -> T:
        await anyio.lowlevel.checkpoint()
        while not self._items:
            if self.ended:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            if self._readable.is_set():
                self._readable = anyio.Event()
            await self._readable.wait()
        return self._items.popleft()


class EventStream(_Buffer[T]):
    """A bounded async iterator that ends normally or by raising a terminal exception."""

    __slots__ = ("_size", "_writable")

    def __init__(self, size: int) -> None:
        super().__init__(deque())
        self._size = size
        #: Set when room frees up (or the stream ends); replaced before the writer waits.
        self._writable = anyio.Event()

    async def put(self, item: T) -> None:
        """Append ``item``, waiting while the buffer is full (backpressure)."""
        while len(self._items) >= self._size and not self.ended:
            if self._writable.is_set():
                self._writable = anyio.Event()
            await self._writable.wait()
        if self.ended:
            return  # ended while we waited: the item no longer has a reader
        self._items.append(item)
        self._readable.set()

    def end(self, error: BaseException | None = None) -> None:
        super().end(error)
        self._writable.set()

    def __aiter__(self) -> EventStream[T]:
        return self

    async def __anext__(self) -> T:
        item = await self._next_item()
        self._writable.set()
        return item


class LossyStream(_Buffer[T]):
    """An async iterator over the newest ``size`` items; ``put`` never blocks."""

    __slots__ = ("dropped",)

    def __init__(self, size: int) -> None:
        super().__init__(deque(maxlen=size))
        #: Items discarded because the application did not read them in time.
        self.dropped = 0

    def put(self, item: T) -> None:
        if self.ended:
            return
        if len(self._items) == self._items.maxlen:
            self.dropped += 1
        self._items.append(item)
        self._readable.set()

    def __aiter__(self) -> LossyStream[T]:
        return self

    async def __anext__(self) -> T:
        return await self._next_item()


__all__ = ["EventStream", "LossyStream"]
