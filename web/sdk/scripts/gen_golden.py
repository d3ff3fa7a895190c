"""Write web/sdk/test/golden.json: envelopes as the Python codec writes them.

The TypeScript codec must decode each and re-encode it byte for byte, and refuse each
``refused`` case with the same code. Run from the repository root:
PYTHONPATH=. python web/sdk/scripts/gen_golden.py (tests/web checks it is current).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

from haven.protocol import codec, pow
from haven.protocol import messages as m

OUT = Path(__file__).resolve().parents[1] / "test" / "golden.json"
ROOM = "0004-1061-050r-3gg2-8a1c-60t3-gffk"


def samples() -> list[m.Message]:
    seat = m.Seat(room=ROOM, alias="quiet-heron-27", token=bytes(range(32)), seq=3, members=2,
                  kind="group", topic="evening check-in", rules="be kind")  # fmt: skip
    return [
        m.Hello(versions=(1,)),
        m.Ping(id=1),
        m.CreateRoom(id=2, kind="group", topic="evening check-in"),
        m.Join(id=3, room=ROOM),
        m.Send(id=1, room=ROOM, body=b"hello"),
        m.Sent(id=1, room=ROOM, seq=1),
        m.Joined(id=2, seat=seat),
        m.Deliver(room=ROOM, seq=4, sender="calm-otter-12", body=b"\x00\xff" * 100),
        m.Presence(room=ROOM, seq=5, alias="calm-otter-12", event="joined", members=3),
        m.Rooms(id=4, rooms=(m.RoomInfo(room=ROOM, topic="circle", open=True, members=5),
                             m.RoomInfo(topic="Sunday group", members=0, schedule="every Sunday",
                                        opens_in=3600))),
        m.Error(id=5, code=400, message="too many requests; slow down", retry_after=2),
        m.Resume(id=6, token=bytes(32), after=70000),
        m.Draining(retry_after=5),
        m.RoomClosed(room=ROOM, reason="taken_over"),
        m.Send(id=2**53 - 1, room=ROOM, body=b"x" * 300),
    ]


#: Envelopes both codecs must refuse: (hex, error code, why).
REFUSED = [
    ("81a174a470696e67ff", 100, "trailing byte"),
    ("81a174c1", 100, "reserved byte 0xc1"),
    ("82a174a470696e67a278d40100", 100, "ext type"),
    ("81a178919191" + "90", 100, "depth 5"),
    ("81a178dc0101" + "c0" * 257, 100, "array of 257"),
    ("81a174a470696e", 100, "truncated"),
]


def value_for(tp: Any, meta: Any) -> Any:
    """A deterministic valid value for one field (present, so every field is exercised)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = next(a for a in typing.get_args(tp) if a is not type(None))
        return value_for(inner, meta)
    if tp is bool:
        return True
    if tp is int:
        return min(int(meta.get("lo", 0)) + 7, int(meta.get("hi", m.MAX_INT)))
    if tp is str:
        if meta.get("choices"):
            return meta["choices"][-1]
        return "héllo wörld"[: min(int(meta["max"]), 11)]
    if tp is bytes:
        return bytes(range(min(int(meta["max"]), 40)))
    if origin is tuple:
        elem = typing.get_args(tp)[0]
        return tuple(value_for(elem, {"max": 40}) for _ in range(2))
    assert dataclasses.is_dataclass(tp)
    return build(tp)


def build(cls: Any) -> Any:
    """One instance of ``cls`` with every field set."""
    hints = typing.get_type_hints(cls)
    return cls(**{f.name: value_for(hints[f.name], f.metadata) for f in dataclasses.fields(cls)})


def every_type() -> list[m.Message]:
    """One message of every type in the catalogue, every field set."""
    tables = (m.HANDSHAKE, m.REQUESTS, m.SERVER_MESSAGES)
    return [build(cls) for table in tables for _, cls in sorted(table.items())]


def render() -> str:
    messages = [*samples(), *every_type()]
    envelopes = [{"type": msg.T, "hex": codec.encode(msg).hex()} for msg in messages]
    refused = [{"hex": h, "code": c, "why": w} for h, c, w in REFUSED]
    proofs = []
    for k, difficulty in enumerate((1, 8, 12, 16)):
        seed = bytes(range(k, k + 32))
        nonce = pow.solve(seed, 1000 + k, difficulty)
        assert nonce is not None
        proofs.append({"seed": seed.hex(), "id": 1000 + k, "difficulty": difficulty,
                       "nonce": nonce.hex()})  # fmt: skip
    data = {"envelopes": envelopes, "refused": refused, "proofs": proofs}
    return json.dumps(data, indent=1) + "\n"


if __name__ == "__main__":
    OUT.write_text(render(), "utf-8")
    sys.stdout.write(f"wrote {OUT}\n")
