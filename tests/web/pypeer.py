"""A Python SDK client (Trio) in a thread, driven from a synchronous Playwright test.

Why a thread: Playwright's sync API owns the test's thread, and the SDK needs a Trio
loop. Calls cross with ``trio.from_thread``; room events are collected into lists the
test reads (and waits on with ``wait_for``, bounded by a generous guard).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

from haven import client
from haven.client.keys import parse_relay_key

T = TypeVar("T")
GUARD = 60.0  #: seconds a wait may take before the test fails (a hang guard, not a timing)


class PyPeer:
    """One ``client.connect`` connection living in its own thread and Trio loop."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, parse_relay_key(key)
        self.events: dict[str, list[Any]] = {}  #: room code -> events seen, in order
        self.conn: client.Connection | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._stop: trio.Event | None = None
        self._up = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._thread_main, daemon=True)

    def __enter__(self) -> PyPeer:
        self._thread.start()
        if not self._up.wait(GUARD) or self._error is not None:
            raise RuntimeError("the Python peer did not connect") from self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None and self._stop is not None:
            stop = self._stop
            trio.from_thread.run_sync(stop.set, trio_token=self._token)
        self._thread.join(GUARD)

    def _thread_main(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported by __enter__ or the next call
            self._error = exc
            self._up.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with client.connect(self.url, self.key) as conn, trio.open_nursery() as nursery:
            self.conn, self._nursery = conn, nursery
            self._up.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await fn(*args)`` in the peer's loop and return its result."""
        assert self._token is not None
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    def watch(self, room: client.Room) -> None:
        """Collect ``room``'s events into ``self.events[room.code]`` from now on."""
        seen = self.events.setdefault(room.code, [])

        async def collect() -> None:
            async for event in room.events():
                seen.append(event)

        assert self._nursery is not None
        assert self._token is not None
        trio.from_thread.run_sync(self._nursery.start_soon, collect, trio_token=self._token)

    def wait_for(self, code: str, predicate: Callable[[Any], bool]) -> Any:
        """The first collected event of room ``code`` that ``predicate`` accepts."""
        deadline = time.monotonic() + GUARD
        while time.monotonic() < deadline:
            for event in list(self.events.get(code, [])):
                if predicate(event):
                    return event
            time.sleep(0.05)
        raise AssertionError(f"no matching event in {code}: {self.events.get(code)}")
