"""Haven's Python client SDK (Trio): connect to a relay, hold seats, survive drops.

    async with client.connect("ws://127.0.0.1:8765/", relay_key) as conn:
        room = await conn.create_room(topic="evening check-in")
        await room.send(b"hello")
        async for event in room.events():
            ...

The relay key is pinned (raw 32 bytes or the base64url text the relay prints): the Noise
NK handshake fails against any other relay. Drops are survived transparently by resuming
seats and de-duplicating the replay; see ``client.connection`` for the guarantees and
``client.streams`` for backpressure.
"""

from . import errors
from .backoff import backoff_delays
from .connection import Connection, ConnEvent, connect
from .errors import (
    ERROR_CLASSES,
    ConnectFailed,
    ConnectionLost,
    HandshakeFailed,
    HavenClientError,
    HavenRequestError,
    RelayClosed,
    UnexpectedReply,
    error_class,
    request_error,
)
from .keys import RelayKeyError, format_relay_key, parse_relay_key
from .room import QueueEvent, QueueTicket, Room, RoomEvent
from .router import Route, RouteKind, Router

__all__ = [
    "ERROR_CLASSES",
    "ConnEvent",
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
    "UnexpectedReply",
    "backoff_delays",
    "connect",
    "error_class",
    "errors",
    "format_relay_key",
    "parse_relay_key",
    "request_error",
]
