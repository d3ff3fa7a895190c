"""What a relay adds to the hub's plain rooms, as one typed interface given at construction.

The hub (``relay.hub``) knows rooms, seats, delivery and resume. Everything else (the
helpline flows: auth, queues, handoff, moderation, schedules, crisis) plugs in through
``Extension``: the requests it handles, the tokens it resumes, the decisions the hub asks
it for (may this peer join, moderate, is this message held), what it observes (a peer
gone, a room ended), the directory entries it adds, and its timers. The hub is built
with it (``Hub(config, now, extend=...)``) and calls nothing else, so every hook that can
run is named here; ``PlainRooms`` is the extension of a relay with no flows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from haven.protocol import messages as m
from haven.protocol.errors import ErrorCode, RequestError

if TYPE_CHECKING:
    from .hub import Hub, Peer
    from .rooms import Room, Seat

#: A request handler: ``handler(peer, request, now)``; refuses by raising a HavenError.
Handler = Callable[["Peer", Any, float], None]
#: Resumes a token that is not a seat (a queue place): ``resumer(peer, request, target, now)``.
Resumer = Callable[["Peer", m.Resume, Any, float], None]


class Extension(Protocol):
    """Everything the hub asks of what is built on it (see the module docstring)."""

    def handlers(self) -> Mapping[type[Any], Handler]:
        """Handlers for request types the hub does not handle itself."""
        ...

    def resumers(self) -> Mapping[type[Any], Resumer]:
        """Resume handlers for token targets that are not seats, by target type."""
        ...

    def prepare_join(self, peer: Peer, room_code: str, now: float) -> None:
        """Before a ``join`` looks its room up (a scheduled room opens on demand here)."""
        ...

    def check_join(self, peer: Peer, room: Room, now: float) -> None:
        """Refuse a join by raising (locked for removed members, out of hours)."""
        ...

    def is_moderator_for(self, peer: Peer, room_code: str | None, now: float) -> bool:
        """May ``peer`` moderate ``room_code`` now (``None``: create listed rooms)?"""
        ...

    def hold_for_moderation(self, seat: Seat, body: bytes, now: float) -> int:
        """Hold a message of a pre-moderated room; its item number."""
        ...

    def directory(self, now: float) -> list[m.RoomInfo]:
        """Directory entries beyond the hub's listed rooms (scheduled, not open yet)."""
        ...

    def on_disconnect(self, peer: Peer, now: float) -> None:
        """A connection is gone (its queue places are held)."""
        ...

    def on_room_end(self, room: Room) -> None:
        """A room ended, whatever the reason."""
        ...

    def next_deadline(self) -> float | None:
        """When ``on_timer`` must next run (``None``: no timer)."""
        ...

    def on_timer(self, now: float) -> None:
        """Expire what is due at ``now``."""
        ...


class PlainRooms:
    """The extension of a relay with no flows: rooms only, no moderators, no timers."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def handlers(self) -> Mapping[type[Any], Handler]:
        return {}

    def resumers(self) -> Mapping[type[Any], Resumer]:
        return {}

    def prepare_join(self, peer: Peer, room_code: str, now: float) -> None:
        pass

    def check_join(self, peer: Peer, room: Room, now: float) -> None:
        pass

    def is_moderator_for(self, peer: Peer, room_code: str | None, now: float) -> bool:
        return False

    def hold_for_moderation(self, seat: Seat, body: bytes, now: float) -> int:
        raise RequestError("pre-moderation is not available", code=ErrorCode.UNEXPECTED_MESSAGE)

    def directory(self, now: float) -> list[m.RoomInfo]:
        return []

    def on_disconnect(self, peer: Peer, now: float) -> None:
        pass

    def on_room_end(self, room: Room) -> None:
        pass

    def next_deadline(self) -> float | None:
        return None

    def on_timer(self, now: float) -> None:
        pass


__all__ = ["Extension", "Handler", "PlainRooms", "Resumer"]
