"""Padding and the encrypted transport (``protocol.frames``)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from haven.protocol.errors import ErrorCode, FrameError, NoiseError, ProtocolError
from haven.protocol.frames import (
    BUCKETS,
    MAX_ENVELOPE,
    WIRE_SIZES,
    Transport,
    bucket_for,
    pad,
    unpad,
)
from haven.protocol.noise import (
    MAX_NONCE,
    CipherState,
    load_private,
    nk_initiator,
    nk_responder,
    public_bytes,
)

KEY_UP = bytes(range(32))
KEY_DOWN = bytes(range(32, 64))

#: Lengths around every bucket edge (an envelope of b-2 bytes exactly fills bucket b).
EDGE_LENGTHS = sorted(
    {0, 1, MAX_ENVELOPE}
    | {n for b in BUCKETS for n in (b - 3, b - 2, b - 1) if 0 <= n <= MAX_ENVELOPE}
)


def pair() -> tuple[Transport, Transport]:
    """Two ends of one connection with fixed keys: (client, relay)."""
    client = Transport(CipherState(KEY_UP), CipherState(KEY_DOWN))
    relay = Transport(CipherState(KEY_DOWN), CipherState(KEY_UP))
    return client, relay


def expect(code: ErrorCode) -> pytest.RaisesExc[FrameError]:
    return pytest.raises(FrameError, check=lambda exc: exc.code is code)


# --------------------------------------------------------------------------- padding


def test_documented_sizes() -> None:
    assert BUCKETS == (256, 1024, 4096, 16384, 65519)
    assert WIRE_SIZES == (272, 1040, 4112, 16400, 65535)
    assert MAX_ENVELOPE == 65517


@pytest.mark.parametrize("size", EDGE_LENGTHS)
def test_pad_round_trip_at_bucket_edges(size: int) -> None:
    envelope = bytes([0xA5]) * size
    padded = pad(envelope)
    assert len(padded) == bucket_for(size) == min(b for b in BUCKETS if b >= size + 2)
    assert padded[:2] == size.to_bytes(2, "big")
    assert padded[2 + size :] == bytes(len(padded) - 2 - size)
    assert unpad(padded) == envelope


@settings(max_examples=200)
@given(st.binary(max_size=5000))
def test_pad_round_trip_any(envelope: bytes) -> None:
    assert unpad(pad(envelope)) == envelope


def test_oversize_envelope_refused() -> None:
    with expect(ErrorCode.TOO_LARGE):
        pad(bytes(MAX_ENVELOPE + 1))
    client, _ = pair()
    with expect(ErrorCode.TOO_LARGE):
        client.seal(bytes(MAX_ENVELOPE + 1))


@pytest.mark.parametrize("size", [0, 1, 255, 257, 65518, 65520, 65535])
def test_unpad_refuses_non_bucket_lengths(size: int) -> None:
    with expect(ErrorCode.BAD_PADDING):
        unpad(bytes(size))


def test_unpad_refuses_length_beyond_frame() -> None:
    for bucket in BUCKETS:
        bad = (bucket - 1).to_bytes(2, "big") + bytes(bucket - 2)
        with expect(ErrorCode.BAD_PADDING):
            unpad(bad)
        assert unpad((bucket - 2).to_bytes(2, "big") + bytes(bucket - 2)) == bytes(bucket - 2)


def test_unpad_refuses_any_nonzero_padding_byte() -> None:
    padded = pad(b"hi")
    for pos in range(4, len(padded)):
        bad = padded[:pos] + b"\x01" + padded[pos + 1 :]
        with expect(ErrorCode.BAD_PADDING):
            unpad(bad)


# --------------------------------------------------------------------------- transport


@pytest.mark.parametrize("size", EDGE_LENGTHS)
def test_seal_open_wire_sizes(size: int) -> None:
    client, relay = pair()
    envelope = bytes([7]) * size
    wire = client.seal(envelope)
    assert len(wire) in WIRE_SIZES
    assert len(wire) == bucket_for(size) + 16
    assert relay.open(wire) == envelope


def test_seal_padded_matches_seal_and_fans_out() -> None:
    padded = pad(b"broadcast")
    recipients = [pair() for _ in range(3)]
    for client, relay in recipients:
        assert client.open(relay.seal_padded(padded)) == b"broadcast"
    a, _ = pair()
    b, _ = pair()
    assert a.seal_padded(padded) == b.seal(b"broadcast")  # same key, same nonce
    with expect(ErrorCode.BAD_PADDING):
        a.seal_padded(b"not a bucket")


def test_transport_over_nk_handshake() -> None:
    relay_key = load_private(bytes.fromhex("4a" * 32))
    init = nk_initiator(public_bytes(relay_key), b"haven/1")
    resp = nk_responder(relay_key, b"haven/1")
    resp.read_message(init.write_message(b""))
    init.read_message(resp.write_message(b""))
    client, relay = Transport(*init.split()), Transport(*resp.split())
    assert relay.open(client.seal(b"up")) == b"up"
    assert client.open(relay.seal(b"down")) == b"down"


def test_transport_requires_keyed_ciphers() -> None:
    with pytest.raises(NoiseError):
        Transport(CipherState(), CipherState(KEY_UP))


def test_in_order_delivery_and_reorder_replay_rejected() -> None:
    client, relay = pair()
    wires = [client.seal(b"msg %d" % i) for i in range(4)]
    assert relay.open(wires[0]) == b"msg 0"
    with expect(ErrorCode.DECRYPT_FAILED):  # replay
        relay.open(wires[0])
    with expect(ErrorCode.DECRYPT_FAILED):  # reorder: 2 before 1
        relay.open(wires[2])
    # Failures did not advance the receive nonce, so in-order delivery still works.
    assert [relay.open(w) for w in wires[1:]] == [b"msg 1", b"msg 2", b"msg 3"]
    with expect(ErrorCode.DECRYPT_FAILED):
        relay.open(wires[3])


def test_wrong_direction_rejected() -> None:
    client, _ = pair()
    with expect(ErrorCode.DECRYPT_FAILED):  # a reflected message must not decrypt
        client.open(client.seal(b"echo"))


def test_every_bit_flip_in_sealed_message_rejected() -> None:
    client, _ = pair()
    wire = client.seal(b"hello relay")
    assert len(wire) == 272
    for pos in range(len(wire)):
        for bit in range(8):
            _, relay = pair()
            bad = wire[:pos] + bytes([wire[pos] ^ (1 << bit)]) + wire[pos + 1 :]
            with expect(ErrorCode.DECRYPT_FAILED):
                relay.open(bad)


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_bit_flip_in_large_sealed_message_rejected(data: st.DataObject) -> None:
    size = data.draw(st.sampled_from([300, 2000, 9000, MAX_ENVELOPE]))
    client, relay = pair()
    wire = client.seal(bytes(size))
    pos = data.draw(st.integers(0, len(wire) - 1))
    bit = data.draw(st.integers(0, 7))
    bad = wire[:pos] + bytes([wire[pos] ^ (1 << bit)]) + wire[pos + 1 :]
    with expect(ErrorCode.DECRYPT_FAILED):
        relay.open(bad)


def test_wrong_sizes_refused_before_decrypting() -> None:
    _, relay = pair()
    for size in (0, 16, 271, 273, 1039, 65534):
        with expect(ErrorCode.BAD_PADDING):
            relay.open(bytes(size))
    with expect(ErrorCode.TOO_LARGE):
        relay.open(bytes(65536))
    # No decryption was attempted, so nothing was consumed.
    client, _ = pair()
    assert relay.open(client.seal(b"still fine")) == b"still fine"


def test_nonzero_padding_inside_valid_ciphertext_rejected() -> None:
    raw = CipherState(KEY_UP)  # the client's send key, used without frames' padding
    _, relay = pair()
    bad = pad(b"x")
    bad = bad[:-1] + b"\x01"
    with expect(ErrorCode.BAD_PADDING):
        relay.open(raw.encrypt_with_ad(b"", bad))
    long_prefix = (300).to_bytes(2, "big") + bytes(254)
    with expect(ErrorCode.BAD_PADDING):
        relay.open(raw.encrypt_with_ad(b"", long_prefix))


def test_nonce_exhaustion_surfaces_as_noise_error() -> None:
    send = CipherState(KEY_UP)
    send.set_nonce(MAX_NONCE - 1)
    transport = Transport(send, CipherState(KEY_DOWN))
    transport.seal(b"last")
    with pytest.raises(NoiseError, check=lambda e: e.code is ErrorCode.NONCE_EXHAUSTED):
        transport.seal(b"one too many")


_ANY_WIRE = st.one_of(
    st.binary(max_size=2048),
    st.sampled_from(WIRE_SIZES[:3]).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
)


@settings(max_examples=300, deadline=None)
@given(_ANY_WIRE)
def test_arbitrary_bytes_raise_only_protocol_errors(message: bytes) -> None:
    _, relay = pair()
    with pytest.raises(ProtocolError) as info:
        relay.open(message)
    assert isinstance(info.value, FrameError | NoiseError)
