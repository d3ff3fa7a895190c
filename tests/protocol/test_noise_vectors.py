"""Byte-for-byte conformance of ``protocol.noise`` with the cacophony test vectors.

Every vector for ``25519_ChaChaPoly_SHA256`` is run with both parties: each side writes its
own messages (ciphertext must equal the vector) and reads the other side's (payload must
equal the vector), the handshake hashes must match, and so must the transport messages
after Split.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from haven.protocol.noise import HandshakeState, load_private, parse_protocol_name, public_bytes

VECTORS_FILE = (
    Path(__file__).parent / "vectors" / "noise" / "cacophony_25519_ChaChaPoly_SHA256.json"
)
VECTORS: list[dict[str, Any]] = json.loads(VECTORS_FILE.read_text())["vectors"]
MIN_VECTORS = 59


def _party(vector: dict[str, Any], side: str, initiator: bool) -> HandshakeState:
    def raw(field: str) -> bytes | None:
        value = vector.get(f"{side}_{field}")
        return None if value is None else bytes.fromhex(value)

    static, ephemeral = raw("static"), raw("ephemeral")
    return HandshakeState(
        vector["protocol_name"],
        initiator=initiator,
        prologue=raw("prologue") or b"",
        s=None if static is None else load_private(static),
        e=None if ephemeral is None else load_private(ephemeral),
        rs=raw("remote_static"),
        re=raw("remote_ephemeral"),
        psks=[bytes.fromhex(p) for p in vector.get(f"{side}_psks", [])],
    )


def _static_public(vector: dict[str, Any], side: str) -> bytes | None:
    static = vector.get(f"{side}_static")
    return None if static is None else public_bytes(load_private(bytes.fromhex(static)))


def run_vector(vector: dict[str, Any]) -> None:
    """Run one vector end to end; fails with an assertion naming the first mismatch."""
    pattern = parse_protocol_name(vector["protocol_name"]).pattern
    init = _party(vector, "init", initiator=True)
    resp = _party(vector, "resp", initiator=False)
    messages = vector["messages"]
    handshake_len = len(pattern.messages)
    assert len(messages) > handshake_len

    for i, message in enumerate(messages[:handshake_len]):
        payload = bytes.fromhex(message["payload"])
        ciphertext = bytes.fromhex(message["ciphertext"])
        writer, reader = (init, resp) if i % 2 == 0 else (resp, init)
        assert writer.write_message(payload) == ciphertext, f"handshake message {i}"
        assert reader.read_message(ciphertext) == payload, f"handshake message {i}"

    assert init.complete
    assert resp.complete
    expected_hash = bytes.fromhex(vector["handshake_hash"])
    assert init.handshake_hash == expected_hash
    assert resp.handshake_hash == expected_hash
    # Static keys were learned (from a pre-message or a message) exactly where they exist.
    assert resp.remote_static == _static_public(vector, "init")
    assert init.remote_static == _static_public(vector, "resp")

    init_send, init_recv = init.split()
    resp_send, resp_recv = resp.split()
    for i, message in enumerate(messages[handshake_len:], start=handshake_len):
        payload = bytes.fromhex(message["payload"])
        ciphertext = bytes.fromhex(message["ciphertext"])
        # One-way patterns only ever send from the initiator; otherwise turns alternate.
        from_initiator = pattern.one_way or i % 2 == 0
        send, recv = (init_send, resp_recv) if from_initiator else (resp_send, init_recv)
        assert send.encrypt_with_ad(b"", payload) == ciphertext, f"transport message {i}"
        assert recv.decrypt_with_ad(b"", ciphertext) == payload, f"transport message {i}"


@pytest.mark.parametrize(
    "vector",
    VECTORS,
    ids=[f"{i}-{v['protocol_name']}" for i, v in enumerate(VECTORS)],
)
def test_vector(vector: dict[str, Any]) -> None:
    run_vector(vector)


def test_vector_file_is_complete() -> None:
    """Guard against a truncated or empty vector file making the suite pass vacuously."""
    assert len(VECTORS) >= MIN_VECTORS
    names = {v["protocol_name"].split("_")[1] for v in VECTORS}
    fundamental = {"N", "K", "X", "NN", "NK", "NX", "KN", "KK", "KX"}
    fundamental |= {"XN", "XK", "XX", "IN", "IK", "IX"}
    assert fundamental <= names
    assert any("psk" in name for name in names)


def test_every_vector_counted() -> None:
    """Run the whole file in one test and count, independent of test selection or order."""
    ran = 0
    for vector in VECTORS:
        run_vector(vector)
        ran += 1
    assert ran == len(VECTORS) >= MIN_VECTORS
