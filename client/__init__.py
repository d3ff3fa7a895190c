"""Haven's Python client SDK, for Trio and asyncio: connect, hold seats, survive drops.

    import haven

    async with haven.connect("ws://127.0.0.1:8765/", relay_key) as conn:
        room = await conn.create_room(topic="evening check-in")
        await room.send(b"hello")
        async for event in room.events():
            ...

The relay key is pinned (raw 32 bytes or the base64url text the relay prints): the Noise
NK handshake fails against any other relay. Drops are survived transparently by resuming
seats and de-duplicating the replay; see ``client.connection`` for the guarantees and
``client.streams`` for backpressure. The same code runs under Trio (``trio.run``) and
asyncio (``asyncio.run``, FastAPI, Django): it is written on anyio, and only the
WebSocket is the runtime's own (``client.transport``).
"""

from . import errors
from .backoff import backoff_delays
from .connection import Connection, ConnEvent, connect
from .core import ConnState
from .errors import (
    ERROR_CLASSES,
    ConnectFailed,
    ConnectionLost,
    HandshakeFailed,
    HavenClientError,
    HavenRequestError,
    RelayClosed,
    TLSFailed,
    UnexpectedReply,
    UpgradeRefused,
    error_class,
    request_error,
)
from .keys import RelayKeyError, format_relay_key, parse_relay_key
from .room import QueueEvent, QueueTicket, Room, RoomEvent
from .router import Route, RouteKind, Router

__all__ = [
    "ERROR_CLASSES",
    "ConnEvent",
    "ConnState",
    "ConnectFailed",
    "Connection",
    "ConnectionLost",
    "HandshakeFailed",
    "HavenClientError",
    "HavenRequestError",
    "QueueEvent",
    "QueueTicket",
    "RelayClosed",
    "RelayKeyError",
    "Room",
    "RoomEvent",
    "Route",
    "RouteKind",
    "Router",
    "TLSFailed",
    "UnexpectedReply",
    "UpgradeRefused",
    "backoff_delays",
    "connect",
    "error_class",
    "errors",
    "format_relay_key",
    "parse_relay_key",
    "request_error",
]
