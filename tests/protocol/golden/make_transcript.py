"""Write ``session.json``: one whole Haven session with fixed keys, byte for byte.

Every key is fixed (the relay's static key and both ephemeral keys), so the Noise
handshake and every sealed frame are deterministic. ``tests/protocol/test_session.py``
replays the recorded bytes through ``ClientSession`` and ``RelaySession`` in both
directions and checks that each side produces exactly the recorded bytes, so any change
to the handshake, padding, encryption, envelopes or ids shows up as a diff of this file.
Regenerate only for a deliberate wire change (and bump the protocol version if needed):

    .venv/bin/python tests/protocol/golden/make_transcript.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from haven.protocol import codec, frames, noise
from haven.protocol import messages as m
from haven.protocol.session import ClientSession, RelaySession, ReplyReceived, Welcomed

OUT = Path(__file__).with_name("session.json")

RELAY_STATIC = bytes(range(1, 33))
CLIENT_E = bytes(range(33, 65))
RELAY_E = bytes(range(65, 97))
ROOM = "0004-1061-050r-3gg2-8a1c-60t3-gffk"

WELCOME = m.Welcome(
    version=1,
    limits=m.Limits(
        max_envelope=65517, max_body=4096, max_rooms=8, max_members=64, rate=10, burst=20,
        resume_grace=120, resume_buffer=1000, idle_timeout=300,
    ),
    challenge=m.Challenge(seed=bytes(32), difficulty=0),
)
SEAT = m.Seat(room=ROOM, alias="quiet-heron-27", token=bytes(range(32)), seq=0, members=1,
              kind="direct")  # fmt: skip

#: The conversation after the handshake: (direction, message), in wire order.
CONVERSATION: list[tuple[str, m.Message]] = [
    ("up", m.CreateRoom(id=1, kind="direct")),
    ("down", m.Joined(id=1, seat=SEAT)),
    ("down", m.Presence(room=ROOM, seq=1, alias="calm-otter-12", event="joined", members=2)),
    ("up", m.Send(id=2, room=ROOM, body=b"hello")),
    ("down", m.Sent(id=2, room=ROOM, seq=2)),
    ("down", m.Deliver(room=ROOM, seq=3, sender="calm-otter-12", body=b"hi, I'm here" * 30)),
    ("up", m.Ping(id=3)),
    ("down", m.Pong(id=3)),
    ("up", m.Join(id=4, room="0000-0000-0000-0000-0000-0000-0000")),
    ("down", m.Error(id=4, code=404, message="no such room")),
    ("down", m.ChallengeUpdate(challenge=m.Challenge(seed=b"\x07" * 32, difficulty=8))),
    ("down", m.Draining(retry_after=5)),
]


def keys() -> tuple[X25519PrivateKey, X25519PrivateKey, X25519PrivateKey]:
    """(relay static, client ephemeral, relay ephemeral)."""
    return tuple(X25519PrivateKey.from_private_bytes(k) for k in (RELAY_STATIC, CLIENT_E, RELAY_E))  # type: ignore[return-value]


def record() -> dict[str, Any]:
    static, client_e, relay_e = keys()
    client = ClientSession(noise.public_bytes(static.public_key()), e=client_e)
    relay = RelaySession(static, e=relay_e)
    hello = client.start()
    relay.receive_hello(hello)
    welcome = relay.accept(WELCOME)
    assert isinstance(client.receive(welcome), Welcomed)
    steps = []
    for direction, msg in CONVERSATION:
        if direction == "up":
            assert isinstance(msg, m.Request)
            frame = client.send(msg)
            assert relay.receive(frame) == msg
        else:
            frame = relay.seal_padded(frames.pad(codec.encode(msg)))
            event = client.receive(frame)
            got = event.reply if isinstance(event, ReplyReceived) else event.message  # type: ignore[union-attr]
            assert got == msg
        steps.append({"dir": direction, "type": msg.T, "envelope": codec.encode(msg).hex(),
                      "frame": frame.hex()})  # fmt: skip
    return {
        "relay_static": RELAY_STATIC.hex(),
        "client_ephemeral": CLIENT_E.hex(),
        "relay_ephemeral": RELAY_E.hex(),
        "hello": hello.hex(),
        "welcome_envelope": codec.encode(WELCOME).hex(),
        "welcome": welcome.hex(),
        "steps": steps,
    }


if __name__ == "__main__":
    OUT.write_text(json.dumps(record(), indent=1) + "\n", "utf-8")
    print(f"wrote {OUT}")
