"""The synchronous hub with no network and explicit time: rooms, order, resume, expiry.

Each ``Member`` is one fake connection (a hub ``Peer``) with its own request ids; every
call returns what the hub queued for that member, so tests read like a conversation.
"""

from __future__ import annotations

from typing import Any

import pytest

from haven.protocol import messages as m
from haven.protocol.errors import ErrorCode
from haven.relay.config import Config
from haven.relay.extension import PlainRooms
from haven.relay.hub import Hub, Peer
from haven.relay.rooms import Room


class Member:
    """One connection to the hub, with strictly increasing request ids."""

    def __init__(self, hub: Hub, now: float = 0.0) -> None:
        self.hub = hub
        self.peer: Peer = hub.connect(now)
        self.inbox: list[m.Message] = []
        self.last_id = 0

    def request(self, make: Any, now: float = 0.0) -> m.Message:
        """Handle ``make(id)`` and return its reply; events for everyone are routed."""
        self.last_id += 1
        self.hub.handle(self.peer, make(self.last_id), now)
        route(self.hub)
        replies = [x for x in self.inbox if isinstance(x, m.Reply) and x.id == self.last_id]
        assert len(replies) == 1, self.inbox
        self.inbox.remove(replies[0])
        return replies[0]

    def take(self, kind: type[Any] = m.Message) -> list[Any]:
        """Remove and return the queued events of ``kind``."""
        got = [x for x in self.inbox if isinstance(x, kind)]
        self.inbox = [x for x in self.inbox if not isinstance(x, kind)]
        return got


_members: dict[int, Member] = {}


def route(hub: Hub) -> None:
    """Move everything the hub queued into the recipients' inboxes."""
    out, hub.out = hub.out, []
    for peer, msg in out:
        _members[id(peer)].inbox.append(msg)


def member(hub: Hub, now: float = 0.0) -> Member:
    mem = Member(hub, now)
    _members[id(mem.peer)] = mem
    return mem


def new_hub(**config: Any) -> Hub:
    return Hub(Config(port=0, metrics_port=None, **config), 0.0)


def room_of(hub: Hub, size: int, **create: Any) -> tuple[str, list[Member], list[m.Seat]]:
    members = [member(hub) for _ in range(size)]
    joined = members[0].request(lambda i: m.CreateRoom(id=i, kind="group", **create))
    assert isinstance(joined, m.Joined)
    seats = [joined.seat]
    for mem in members[1:]:
        reply = mem.request(lambda i: m.Join(id=i, room=seats[0].room))
        assert isinstance(reply, m.Joined)
        seats.append(reply.seat)
    for mem in members:
        mem.inbox.clear()
    return seats[0].room, members, seats


def send(mem: Member, code: str, body: bytes, now: float = 0.0) -> int:
    sent = mem.request(lambda i: m.Send(id=i, room=code, body=body), now)
    assert isinstance(sent, m.Sent), sent
    assert sent.seq is not None
    return sent.seq


def error_code(reply: m.Message) -> int:
    assert isinstance(reply, m.Error), reply
    return reply.code


# ----------------------------------------------------------------------- order


def test_every_member_gets_the_others_messages_in_seq_order() -> None:
    hub = new_hub()
    code, members, seats = room_of(hub, 4)
    acks = []
    for k in range(12):
        sender = k * 7 % 4
        acks.append((send(members[sender], code, b"%d" % k), sender, b"%d" % k))
    assert [seq for seq, _, _ in acks] == sorted({seq for seq, _, _ in acks})
    for index, mem in enumerate(members):
        got = [(d.seq, d.sender, d.body) for d in mem.take(m.Deliver)]
        want = [(seq, seats[s].alias, body) for seq, s, body in acks if s != index]
        assert got == want


def test_seq_is_shared_by_presence_and_messages() -> None:
    hub = new_hub()
    code, (a, b), seats = room_of(hub, 2)
    first = send(a, code, b"x")
    assert first == seats[1].seq + 1
    c = member(hub)
    joined = c.request(lambda i: m.Join(id=i, room=code))
    assert isinstance(joined, m.Joined)
    presence = b.take(m.Presence)
    assert [(p.event, p.seq, p.members) for p in presence] == [("joined", first + 1, 3)]
    assert joined.seat.seq == first + 1


# ---------------------------------------------------------------------- resume


def test_resume_replays_what_was_missed_in_order_without_own_presence() -> None:
    hub = new_hub()
    code, (a, b, c), seats = room_of(hub, 3)
    send(a, code, b"before")  # queued for b, but b's connection dies before handling it
    b.take()
    hub.disconnect(b.peer, 1.0)
    route(hub)
    send(a, code, b"a1", 2.0)
    send(c, code, b"c1", 2.0)
    back = member(hub, 3.0)
    after = seats[-1].seq  # the last event b really handled
    reply = back.request(lambda i: m.Resume(id=i, token=seats[1].token, after=after), 3.0)
    assert isinstance(reply, m.Joined)
    assert reply.seat.resumed
    assert reply.seat.token != seats[1].token
    replayed = back.take(m.Deliver)
    assert [(d.body, d.sender) for d in replayed] == [
        (b"before", seats[0].alias), (b"a1", seats[0].alias), (b"c1", seats[2].alias)
    ]
    assert not back.take(m.Presence), "own away/back presence must not be replayed to self"
    assert [p.event for p in a.take(m.Presence)] == ["away", "back"]


def test_resume_excludes_own_messages() -> None:
    hub = new_hub()
    code, (a, b), seats = room_of(hub, 2)
    start = seats[-1].seq
    send(a, code, b"mine", 1.0)
    send(b, code, b"theirs", 1.0)
    send(a, code, b"mine again", 1.0)
    hub.disconnect(a.peer, 2.0)
    route(hub)
    back = member(hub, 3.0)
    reply = back.request(lambda i: m.Resume(id=i, token=seats[0].token, after=start), 3.0)
    assert isinstance(reply, m.Joined)
    assert [d.body for d in back.take(m.Deliver)] == [b"theirs"]


def test_old_token_dies_on_resume() -> None:
    hub = new_hub()
    _code, (a, _b), seats = room_of(hub, 2)
    hub.disconnect(a.peer, 1.0)
    route(hub)
    back = member(hub, 2.0)
    ok = back.request(lambda i: m.Resume(id=i, token=seats[0].token, after=0), 2.0)
    assert isinstance(ok, m.Joined)
    thief = member(hub, 3.0)
    err = thief.request(lambda i: m.Resume(id=i, token=seats[0].token, after=0), 3.0)
    assert error_code(err) == ErrorCode.RESUME_FAILED


def test_ring_overflow_fails_resume_and_releases_the_seat() -> None:
    hub = new_hub(resume_buffer=4)
    code, (a, b), seats = room_of(hub, 2)
    hub.disconnect(a.peer, 1.0)
    route(hub)
    for k in range(5):
        send(b, code, b"%d" % k, 2.0)
    back = member(hub, 3.0)
    err = back.request(lambda i: m.Resume(id=i, token=seats[0].token, after=seats[-1].seq), 3.0)
    assert error_code(err) == ErrorCode.RESUME_FAILED
    assert [(p.event, p.members) for p in b.take(m.Presence)] == [("away", 2), ("left", 1)]
    assert seats[0].token not in hub.tokens
    assert len(hub.rooms[code].seats) == 1


def test_resume_exactly_at_the_ring_edge_works() -> None:
    hub = new_hub(resume_buffer=4)
    code, (a, b), seats = room_of(hub, 2)
    hub.disconnect(a.peer, 1.0)  # the "away" presence takes one ring slot
    route(hub)
    for k in range(3):
        send(b, code, b"%d" % k, 2.0)
    back = member(hub, 3.0)
    ok = back.request(lambda i: m.Resume(id=i, token=seats[0].token, after=seats[-1].seq), 3.0)
    assert isinstance(ok, m.Joined)
    assert [d.body for d in back.take(m.Deliver)] == [b"0", b"1", b"2"]


def test_grace_window_expiry_on_tick() -> None:
    hub = new_hub(resume_grace=30)
    code, (a, b), seats = room_of(hub, 2)
    hub.disconnect(a.peer, 10.0)
    route(hub)
    hub.handle_timers(39.0)
    route(hub)
    assert seats[0].token in hub.tokens
    hub.handle_timers(40.0)
    route(hub)
    assert seats[0].token not in hub.tokens
    assert [p.event for p in b.take(m.Presence)] == ["away", "left"]
    back = member(hub, 41.0)
    err = back.request(lambda i: m.Resume(id=i, token=seats[0].token, after=0), 41.0)
    assert error_code(err) == ErrorCode.RESUME_FAILED
    assert code in hub.rooms


def test_typing_is_ephemeral_and_never_replayed() -> None:
    hub = new_hub(typing_interval=2)
    code, (a, b, c), seats = room_of(hub, 3)
    start = seats[-1].seq
    hub.disconnect(b.peer, 1.0)
    route(hub)
    assert isinstance(a.request(lambda i: m.Typing(id=i, room=code), 1.0), m.Ok)
    assert [(t.room, t.alias) for t in c.take(m.TypingEvent)] == [(code, seats[0].alias)]
    assert hub.rooms[code].seq == start + 1  # typing took no sequence number (b's away did)
    err = a.request(lambda i: m.Typing(id=i, room=code), 2.0)
    assert error_code(err) == ErrorCode.RATE_LIMITED
    assert isinstance(err, m.Error)
    assert err.retry_after == 1
    assert isinstance(a.request(lambda i: m.Typing(id=i, room=code), 3.0), m.Ok)
    back = member(hub, 4.0)
    ok = back.request(lambda i: m.Resume(id=i, token=seats[1].token, after=start), 4.0)
    assert isinstance(ok, m.Joined)
    assert not back.take(m.TypingEvent)


# ---------------------------------------------------------------- leaving, ending


def test_leave_releases_the_seat_and_tells_the_room() -> None:
    hub = new_hub()
    code, (a, b), seats = room_of(hub, 2)
    reply = a.request(lambda i: m.Leave(id=i, room=code))
    assert isinstance(reply, m.Left)
    assert reply.room == code
    assert code not in a.peer.seats
    assert seats[0].token not in hub.tokens
    assert [(p.event, p.alias, p.members) for p in b.take(m.Presence)] == [
        ("left", seats[0].alias, 1)
    ]
    assert error_code(a.request(lambda i: m.Send(id=i, room=code, body=b"x"))) == (
        ErrorCode.NOT_A_MEMBER
    )
    hub.disconnect(a.peer, 1.0)  # nothing held: the seat was given up
    assert not hub.held


class RecordsRoomEnds(PlainRooms):
    """A plain relay whose extension notes each room that ends."""

    def __init__(self, hub: Hub) -> None:
        super().__init__(hub)
        self.ended: list[str] = []

    def on_room_end(self, room: Room) -> None:
        self.ended.append(room.code)


def test_room_is_forgotten_when_the_last_member_goes() -> None:
    hub = Hub(Config(port=0, metrics_port=None), 0.0, extend=RecordsRoomEnds)
    assert isinstance(hub.ext, RecordsRoomEnds)
    ended = hub.ext.ended
    code, (a, b), _ = room_of(hub, 2)
    send(a, code, b"something private")
    a.request(lambda i: m.Leave(id=i, room=code))
    b.request(lambda i: m.Leave(id=i, room=code))
    assert ended == [code]
    assert code not in hub.rooms
    assert not hub.tokens
    assert not hub.held
    stranger = member(hub)
    assert error_code(stranger.request(lambda i: m.Join(id=i, room=code))) == (
        ErrorCode.ROOM_NOT_FOUND
    )


def test_room_ttls_on_tick() -> None:
    hub = new_hub()
    idle, (a,), _ = room_of(hub, 1, idle_ttl=10)
    hard, (b,), _ = room_of(hub, 1, idle_ttl=100, hard_ttl=20)
    hub.handle_timers(9.0)
    send(b, hard, b"keep alive", 9.0)
    route(hub)
    assert idle in hub.rooms
    hub.handle_timers(10.0)
    route(hub)
    assert idle not in hub.rooms
    assert [(c.room, c.reason) for c in a.take(m.RoomClosed)] == [(idle, "expired")]
    send(b, hard, b"still busy", 19.0)
    hub.handle_timers(20.0)
    route(hub)
    assert hard not in hub.rooms
    assert [(c.room, c.reason) for c in b.take(m.RoomClosed)] == [(hard, "expired")]


def test_held_seats_of_an_ended_room_are_dropped() -> None:
    hub = new_hub(resume_grace=100)
    code, (a, _b), seats = room_of(hub, 2, idle_ttl=10)
    hub.disconnect(a.peer, 1.0)
    hub.handle_timers(12.0)
    route(hub)
    assert code not in hub.rooms
    assert seats[0].token not in hub.tokens
    assert not hub.held


# -------------------------------------------------------------------- requests


def test_request_ids_and_rate_limit_use_the_given_time() -> None:
    hub = new_hub(rate_per_s=1, rate_burst=2)
    a = member(hub)
    assert isinstance(a.request(lambda i: m.Ping(id=i), 0.0), m.Pong)
    assert isinstance(a.request(lambda i: m.Ping(id=i), 0.0), m.Pong)
    limited = a.request(lambda i: m.Ping(id=i), 0.0)
    assert error_code(limited) == ErrorCode.RATE_LIMITED
    assert isinstance(limited, m.Error)
    assert limited.retry_after == 1
    assert isinstance(a.request(lambda i: m.Ping(id=i), 1.0), m.Pong)
    hub.handle(a.peer, m.Ping(id=a.last_id), 5.0)  # reused id
    route(hub)
    (err,) = a.take(m.Error)
    assert err.code == ErrorCode.BAD_REQUEST_ID


def test_timers_touch_only_what_is_due(monkeypatch: pytest.MonkeyPatch) -> None:
    """10,000 idle rooms: a timer pass when nothing is due looks at none of them, and
    each seat and room expires at its own deadline (no once-a-second scan)."""
    hub = new_hub(room_idle_ttl=600.0, resume_grace=60.0, max_rooms=20_000)
    members = [member(hub) for _ in range(10_000)]
    for mem in members:
        mem.request(lambda r: m.CreateRoom(id=r, kind="group"))
    codes = list(hub.rooms)
    assert len(codes) == 10_000
    hub.disconnect(members[0].peer, 5.0)  # its seat is held until 65.0
    assert hub.next_deadline() == 65.0

    looked: list[object] = []
    real = hub._room_timer

    def spy(room: Room, now: float) -> None:
        looked.append(room)
        real(room, now)

    monkeypatch.setattr(hub, "_room_timer", spy)
    hub.handle_timers(64.9)
    assert looked == []
    assert len(hub.held) == 1
    hub.handle_timers(65.0)  # the held seat gives up: its room empties and ends
    assert not hub.held
    assert looked == []
    assert codes[0] not in hub.rooms
    busy = hub.rooms[codes[1]]
    busy.last_activity = 300.0  # active later: its timer moves on when it fires
    hub.handle_timers(600.0)
    assert len(looked) == 9_999
    assert list(hub.rooms) == [codes[1]]
    assert hub.timers.get(busy) == 900.0


def test_a_seat_and_its_room_due_together_release_the_seat_first() -> None:
    """Within one timer pass, held seats go before rooms: the others hear "left" before
    the room closes as expired (the order the once-a-second scan had)."""
    hub = new_hub(room_idle_ttl=100.0, resume_grace=60.0)
    code, (a, b), _ = room_of(hub, 2)
    hub.disconnect(a.peer, 40.0)  # grace ends at 100.0, with the room's idle TTL
    route(hub)
    b.inbox.clear()
    hub.handle_timers(100.0)
    route(hub)
    events = [(type(e).__name__, getattr(e, "event", getattr(e, "reason", None)))
              for e in b.inbox]  # fmt: skip
    assert events == [("Presence", "left"), ("RoomClosed", "expired")]
    assert code not in hub.rooms
