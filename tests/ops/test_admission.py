"""Admission control: the difficulty curve, the controller under synthetic load (explicit
``now`` values, no network), and on loopback: the SDK solving transparently once the
difficulty rises, a replayed proof refused, the handshake-rate cap answering 4402."""

from __future__ import annotations

import pytest
import trio
from trio_websocket import ConnectionClosed

from haven import client
from haven.protocol import messages as m
from haven.protocol import pow
from haven.protocol.errors import ErrorCode, HavenError
from haven.protocol.session import ClientSession, close_code
from haven.relay.admission import Admission, difficulty_for
from haven.relay.config import Config
from haven.relay.hub import Hub, Peer
from tests.conftest import start_relay

from .helpers import connect, open_ws, port_of, scrape

CONFIG = Config(
    max_connections=100, handshake_rate_per_s=10.0, handshake_burst=20,
    pow_start_load=0.5, pow_min_difficulty=10, pow_max_difficulty=18,
    pow_expensive_per_s=20.0, pow_cooldown=30.0,
)  # fmt: skip


class _Conn:
    """What the controller sees of a connection."""

    def __init__(self, peer: Peer | None, closing: bool = False) -> None:
        self.peer = peer
        self.closing = closing


def test_curve_is_zero_when_calm_and_rises_to_the_maximum() -> None:
    assert difficulty_for(0.0, CONFIG) == 0
    assert difficulty_for(0.49, CONFIG) == 0
    assert difficulty_for(0.5, CONFIG) == 10
    assert difficulty_for(0.75, CONFIG) == 14
    assert difficulty_for(1.0, CONFIG) == 18
    assert difficulty_for(5.0, CONFIG) == 18
    steps = [difficulty_for(x / 100, CONFIG) for x in range(0, 200)]
    assert steps == sorted(steps)
    assert difficulty_for(1.0, CONFIG.replace(pow_min_difficulty=0, pow_max_difficulty=0)) == 0


def test_controller_rises_with_load_and_falls_to_zero_after_calm() -> None:
    hub = Hub(CONFIG, 0.0)
    adm = Admission(CONFIG, hub, 0.0)
    peers = [hub.connect(0.0) for _ in range(3)]
    conns = [_Conn(p) for p in peers] + [_Conn(None), _Conn(hub.connect(0.0), closing=True)]

    for t in range(1, 6):  # calm: a few handshakes and requests, few connections
        adm.admit_handshake(float(t))
        adm.tick(float(t), conns, 5)
    assert hub.pow_difficulty == 0
    assert adm.load < 0.5
    assert not hub.out

    # Synthetic surge of expensive requests: 60/s for three seconds.
    now = 5.0
    for _ in range(3):
        now += 1.0
        adm.note_expensive(60)
        adm.tick(now, conns, 5)
    assert adm.load >= 1.0
    assert hub.pow_difficulty == CONFIG.pow_max_difficulty
    # Every live peer was told, each under its own seed; nobody else.
    updates = [(p, msg) for p, msg in hub.out if isinstance(msg, m.ChallengeUpdate)]
    assert {p for p, _ in updates} == set(peers)
    assert all(msg.challenge.seed == p.pow_seed for p, msg in updates)
    assert {msg.challenge.difficulty for _, msg in updates} <= set(range(10, 19))
    assert updates[-1][1].challenge.difficulty == 18
    hub.out.clear()

    # Calm again: the difficulty holds for the cooldown, then drops to 0 in one step.
    seen = []
    while now < 80.0:
        now += 1.0
        adm.tick(now, conns, 5)
        seen.append((now, hub.pow_difficulty))
    calm_at = next(t for t, d in seen if d == 0)
    assert seen[0][1] == CONFIG.pow_max_difficulty
    assert calm_at - 8.0 >= CONFIG.pow_cooldown  # held at least the cooldown
    assert calm_at <= 8.0 + CONFIG.pow_cooldown + 15  # and not much more
    assert all(d in (0, CONFIG.pow_max_difficulty) for _, d in seen)
    final = [msg for _, msg in hub.out if isinstance(msg, m.ChallengeUpdate)]
    assert [u.challenge.difficulty for u in final] == [0, 0, 0]


def test_connections_and_handshake_rate_count_as_load() -> None:
    hub = Hub(CONFIG, 0.0)
    adm = Admission(CONFIG, hub, 0.0)
    adm.update(1.0, 60)  # 60 of 100 connections
    assert adm.load == pytest.approx(0.6)
    assert hub.pow_difficulty == difficulty_for(0.6, CONFIG) > 0

    hub2 = Hub(CONFIG, 0.0)
    adm2 = Admission(CONFIG, hub2, 0.0)
    now = 0.0
    for _ in range(5):  # 30 handshake attempts/s against a 10/s budget
        now += 1.0
        for _ in range(30):
            adm2.admit_handshake(now)
        adm2.update(now, 0)
    assert adm2.handshake_rate > 10.0
    assert hub2.pow_difficulty == CONFIG.pow_max_difficulty


def test_handshake_bucket_refuses_beyond_rate() -> None:
    hub = Hub(CONFIG, 0.0)
    adm = Admission(CONFIG, hub, 0.0)
    admitted = [adm.admit_handshake(0.0) for _ in range(25)]
    assert admitted.count(True) == CONFIG.handshake_burst
    assert adm.admit_handshake(1.0)  # ten more tokens a second later
    assert [adm.admit_handshake(1.0) for _ in range(9)] == [True] * 9
    assert not adm.admit_handshake(1.0)


def test_failed_proof_counts_and_reminds_the_peer_of_its_challenge() -> None:
    hub = Hub(CONFIG, 0.0)
    adm = Admission(CONFIG, hub, 0.0)
    peer = hub.connect(0.0)
    hub.pow_difficulty = 12
    hub.handle(peer, m.CreateRoom(id=1, kind="group"), 1.0)
    update, error = hub.out
    challenge = m.Challenge(seed=peer.pow_seed, difficulty=12)
    assert update == (peer, m.ChallengeUpdate(challenge=challenge))
    assert isinstance(error[1], m.Error)
    assert error[1].code == ErrorCode.POW_REQUIRED
    hub.out.clear()
    nonce = pow.solve(peer.pow_seed, 2, 12)
    hub.handle(peer, m.CreateRoom(id=2, kind="group", pow=nonce), 1.0)
    assert isinstance(hub.out[-1][1], m.Joined)
    assert adm.expensive_total == 2


def _foreign_nonce(seed: bytes, other_seed: bytes, rid: int, difficulty: int) -> bytes:
    """A nonce that solves (seed, rid) but not (other_seed, rid)."""
    n = 0
    while True:
        nonce = n.to_bytes(8, "big")
        try:
            pow.verify(seed, rid, difficulty, nonce)
        except HavenError:
            n += 1
            continue
        try:
            pow.verify(other_seed, rid, difficulty, nonce)
        except HavenError:
            return nonce
        n += 1


async def test_sdk_solves_after_difficulty_rises_and_replays_are_refused(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    info = await start_relay(
        nursery, metrics_port=0, pow_expensive_per_s=1.0, pow_min_difficulty=8,
        pow_max_difficulty=8, pow_cooldown=20.0,
    )  # fmt: skip
    assert info.metrics_url is not None
    port = port_of(info.url)
    raw = await connect(nursery, port, info.public_key, "127.0.0.2")
    other = await connect(nursery, port, info.public_key, "127.0.0.3")
    assert raw.welcome.challenge.difficulty == 0
    async with client.connect(info.url, info.public_key) as sdk:
        assert sdk.challenge.difficulty == 0
        for _ in range(6):  # a burst of room creation: 6/s against 1/s of "full load"
            await sdk.create_room(kind="group")
        await trio.sleep(1.5)  # one housekeeping tick
        assert info.relay.hub.pow_difficulty == 8
        update = await raw.receive()
        assert update == m.ChallengeUpdate(
            challenge=m.Challenge(seed=raw.welcome.challenge.seed, difficulty=8)
        )
        _, _, values = await scrape(info.metrics_url)
        assert values["haven_pow_difficulty{}"] == 8
        assert values["haven_expensive_requests_total{}"] == 6

        # The SDK solves transparently at the new difficulty.
        room = await sdk.create_room(kind="group")
        assert room.code in info.relay.hub.rooms
        assert sdk.challenge.difficulty == 8

        # A raw client without work is refused; with work it succeeds.
        rid = raw.next_id()
        await raw.send(m.CreateRoom(id=rid, kind="group"))
        refused = await raw.reply(rid)
        assert isinstance(refused, m.Error)
        assert refused.code == ErrorCode.POW_REQUIRED
        rid = raw.next_id()
        nonce = pow.solve(raw.welcome.challenge.seed, rid, 8)
        await raw.send(m.CreateRoom(id=rid, kind="group", pow=nonce))
        assert isinstance(await raw.reply(rid), m.Joined)
        # Replayed: the same id and proof again on the same connection.
        await raw.send(m.CreateRoom(id=rid, kind="group", pow=nonce))
        replay = await raw.reply(rid)
        assert isinstance(replay, m.Error)
        assert replay.code == ErrorCode.BAD_REQUEST_ID
        # Replayed onto another connection: valid for raw's seed, not for other's.
        stolen = _foreign_nonce(
            raw.welcome.challenge.seed, other.welcome.challenge.seed, rid, 8
        )
        other.last_id = rid - 1
        await other.send(m.CreateRoom(id=rid, kind="group", pow=stolen))
        foreign = await other.reply(rid)
        assert isinstance(foreign, m.Error)
        assert foreign.code == ErrorCode.POW_INVALID
        _, _, values = await scrape(info.metrics_url)
        assert values["haven_limits_hit_total{reason=pow_required}"] == 1
        assert values["haven_limits_hit_total{reason=pow_invalid}"] == 1

        # Calm: after the cooldown the difficulty is back to zero and peers are told.
        await trio.sleep(60)
        assert info.relay.hub.pow_difficulty == 0
        while not (
            isinstance(msg := await raw.receive(), m.ChallengeUpdate)
            and msg.challenge.difficulty == 0
        ):
            pass
        await sdk.create_room(kind="group")
        assert sdk.challenge.difficulty == 0


async def test_handshake_rate_cap_closes_with_server_full(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    info = await start_relay(nursery, metrics_port=0, handshake_rate_per_s=1.0, handshake_burst=2)
    assert info.metrics_url is not None
    port = port_of(info.url)
    await connect(nursery, port, info.public_key, "127.0.0.2")
    await connect(nursery, port, info.public_key, "127.0.0.3")
    ws, _ = await open_ws(nursery, port, "127.0.0.4")
    hello = ClientSession(info.public_key).start()

    async def say_hello() -> None:  # the refusal may arrive before or after the send
        await ws.send_message(hello)
        await ws.get_message()

    with pytest.raises(ConnectionClosed) as closed:
        await say_hello()
    assert closed.value.reason is not None
    assert closed.value.reason.code == close_code(ErrorCode.SERVER_FULL)
    _, _, values = await scrape(info.metrics_url)
    assert values["haven_limits_hit_total{reason=handshake_rate}"] == 1
    assert values["haven_handshakes_total{reason=capacity,result=failed}"] == 1
    await trio.sleep(1.0)  # a token later, a new client gets in
    await connect(nursery, port, info.public_key, "127.0.0.5")
