"""Properties of the whole synchronous core under random programs of requests.

Hypothesis drives several peers (visitors, staff, a moderator) through random
sequences of every kind of request, drops and reconnects, and passing time, and checks
after every step that:

* every request got exactly one reply (a typed reply or an ``error``) with its id, and
  no request hit an ``INTERNAL`` error (a handler bug);
* the hub's indexes agree with each other (tokens, seats, held seats, rooms);
* every bound holds (members per room, the resume ring, seats per connection);

and at the end, once everyone is gone and the grace window and TTLs have passed, that
nothing at all is left in memory: no room, no token, no held seat, no ticket.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from haven.protocol import messages as m
from haven.protocol.errors import ErrorCode
from haven.relay import flows
from haven.relay.hub import Peer
from haven.relay.rooms import Seat

from .helpers import Operator
from .hubkit import Kit

BODIES = st.binary(max_size=40)


class World:
    """The peers of one random program and what they have learned so far."""

    def __init__(self, kit: Kit) -> None:
        self.kit = kit
        self.visitors = [kit.peer() for _ in range(3)]
        self.staff = kit.peer("staff", queues=("helpline",))
        self.moderator = kit.peer("moderator", rooms=("*",))
        self.codes: list[str] = []  #: room codes seen in replies
        self.tokens: list[bytes] = []  #: resume tokens seen in replies
        self.aliases: list[str] = []
        self.spoken: list[str] = []
        self.items: list[tuple[str, int]] = []

    @property
    def peers(self) -> list[Peer]:
        return [*self.visitors, self.staff, self.moderator]

    def reconnect(self, index: int) -> None:
        """Drop a peer's connection; a fresh connection takes its place."""
        old = self.peers[index]
        self.kit.hub.disconnect(old, self.kit.now)
        if index < 3:
            self.visitors[index] = self.kit.peer()
        elif index == 3:
            self.staff = self.kit.peer("staff", queues=("helpline",))
        else:
            self.moderator = self.kit.peer("moderator", rooms=("*",))
        self.kit.hub.out.clear()

    def learn(self, msg: Any) -> None:
        seat = getattr(msg, "seat", None)
        if isinstance(seat, m.Seat):
            self.codes.append(seat.room)
            self.tokens.append(seat.token)
            self.aliases.append(seat.alias)
        if isinstance(msg, (m.Queued, m.QueuePosition)) and msg.token is not None:
            self.tokens.append(msg.token)
        if isinstance(msg, m.Handoff):
            self.spoken.append(msg.code)
        if isinstance(msg, m.Pending):
            self.items.append((msg.room, msg.item.item))
        if isinstance(msg, m.Sent) and msg.item is not None:
            self.items.append((msg.room, msg.item))
        if isinstance(msg, (m.Presence, m.CrisisAlert)):
            self.aliases.append(msg.alias)


def pick(data: st.DataObject, options: list[Any], fallback: Any) -> Any:
    """One of ``options`` (or ``fallback``), drawn by index: codes and aliases are random,
    so the draw itself must not depend on what the options are."""
    index = data.draw(st.integers(0, 2**16))
    return options[index % len(options)] if options else fallback


MODERATION = {"pending_list", "approve", "edit", "deny", "mute", "remove", "lock",
              "close_room", "announce", "escalate"}
STAFF = {"duty", "take_next", "handoff_invite", "staff_count"}
#: Every request type, with the ones that move messages drawn more often.
WEIGHTED = sorted(m.REQUESTS) + ["send"] * 6 + ["join"] * 4 + ["create_room"] * 2 + [
    "request_help", "take_next", "approve", "handoff_accept", "resume"] * 2


def request(data: st.DataObject, world: World) -> tuple[Peer, type[Any], dict[str, Any]]:
    """A random request from a fitting peer, mostly about things that exist.

    Privileged requests usually come from a peer holding the role and room requests
    usually name a room the peer sits in, so the programs get past the first check;
    the rest of the time they test the refusals.
    """
    name = data.draw(st.sampled_from(WEIGHTED))
    cls = m.REQUESTS[name]
    fitting = data.draw(st.integers(0, 9)) < 8
    if name in MODERATION and fitting:
        peer = world.moderator
    elif name in STAFF and fitting:
        peer = world.staff
    else:
        peer = data.draw(st.sampled_from(world.peers))
    own = sorted(peer.seats)
    code = pick(data, own if own and fitting else world.codes,
                "0000-0000-0000-0000-0000-0000-0000")  # fmt: skip
    live = sorted(world.kit.hub.rooms)
    room = world.kit.hub.rooms.get(code)
    present = sorted(room.seats) if room is not None else []
    alias = pick(data, present if present and fitting else world.aliases, "calm-otter-10")
    queue = data.draw(st.sampled_from(["helpline", "helpline", "other", "nope"]))
    item = pick(data, [i for c, i in world.items if c == code], 1)
    body = data.draw(BODIES)
    fields: dict[str, Any] = {
        "create_room": {"kind": data.draw(st.sampled_from(["direct", "group"])),
                        "premoderated": data.draw(st.booleans()) and peer is world.moderator,
                        "max_members": data.draw(st.sampled_from([None, 2, 3]))},
        "join": {"room": pick(data, live if live and fitting else world.codes, code)},
        "leave": {"room": code},
        "send": {"room": code, "body": body},
        "typing": {"room": code},
        "resume": {"token": pick(data, world.tokens, b"\x00" * 32),
                   "after": data.draw(st.integers(0, 40))},
        "auth": {"token": b"hv1.not-a-token"},
        "request_help": {"queue": queue},
        "cancel_help": {"queue": queue},
        "staff_count": {"queue": queue},
        "duty": {"queue": queue, "on": data.draw(st.integers(0, 3)) > 0},
        "take_next": {"queue": queue},
        "handoff_invite": {"room": code},
        "handoff_accept": {"code": pick(data, world.spoken, "7-aardvark-adroitness-absurd")},
        "pending_list": {"room": code},
        "approve": {"room": code, "item": item},
        "edit": {"room": code, "item": item, "body": body},
        "deny": {"room": code, "item": item},
        "mute": {"room": code, "alias": alias, "muted": data.draw(st.booleans())},
        "remove": {"room": code, "alias": alias},
        "lock": {"room": code, "locked": data.draw(st.booleans())},
        "close_room": {"room": code},
        "announce": {"room": code, "body": body},
        "crisis": {"room": code},
        "escalate": {"room": code, "alias": alias, "queue": queue},
    }.get(name, {})  # fmt: skip
    return peer, cls, fields


def check_consistency(kit: Kit) -> None:
    hub = kit.hub
    for token, target in hub.tokens.items():
        assert token in (target.token, getattr(target, "prev_token", None))
        if isinstance(target, Seat):
            assert target.room.seats.get(target.alias) is target
            assert hub.rooms.get(target.room.code) is target.room
    for code, room in hub.rooms.items():
        assert room.code == code
        assert len(room.ring) <= room.ring_size
        assert room.members <= room.max_members + 1  # +1: a handoff responder
        seqs = [seq for seq, _, _ in room.ring]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == len(seqs)
        for alias, seat in room.seats.items():
            assert seat.alias == alias
            assert hub.tokens.get(seat.token) is seat
            if seat.peer is None:
                assert seat in hub.held
            else:
                assert seat.peer.seats.get(code) is seat
    for seat in hub.held:
        assert seat.peer is None
        assert seat.room.seats.get(seat.alias) is seat


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_random_programs_keep_every_invariant(operator: Operator, data: st.DataObject) -> None:
    kit = Kit(operator)
    world = World(kit)
    kit.hub.out.clear()
    for _ in range(data.draw(st.integers(5, 60))):
        action = data.draw(st.integers(0, 19))
        if action == 0:
            world.reconnect(data.draw(st.integers(0, 4)))
            continue
        if action == 1:
            kit.tick(data.draw(st.sampled_from([0.5, 5.0, 30.0, 70.0])))
            for _, msg in kit.hub.out:
                world.learn(msg)
            kit.hub.out.clear()
            check_consistency(kit)
            continue
        peer, cls, fields = request(data, world)
        rid = kit.send(peer, cls, **fields)
        replies = [
            msg for to, msg in kit.hub.out if to is peer and isinstance(msg, m.Reply)
            and msg.id == rid
        ]  # fmt: skip
        assert len(replies) == 1, (cls.__name__, replies)
        if isinstance(replies[0], m.Error):
            assert replies[0].code != ErrorCode.INTERNAL, (cls.__name__, replies[0])
        for _, msg in kit.hub.out:
            world.learn(msg)
        kit.hub.out.clear()
        check_consistency(kit)

    # Everyone leaves; after the grace window and the longest TTL nothing is left.
    for peer in world.peers:
        kit.hub.disconnect(peer, kit.now)
    kit.tick(kit.config.resume_grace + 1)
    kit.tick(kit.config.room_hard_ttl + 1)
    kit.tick(1)
    hub = kit.hub
    assert hub.rooms == {}
    assert hub.tokens == {}
    assert hub.held == set()
    queues = flows.installed(hub).queues
    assert all(length == 0 for length in queues.lengths().values())
