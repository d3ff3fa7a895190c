"""Helpline and peer-support flows on top of the relay's synchronous hub.

``install(hub, config)`` reads the flows' configuration (``relay.flows.settings``) and
wires every flow into the hub: request handlers, the queue-ticket resumer, directory
entries for scheduled rooms, timers, disconnect and room-end observers, and the hub's
three policy hooks (``check_join``, ``is_moderator_for``, ``hold_for_moderation``).
Everything stays synchronous and I/O-free, like the hub itself.

=================  ====================================================================
module             flow
=================  ====================================================================
``auth``           ``auth`` request; role/scope checks used by all the others
``queues``         intake queues: request/cancel help, duty, staff count, take next
``handoff``        warm handoff with spoken one-time codes
``moderation``     pre-moderation, mute, remove, lock, close, announce
``schedule``       scheduled rooms (weekly windows in a time zone)
``crisis``         crisis flags and escalation into a queue's priority lane
=================  ====================================================================
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from haven.protocol import messages as m

from ..config import Config
from ..hub import Handler, Hub, Peer
from ..rooms import Room
from .auth import Auth
from .clock import Clock
from .crisis import Crisis
from .handoff import Handoffs
from .moderation import Moderation, RemovedSeat
from .queues import Queues, Ticket
from .schedule import Schedules
from .settings import FlowSettings, parse


@dataclass(eq=False, slots=True)
class Flows:
    """The installed flows of one hub (reachable with ``installed(hub)``)."""

    settings: FlowSettings
    clock: Clock
    auth: Auth
    queues: Queues
    handoffs: Handoffs
    moderation: Moderation
    schedules: Schedules
    crisis: Crisis


_INSTALLED: weakref.WeakKeyDictionary[Hub, Flows] = weakref.WeakKeyDictionary()


def installed(hub: Hub) -> Flows:
    """The flows installed on ``hub`` (tests use it to re-anchor the wall clock)."""
    return _INSTALLED[hub]


def _seeing(clock: Clock, handler: Handler) -> Handler:
    """Wrap a hub handler so hooks it calls know the request's time."""

    def wrapped(peer: Peer, req: Any, now: float) -> None:
        clock.seen(now)
        handler(peer, req, now)

    return wrapped


def install(hub: Hub, config: Config, wall_now: Callable[[], float] = time.time) -> None:
    """Wire every flow into ``hub``; raises ``ConfigError`` for bad flow settings."""
    if hub in _INSTALLED:
        raise RuntimeError("flows are already installed on this hub")
    settings = parse(config)
    clock = Clock(wall_now, hub.started)
    # Schedules wrap the hub's own join; they must see it before anything replaces it.
    schedules = Schedules(hub, settings.rooms, clock)
    auth = Auth(hub, settings, clock, schedules.name_of)
    queues = Queues(hub, settings, auth)
    handoffs = Handoffs(hub, auth)
    moderation = Moderation(hub, settings, auth)
    crisis = Crisis(hub, settings, auth, queues)
    flows = Flows(settings, clock, auth, queues, handoffs, moderation, schedules, crisis)

    handlers: dict[type[Any], Handler] = {
        m.Auth: auth.handle_auth,
        m.Join: _seeing(clock, schedules.join),
        m.CreateRoom: _seeing(clock, hub.handlers[m.CreateRoom]),
        m.RequestHelp: queues.request_help,
        m.CancelHelp: queues.cancel_help,
        m.StaffCount: queues.staff_count,
        m.Duty: queues.duty,
        m.TakeNext: queues.take_next,
        m.HandoffInvite: handoffs.invite,
        m.HandoffAccept: handoffs.accept,
        m.PendingList: moderation.pending_list,
        m.Approve: moderation.approve,
        m.Edit: moderation.edit,
        m.Deny: moderation.deny,
        m.Mute: moderation.mute,
        m.Remove: moderation.remove,
        m.Lock: moderation.lock,
        m.CloseRoom: moderation.close_room,
        m.Announce: moderation.announce,
        m.Crisis: crisis.crisis,
        m.Escalate: crisis.escalate,
    }
    hub.handlers.update(handlers)
    hub.resumers[Ticket] = queues.resume
    hub.resumers[RemovedSeat] = moderation.resume_removed
    hub.directory_sources.append(schedules.directory)

    def tick(now: float) -> None:
        clock.seen(now)
        queues.tick(now)
        handoffs.tick(now)
        moderation.tick(now)
        crisis.tick(now)
        schedules.tick(now)

    def check_join(peer: Peer, room: Room, now: float) -> None:
        moderation.check_join(peer, room, now)
        schedules.check_join(peer, room, now)

    def room_end(room: Room) -> None:
        handoffs.on_room_end(room)
        moderation.on_room_end(room)
        crisis.on_room_end(room)
        schedules.on_room_end(room)

    hub.tickers.append(tick)
    hub.on_disconnect.append(queues.on_disconnect)
    hub.on_disconnect.append(moderation.on_disconnect)
    hub.on_room_end.append(room_end)
    moderation.before_close.append(schedules.before_close)
    # The hub's policy hooks are plain methods; the flows replace them per instance.
    hub.check_join = check_join  # type: ignore[method-assign]
    hub.is_moderator_for = auth.is_moderator_for  # type: ignore[method-assign]
    hub.hold_for_moderation = moderation.hold_for_moderation  # type: ignore[method-assign]
    _INSTALLED[hub] = flows


__all__ = ["Flows", "install", "installed"]
