"""Helpline and peer-support flows on top of the relay's synchronous hub.

``Flows`` is the hub's ``Extension`` (``relay.extension``): the hub is built with it,
``Hub(config, now, extend=flows.extension(config))``, and calls only the methods of
that interface. ``Flows`` reads the flows' configuration (``relay.flows.settings``),
builds each flow, and routes every hook to the flows it concerns, in one place, in the
order written below. Everything stays synchronous and I/O-free, like the hub itself.

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

Timers: each flow says when it next has something to expire (``next_deadline``) and
expires only that (``on_timer``); nothing scans every room. The scheduled rooms are
checked at their next window boundary (a configured, bounded list).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from haven.protocol import messages as m

from ..config import Config
from ..extension import Handler, Resumer
from ..hub import Hub, Peer
from ..rooms import Room, Seat
from .auth import Auth
from .clock import Clock
from .crisis import Crisis
from .handoff import Handoffs
from .moderation import Moderation, RemovedSeat
from .queues import Queues, Ticket
from .schedule import Schedules
from .settings import FlowSettings, parse


class Flows:
    """The flows of one hub, as the hub's ``Extension``."""

    def __init__(
        self, hub: Hub, settings: FlowSettings, wall_now: Callable[[], float]
    ) -> None:
        self.settings = settings
        self.clock = Clock(wall_now, hub.started)
        self.schedules = Schedules(hub, settings.rooms, self.clock)
        self.auth = Auth(hub, settings, self.clock, self.schedules.name_of)
        self.queues = Queues(hub, settings, self.auth)
        self.handoffs = Handoffs(hub, self.auth)
        self.moderation = Moderation(hub, settings, self.auth, self.schedules.before_close)
        self.crisis = Crisis(hub, settings, self.auth, self.queues)
        self._timed = (self.queues, self.handoffs, self.moderation, self.crisis, self.schedules)

    # ----------------------------------------------------------- what it adds

    def handlers(self) -> Mapping[type[Any], Handler]:
        queues, handoffs, moderation, crisis = (
            self.queues, self.handoffs, self.moderation, self.crisis
        )
        return {
            m.Auth: self.auth.handle_auth,
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

    def resumers(self) -> Mapping[type[Any], Resumer]:
        return {Ticket: self.queues.resume, RemovedSeat: self.moderation.resume_removed}

    def directory(self, now: float) -> list[m.RoomInfo]:
        return self.schedules.directory(now)

    # ------------------------------------------------------------- decisions

    def prepare_join(self, peer: Peer, room_code: str, now: float) -> None:
        self.clock.seen(now)
        self.schedules.prepare_join(room_code, now)

    def check_join(self, peer: Peer, room: Room, now: float) -> None:
        self.moderation.check_join(peer, room, now)
        self.schedules.check_join(peer, room, now)

    def is_moderator_for(self, peer: Peer, room_code: str | None, now: float) -> bool:
        self.clock.seen(now)
        return self.auth.is_moderator_for(peer, room_code)

    def hold_for_moderation(self, seat: Seat, body: bytes, now: float) -> int:
        return self.moderation.hold_for_moderation(seat, body, now)

    # ------------------------------------------------------------- observers

    def on_disconnect(self, peer: Peer, now: float) -> None:
        self.queues.on_disconnect(peer, now)
        self.moderation.on_disconnect(peer, now)

    def on_room_end(self, room: Room) -> None:
        self.handoffs.on_room_end(room)
        self.moderation.on_room_end(room)
        self.crisis.on_room_end(room)
        self.schedules.on_room_end(room)

    # ----------------------------------------------------------------- timers

    def next_deadline(self) -> float | None:
        due = [d for d in (flow.next_deadline() for flow in self._timed) if d is not None]
        return min(due) if due else None

    def on_timer(self, now: float) -> None:
        self.clock.seen(now)
        for flow in self._timed:
            deadline = flow.next_deadline()
            if deadline is not None and deadline <= now:
                flow.on_timer(now)


def extension(
    config: Config, wall_now: Callable[[], float] = time.time
) -> Callable[[Hub], Flows]:
    """What ``Hub(..., extend=...)`` takes: builds the flows on the new hub. The flows'
    settings are parsed here, first, so bad settings raise ``ConfigError`` at once."""
    settings = parse(config)
    return lambda hub: Flows(hub, settings, wall_now)


def installed(hub: Hub) -> Flows:
    """The flows of ``hub`` (tests re-anchor the wall clock through it)."""
    if not isinstance(hub.ext, Flows):
        raise TypeError("this hub was built without the flows")
    return hub.ext


__all__ = ["Flows", "extension", "installed"]
