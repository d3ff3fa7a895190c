"""Room streams block (backpressure) and end cleanly; connection streams are lossy."""

from __future__ import annotations

import pytest
import trio

from haven.client.errors import ConnectionLost
from haven.client.streams import EventStream, LossyStream


async def test_event_stream_delivers_then_ends() -> None:
    stream: EventStream[int] = EventStream(10)
    for n in range(3):
        await stream.put(n)
    stream.end()
    assert [n async for n in stream] == [0, 1, 2]
    await stream.put(99)  # after the end: ignored, never raises
    assert [n async for n in stream] == []


async def test_event_stream_ends_with_error_after_buffered_items() -> None:
    stream: EventStream[int] = EventStream(10)
    await stream.put(1)
    stream.end(ConnectionLost("gone"))
    got: list[int] = []

    async def drain() -> None:
        async for n in stream:
            got.append(n)

    with pytest.raises(ConnectionLost):
        await drain()
    assert got == [1]


async def test_event_stream_applies_backpressure() -> None:
    stream: EventStream[int] = EventStream(2)
    await stream.put(1)
    await stream.put(2)
    with trio.move_on_after(0.05) as scope:
        await stream.put(3)
    assert scope.cancelled_caught  # the reader would block here
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.put, 3)
        await trio.sleep(0.01)
        assert await stream.__anext__() == 1
    assert await stream.__anext__() == 2
    assert await stream.__anext__() == 3


async def test_ending_wakes_a_blocked_writer() -> None:
    stream: EventStream[int] = EventStream(1)
    await stream.put(1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.put, 2)
        await trio.sleep(0.01)
        stream.end()
    assert [n async for n in stream] == [1]


async def test_lossy_stream_keeps_newest() -> None:
    stream: LossyStream[int] = LossyStream(3)
    for n in range(5):
        stream.put(n)
    assert stream.dropped == 2
    stream.end()
    assert [n async for n in stream] == [2, 3, 4]


async def test_lossy_stream_wakes_reader() -> None:
    stream: LossyStream[int] = LossyStream(3)
    got: list[int] = []

    async def read() -> None:
        async for n in stream:
            got.append(n)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        await trio.sleep(0.01)
        stream.put(1)
        await trio.sleep(0.01)
        stream.put(2)
        stream.end()
    assert got == [1, 2]


async def test_lossy_stream_error() -> None:
    stream: LossyStream[int] = LossyStream(3)
    stream.end(ConnectionLost("gave up"))
    with pytest.raises(ConnectionLost):
        await stream.__anext__()
