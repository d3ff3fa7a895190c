"""Behaviour of ``protocol.noise`` beyond the published vectors: limits, misuse, attacks."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import given, settings
from hypothesis import strategies as st

from haven.protocol import noise
from haven.protocol.errors import ErrorCode, NoiseError, ProtocolError
from haven.protocol.noise import (
    MAX_MESSAGE,
    MAX_NONCE,
    PATTERNS,
    PROTOCOL_NAME,
    CipherState,
    HandshakeState,
    load_private,
    nk_initiator,
    nk_responder,
    parse_protocol_name,
    pattern_from_name,
    public_bytes,
)

KEY = bytes(range(32))
RELAY = load_private(bytes.fromhex("4a" * 32))
RELAY_PUB = public_bytes(RELAY)
PROLOGUE = b"haven/1"
INIT_E = load_private(bytes.fromhex("11" * 32))
RESP_E = load_private(bytes.fromhex("22" * 32))

#: X25519 public keys of small order (and non-canonical encodings of them), plus the
#: same with the ignored top bit set.
_LOW_ORDER_HEX = [
    "00" * 32,
    "01" + "00" * 31,
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ec" + "ff" * 30 + "7f",
    "ed" + "ff" * 30 + "7f",
    "ee" + "ff" * 30 + "7f",
]
LOW_ORDER = [bytes.fromhex(h) for h in _LOW_ORDER_HEX]
LOW_ORDER += [p[:31] + bytes((p[31] | 0x80,)) for p in LOW_ORDER]


def expect(code: ErrorCode) -> pytest.RaisesExc[NoiseError]:
    """``pytest.raises`` for a NoiseError carrying exactly ``code``."""
    return pytest.raises(NoiseError, check=lambda exc: exc.code is code)


def nk_pair(
    *, fixed: bool = True, relay_public: bytes = RELAY_PUB
) -> tuple[HandshakeState, HandshakeState]:
    init_e, resp_e = (INIT_E, RESP_E) if fixed else (None, None)
    return (
        nk_initiator(relay_public, PROLOGUE, e=init_e),
        nk_responder(RELAY, PROLOGUE, e=resp_e),
    )


def nk_messages(
    init: HandshakeState, resp: HandshakeState, p1: bytes = b"hello", p2: bytes = b"welcome"
) -> tuple[bytes, bytes]:
    """Run a full NK handshake, returning both handshake messages."""
    m1 = init.write_message(p1)
    assert resp.read_message(m1) == p1
    m2 = resp.write_message(p2)
    assert init.read_message(m2) == p2
    return m1, m2


# --------------------------------------------------------------------------- CipherState


def test_nonce_encoding_is_32_zero_bits_then_little_endian_counter() -> None:
    cipher = CipherState(KEY)
    aead = ChaCha20Poly1305(KEY)
    for n in range(3):
        expected = aead.encrypt(bytes(4) + n.to_bytes(8, "little"), b"msg", b"ad")
        assert cipher.encrypt_with_ad(b"ad", b"msg") == expected
    assert cipher.nonce == 3


def test_nonce_exhaustion_never_wraps() -> None:
    send, recv = CipherState(KEY), CipherState(KEY)
    send.set_nonce(MAX_NONCE - 1)
    recv.set_nonce(MAX_NONCE - 1)
    last = send.encrypt_with_ad(b"", b"last")
    nonce = bytes(4) + (MAX_NONCE - 1).to_bytes(8, "little")
    assert last == ChaCha20Poly1305(KEY).encrypt(nonce, b"last", b"")
    assert send.nonce == MAX_NONCE
    for _ in range(2):
        with expect(ErrorCode.NONCE_EXHAUSTED):
            send.encrypt_with_ad(b"", b"one too many")
        assert send.nonce == MAX_NONCE
    assert recv.decrypt_with_ad(b"", last) == b"last"
    with expect(ErrorCode.NONCE_EXHAUSTED):
        recv.decrypt_with_ad(b"", last)


def test_set_nonce_range() -> None:
    cipher = CipherState(KEY)
    for bad in (-1, MAX_NONCE + 1):
        with pytest.raises(ValueError, match="nonce"):
            cipher.set_nonce(bad)


def test_failed_decrypt_does_not_advance_nonce() -> None:
    send, recv = CipherState(KEY), CipherState(KEY)
    ciphertext = send.encrypt_with_ad(b"ad", b"payload")
    forged = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
    for bad_ad, bad_ct in ((b"ad", forged), (b"other", ciphertext), (b"ad", b"short")):
        with expect(ErrorCode.DECRYPT_FAILED):
            recv.decrypt_with_ad(bad_ad, bad_ct)
        assert recv.nonce == 0
    assert recv.decrypt_with_ad(b"ad", ciphertext) == b"payload"
    assert recv.nonce == 1


def test_without_key_cipher_is_identity() -> None:
    cipher = CipherState()
    assert not cipher.has_key()
    assert cipher.encrypt_with_ad(b"ad", b"clear") == b"clear"
    assert cipher.decrypt_with_ad(b"ad", b"clear") == b"clear"
    with expect(ErrorCode.UNEXPECTED_MESSAGE):
        cipher.rekey()


def test_rekey_follows_spec_and_keeps_nonce() -> None:
    send, recv = CipherState(KEY), CipherState(KEY)
    first = send.encrypt_with_ad(b"", b"a")
    assert recv.decrypt_with_ad(b"", first) == b"a"
    send.rekey()
    recv.rekey()
    assert (send.nonce, recv.nonce) == (1, 1)
    second = send.encrypt_with_ad(b"", b"b")
    new_key = ChaCha20Poly1305(KEY).encrypt(
        bytes(4) + MAX_NONCE.to_bytes(8, "little"), bytes(32), b""
    )[:32]
    assert second == ChaCha20Poly1305(new_key).encrypt(
        bytes(4) + (1).to_bytes(8, "little"), b"b", b""
    )
    assert recv.decrypt_with_ad(b"", second) == b"b"


def test_cipher_key_length() -> None:
    with expect(ErrorCode.BAD_KEY):
        CipherState(bytes(31))


# --------------------------------------------------------------------------- NK handshake


def test_nk_round_trip() -> None:
    init, resp = nk_pair(fixed=False)
    assert init.is_my_turn
    assert not resp.is_my_turn
    nk_messages(init, resp)
    assert init.complete
    assert resp.complete
    assert init.handshake_hash == resp.handshake_hash
    assert init.remote_static == RELAY_PUB
    assert resp.remote_static is None  # the client stays anonymous
    i_send, i_recv = init.split()
    r_send, r_recv = resp.split()
    assert r_recv.decrypt_with_ad(b"", i_send.encrypt_with_ad(b"", b"up")) == b"up"
    assert i_recv.decrypt_with_ad(b"", r_send.encrypt_with_ad(b"", b"down")) == b"down"


def test_nk_message_sizes() -> None:
    init, resp = nk_pair()
    m1, m2 = nk_messages(init, resp, b"", b"")
    assert len(m1) == len(m2) == 32 + 16  # e, then the empty payload's tag


def test_protocol_name_and_helpers() -> None:
    parsed = parse_protocol_name(PROTOCOL_NAME)
    assert parsed.pattern is PATTERNS["NK"]
    assert (parsed.dh, parsed.cipher, parsed.hash) == ("25519", "ChaChaPoly", "SHA256")
    raw = bytes(range(32))
    assert public_bytes(load_private(raw)) == public_bytes(load_private(raw).public_key())
    with expect(ErrorCode.BAD_KEY):
        load_private(raw[:31])


def test_split_only_when_complete_and_once() -> None:
    init, resp = nk_pair()
    with expect(ErrorCode.UNEXPECTED_MESSAGE):
        init.split()
    nk_messages(init, resp)
    init.split()
    with expect(ErrorCode.UNEXPECTED_MESSAGE):
        init.split()


def test_out_of_turn_use_is_refused_without_harm() -> None:
    init, resp = nk_pair()
    with expect(ErrorCode.UNEXPECTED_MESSAGE):
        init.read_message(bytes(48))
    with expect(ErrorCode.UNEXPECTED_MESSAGE):
        resp.write_message(b"")
    m1 = init.write_message(b"")
    with expect(ErrorCode.UNEXPECTED_MESSAGE):
        init.write_message(b"")
    resp.read_message(m1)
    with expect(ErrorCode.UNEXPECTED_MESSAGE):
        resp.read_message(m1)
    init.read_message(resp.write_message(b""))
    # Misuse touched no state, so the handshake still completes correctly.
    assert init.complete
    assert init.handshake_hash == resp.handshake_hash
    for state in (init, resp):
        with expect(ErrorCode.UNEXPECTED_MESSAGE):
            state.write_message(b"")
        with expect(ErrorCode.UNEXPECTED_MESSAGE):
            state.read_message(m1)


def test_oversize_handshake_messages_refused() -> None:
    init, resp = nk_pair()
    overhead = 32 + 16
    with expect(ErrorCode.TOO_LARGE):
        init.write_message(bytes(MAX_MESSAGE - overhead + 1))
    # Refused before touching state: the largest allowed payload still works.
    m1 = init.write_message(bytes(MAX_MESSAGE - overhead))
    assert len(m1) == MAX_MESSAGE
    assert resp.read_message(m1) == bytes(MAX_MESSAGE - overhead)

    _, fresh = nk_pair()
    with expect(ErrorCode.TOO_LARGE):
        fresh.read_message(m1 + b"\x00")


@pytest.mark.parametrize("point", LOW_ORDER, ids=lambda p: p.hex()[:8] + ".." + p.hex()[-2:])
def test_low_order_points_rejected(point: bytes) -> None:
    with expect(ErrorCode.BAD_KEY):
        nk_initiator(point, PROLOGUE)
    # As the initiator's ephemeral in message 1.
    _, resp = nk_pair()
    with expect(ErrorCode.BAD_KEY):
        resp.read_message(point + bytes(16))
    # And the DH itself refuses the all-zero result, independent of the list above.
    with expect(ErrorCode.BAD_KEY):
        noise._dh(RELAY, point)


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_wrong_length_public_key_rejected(size: int) -> None:
    with expect(ErrorCode.BAD_KEY):
        nk_initiator(bytes([9]) * size, PROLOGUE)


def test_short_handshake_message_rejected() -> None:
    for size in (0, 31, 32, 47):
        _, resp = nk_pair()
        with expect(ErrorCode.HANDSHAKE_FAILED):
            resp.read_message(bytes([9]) * size)


def test_wrong_relay_key_fails_and_poisons() -> None:
    impostor_pub = public_bytes(load_private(bytes.fromhex("77" * 32)))
    init, resp = nk_pair(relay_public=impostor_pub)
    m1 = init.write_message(b"hello")
    with pytest.raises(NoiseError) as info:
        resp.read_message(m1)
    assert info.value.code in (ErrorCode.HANDSHAKE_FAILED, ErrorCode.DECRYPT_FAILED)
    # The state is now unusable, even for a genuine message.
    genuine, _ = nk_pair()
    with expect(ErrorCode.HANDSHAKE_FAILED):
        resp.read_message(genuine.write_message(b"hello"))
    with expect(ErrorCode.HANDSHAKE_FAILED):
        resp.write_message(b"")


def _flips(message: bytes) -> list[tuple[int, int]]:
    return [(pos, bit) for pos in range(len(message)) for bit in range(8)]


def _flipped(message: bytes, pos: int, bit: int) -> bytes:
    return message[:pos] + bytes([message[pos] ^ (1 << bit)]) + message[pos + 1 :]


def test_every_bit_flip_in_nk_message_1_is_rejected() -> None:
    init, _ = nk_pair()
    m1 = init.write_message(b"payload!")
    for pos, bit in _flips(m1):
        _, resp = nk_pair()
        with pytest.raises(NoiseError):
            resp.read_message(_flipped(m1, pos, bit))
        assert not resp.complete


def test_every_bit_flip_in_nk_message_2_is_rejected() -> None:
    init, resp = nk_pair()
    m1 = init.write_message(b"payload!")
    resp.read_message(m1)
    m2 = resp.write_message(b"answer!!")
    for pos, bit in _flips(m2):
        init, _ = nk_pair()
        init.write_message(b"payload!")
        with pytest.raises(NoiseError):
            init.read_message(_flipped(m2, pos, bit))
        assert not init.complete


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_message_1_raises_only_noise_errors(message: bytes) -> None:
    _, resp = nk_pair()
    try:
        resp.read_message(message)
    except NoiseError:
        return
    pytest.fail("random bytes passed as an NK message 1")  # needs a valid tag under es


def test_replayed_message_1_gives_a_different_session() -> None:
    # A recorded session: the client's message 1 and some transport traffic.
    init, resp = nk_pair(fixed=False)
    m1, m2 = nk_messages(init, resp)
    i_send, _ = init.split()
    recorded = [i_send.encrypt_with_ad(b"", b"secret %d" % i) for i in range(3)]

    # An attacker replays message 1 to a fresh relay session.
    replay = nk_responder(RELAY, PROLOGUE)
    assert replay.read_message(m1) == b"hello"  # NK cannot stop this by itself...
    m2_replay = replay.write_message(b"welcome")
    assert m2_replay != m2  # ...but the relay's fresh ephemeral changes the transcript,
    assert replay.handshake_hash != resp.handshake_hash
    _, replay_recv = replay.split()
    for message in recorded:  # so the recorded traffic is useless to the attacker.
        with expect(ErrorCode.DECRYPT_FAILED):
            replay_recv.decrypt_with_ad(b"", message)


def test_prologue_mismatch_fails() -> None:
    init = nk_initiator(RELAY_PUB, b"haven/1")
    resp = nk_responder(RELAY, b"haven/2")
    with pytest.raises(NoiseError):
        resp.read_message(init.write_message(b""))


# --------------------------------------------------------------------------- patterns


def test_all_fundamental_patterns_present() -> None:
    names = ["N", "K", "X", "NN", "NK", "NX", "KN", "KK", "KX", "XN", "XK", "XX", "IN", "IK", "IX"]
    assert set(names) <= set(PATTERNS)
    assert PATTERNS["NK"].responder_pre == ("s",)
    assert PATTERNS["NK"].messages == (("e", "es"), ("e", "ee"))
    assert PATTERNS["X"].one_way


def test_psk_modifiers_rewrite_pattern_data() -> None:
    pattern = pattern_from_name("NNpsk0+psk2")
    assert pattern.name == "NNpsk0+psk2"
    assert pattern.messages == (("psk", "e"), ("e", "ee", "psk"))
    assert pattern.has_psk
    assert pattern_from_name("XXpsk3").messages[2] == ("s", "se", "psk")
    assert not PATTERNS["NN"].has_psk


@pytest.mark.parametrize(
    "name",
    [
        "Noise_NK_448_ChaChaPoly_SHA256",
        "Noise_NK_25519_AESGCM_SHA256",
        "Noise_NK_25519_ChaChaPoly_BLAKE2s",
        "Noise_NK_25519_ChaChaPoly_SHA512",
        "Noise_ZZ_25519_ChaChaPoly_SHA256",
        "Noise_NNpsk_25519_ChaChaPoly_SHA256",
        "Noise_NNpskx_25519_ChaChaPoly_SHA256",
        "Noise_NNpsk3_25519_ChaChaPoly_SHA256",
        "Noise_NNpsk0+psk0_25519_ChaChaPoly_SHA256",
        "Noise_NNpsk0+hfs_25519_ChaChaPoly_SHA256",
        "Noise_XXfallback_25519_ChaChaPoly_SHA256",
        "NoiseNK_25519_ChaChaPoly_SHA256",
        "Noise_NK_25519_ChaChaPoly",
        "",
    ],
)
def test_unsupported_protocol_names(name: str) -> None:
    with pytest.raises(NoiseError):
        parse_protocol_name(name)


def _psk_pair(psk_i: bytes, psk_r: bytes) -> tuple[HandshakeState, HandshakeState]:
    name = "Noise_NKpsk0+psk2_25519_ChaChaPoly_SHA256"
    init = HandshakeState(name, initiator=True, rs=RELAY_PUB, psks=[psk_i, psk_i[::-1]])
    resp = HandshakeState(name, initiator=False, s=RELAY, psks=[psk_r, psk_r[::-1]])
    return init, resp


def test_psk_combo_round_trip_and_mismatch() -> None:
    init, resp = _psk_pair(KEY, KEY)
    nk_messages(init, resp)
    assert init.handshake_hash == resp.handshake_hash

    init, resp = _psk_pair(KEY, bytes(32))
    with pytest.raises(NoiseError):
        resp.read_message(init.write_message(b""))


def test_psk_count_and_length_checked() -> None:
    name = "Noise_NNpsk0_25519_ChaChaPoly_SHA256"
    with expect(ErrorCode.BAD_KEY):
        HandshakeState(name, initiator=True)
    with expect(ErrorCode.BAD_KEY):
        HandshakeState(name, initiator=True, psks=[KEY, KEY])
    with expect(ErrorCode.BAD_KEY):
        HandshakeState(name, initiator=True, psks=[KEY[:31]])


def test_missing_keys_refused_at_construction() -> None:
    with expect(ErrorCode.BAD_KEY):  # XX initiator sends s
        HandshakeState(PATTERNS["XX"], initiator=True)
    with expect(ErrorCode.BAD_KEY):  # NK initiator must know the responder's s
        HandshakeState(PATTERNS["NK"], initiator=True)
    with expect(ErrorCode.BAD_KEY):  # NK responder proves its s
        HandshakeState(PATTERNS["NK"], initiator=False)


def test_errors_are_protocol_errors() -> None:
    assert issubclass(NoiseError, ProtocolError)
