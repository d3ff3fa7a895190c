"""Fuzz the relay's whole per-frame path without sockets: open -> unpad -> decode -> hub ->
encode every reply.

The invariant, in the style of h11's fuzzers: whatever arrives, either it is handled, or
it raises one of our typed errors (``HavenError``), never anything else; and every reply
or event the hub produces encodes and pads within the protocol's limits. Inputs are
sealed under a real Noise NK session (so they reach the codec and the hub) and come in
three kinds: random bytes as a frame (must fail authentication, and must not desync the
session), random msgpack values as envelopes, and real requests with mutated bytes.

CI runs a few hundred examples. For a long run by hand, set ``HAVEN_FUZZ_EXAMPLES``:

    HAVEN_FUZZ_EXAMPLES=200000 .venv/bin/python -m pytest tests/fuzz -q -p no:cacheprovider
"""

from __future__ import annotations

import os
from typing import Any

import msgpack
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from haven.protocol import codec, frames, noise
from haven.protocol import messages as m
from haven.protocol.errors import DecodeError, HavenError
from haven.protocol.messages import REQUESTS
from haven.protocol.session import ClientSession, RelaySession, Welcomed
from haven.relay import flows
from haven.relay.config import Config
from haven.relay.hub import Hub

EXAMPLES = int(os.environ.get("HAVEN_FUZZ_EXAMPLES", "300"))

CODE = "0" * 34  # the shape of a room code; the checksum will mostly fail


def _session() -> tuple[ClientSession, RelaySession]:
    """A completed handshake: (client session, relay session)."""
    relay_key = X25519PrivateKey.generate()
    client = ClientSession(noise.public_bytes(relay_key.public_key()))
    relay = RelaySession(relay_key)
    relay.receive_hello(client.start())
    welcome = m.Welcome(
        version=1,
        limits=m.Limits(
            max_envelope=65517, max_body=4096, max_rooms=8, max_members=64, rate=10, burst=20,
            resume_grace=120, resume_buffer=1000, idle_timeout=300,
        ),
        challenge=m.Challenge(seed=bytes(32), difficulty=0),
    )
    assert isinstance(client.receive(relay.accept(welcome)), Welcomed)
    return client, relay


SAMPLES: list[m.Request] = [
    m.Ping(id=1),
    m.CreateRoom(id=1, kind="group", topic="t"),
    m.Join(id=1, room=CODE),
    m.Send(id=1, room=CODE, body=b"hello"),
    m.Typing(id=1, room=CODE),
    m.Resume(id=1, token=b"\x01" * 32, after=0),
    m.Directory(id=1),
    m.RequestHelp(id=1, queue="helpline"),
    m.Auth(id=1, token=b"hv1.x.y"),
    m.HandoffAccept(id=1, code="42-aardvark-adroitness-baboon"),
]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**64), 2**64 - 1), st.floats(),
    st.text(max_size=40), st.binary(max_size=64),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=30,
)
type_names = st.sampled_from(sorted(REQUESTS))


@st.composite
def envelopes(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 2))
    if kind == 0:  # any msgpack value, sometimes shaped like a request
        value: Any = draw(values)
        if draw(st.booleans()):
            value = {"t": draw(st.one_of(type_names, st.just("x"))),
                     "id": draw(st.integers(-5, 2**54)), **draw(st.dictionaries(
                         st.text(max_size=8), values, max_size=4))}  # fmt: skip
        try:
            return msgpack.packb(value)  # type: ignore[no-any-return]
        except (OverflowError, ValueError, TypeError):
            return b"\xc1"
    data = bytearray(codec.encode(draw(st.sampled_from(SAMPLES))))
    for _ in range(draw(st.integers(1 if kind == 2 else 0, 4))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data += draw(st.binary(max_size=8))
    return bytes(data[: frames.MAX_ENVELOPE])


#: Random bytes as a frame: any length, or exactly a valid wire size (reaches decryption).
raw_frames = st.one_of(
    st.binary(max_size=300), st.binary(min_size=frames.WIRE_SIZES[0], max_size=frames.WIRE_SIZES[0])
).map(lambda b: b"raw" + b)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.one_of(envelopes(), raw_frames), min_size=1, max_size=12))
def test_every_frame_is_handled_or_refused_with_a_typed_error(inputs: list[bytes]) -> None:
    config = Config(port=0, metrics_port=None, extra={"queues": [{"name": "helpline"}]})
    hub = Hub(config, 0.0, extend=flows.extension(config, wall_now=lambda: 1_730_624_400.0))
    peer = hub.connect(0.0)
    client, relay = _session()
    now = 0.0
    for item in inputs:
        now += 0.25
        if item.startswith(b"raw"):
            # Random bytes as a transport frame: authentication must fail, typed.
            try:
                relay.receive(item[3:])
            except HavenError:
                continue
            raise AssertionError("a random frame was accepted")
        try:
            request = relay.receive(client.seal_envelope(item))  # the session stays in step
        except DecodeError as exc:
            hub.bad_request(peer, exc, exc.request_id, now)
        else:
            hub.handle(peer, request, now)
        hub.handle_timers(now)
        out, hub.out = hub.out, []
        for _, message in out:
            padded = frames.pad(codec.encode(message))  # every reply fits the limits
            assert len(padded) in frames.BUCKETS
