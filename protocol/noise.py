"""The Noise Protocol Framework (revision 34), suite ``25519_ChaChaPoly_SHA256``, sans-IO.

Haven's client and relay run ``Noise_NK_25519_ChaChaPoly_SHA256``: the client pins the
relay's static public key, so a man in the middle cannot complete the handshake, and the
client stays anonymous (it has no static key at all). Everything here is pure computation
over bytes: no sockets, no clocks, no logging, so the same code is used by the relay, the
SDK and the tests, and it can be checked byte for byte against the published vectors.

Structure follows the specification's own objects, so the code can be read side by side
with it: ``CipherState`` (section 5.1), ``SymmetricState`` (5.2) and ``HandshakeState``
(5.3). Handshake patterns are *data* (``HandshakePattern``); PSK modifiers (section 9) are
applied by rewriting that data, never by special-casing code paths.

Every failure is a ``NoiseError`` carrying an ``ErrorCode``; the library never lets a
``cryptography`` exception escape, because callers map codes onto the wire.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from haven.protocol.errors import ErrorCode, NoiseError

__all__ = [
    "DHLEN",
    "HASHLEN",
    "MAX_MESSAGE",
    "MAX_NONCE",
    "PATTERNS",
    "PROTOCOL_NAME",
    "PSKLEN",
    "TAGLEN",
    "CipherState",
    "HandshakePattern",
    "HandshakeState",
    "ProtocolName",
    "SymmetricState",
    "load_private",
    "nk_initiator",
    "nk_responder",
    "parse_protocol_name",
    "pattern_from_name",
    "public_bytes",
]

#: The one protocol Haven speaks between client and relay.
PROTOCOL_NAME = "Noise_NK_25519_ChaChaPoly_SHA256"

#: Length of an X25519 public key / shared secret.
DHLEN = 32
#: SHA-256 output length; also the length of every derived key.
HASHLEN = 32
#: Poly1305 tag length.
TAGLEN = 16
#: Pre-shared keys are 32 bytes (section 9.1).
PSKLEN = 32
#: Largest Noise message, handshake or transport (section 3).
MAX_MESSAGE = 65535
#: 2**64-1 is reserved (used by ``rekey``); a cipher may never encrypt with it.
MAX_NONCE = 2**64 - 1

_SUITE = ("25519", "ChaChaPoly", "SHA256")
_NONCE_PREFIX = b"\x00\x00\x00\x00"
_MAX_NONCE_BYTES = _NONCE_PREFIX + MAX_NONCE.to_bytes(8, "little")
_ZEROS32 = bytes(32)

# X25519 public keys of small order (libsodium's list). With any clamped private scalar
# they produce the all-zero shared secret, which would make a DH contribute nothing to the
# key. The top bit is ignored by X25519 (RFC 7748), so it is masked before comparing.
_LOW_ORDER = frozenset(
    bytes.fromhex(h)
    for h in (
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    )
)


# --------------------------------------------------------------------------- keys


def public_bytes(key: X25519PrivateKey | X25519PublicKey) -> bytes:
    """The raw 32-byte public key of a private or public X25519 key."""
    if isinstance(key, X25519PrivateKey):
        key = key.public_key()
    return key.public_bytes_raw()


def load_private(raw32: bytes) -> X25519PrivateKey:
    """Load a raw 32-byte X25519 private key; anything else is ``BAD_KEY``."""
    if len(raw32) != DHLEN:
        raise NoiseError("a private key is 32 bytes", code=ErrorCode.BAD_KEY)
    return X25519PrivateKey.from_private_bytes(bytes(raw32))


def _check_public(raw: bytes) -> bytes:
    """Refuse a public key that is not 32 bytes or is of small order.

    Checked when a key enters the state (constructor or message) so a bad pinned key fails
    early; ``_dh`` also refuses an all-zero result, which catches every small-order point.
    """
    raw = bytes(raw)
    if len(raw) != DHLEN:
        raise NoiseError("a public key is 32 bytes", code=ErrorCode.BAD_KEY)
    if raw[:31] + bytes((raw[31] & 0x7F,)) in _LOW_ORDER:
        raise NoiseError("public key of small order", code=ErrorCode.BAD_KEY)
    return raw


def _dh(private: X25519PrivateKey, public: bytes) -> bytes:
    """DH(key_pair, public_key); an all-zero shared secret is ``BAD_KEY``."""
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:
        # cryptography refuses the all-zero output of a small-order point.
        raise NoiseError("public key of small order", code=ErrorCode.BAD_KEY) from None


# --------------------------------------------------------------------------- hashing


def _hash(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "sha256")


def _hkdf(chaining_key: bytes, ikm: bytes, outputs: int) -> tuple[bytes, ...]:
    """HKDF as defined in section 4.3 (RFC 5869 with the salt as chaining key, no info)."""
    temp_key = _hmac(chaining_key, ikm)
    out1 = _hmac(temp_key, b"\x01")
    out2 = _hmac(temp_key, out1 + b"\x02")
    if outputs == 2:
        return out1, out2
    return out1, out2, _hmac(temp_key, out2 + b"\x03")


# --------------------------------------------------------------------------- CipherState


class CipherState:
    """A key ``k`` and a 64-bit nonce ``n`` (section 5.1).

    The AEAD object is built once per key, and the nonce encoding is a cheap concatenation,
    because ``encrypt_with_ad``/``decrypt_with_ad`` sit on the per-message hot path.
    The nonce never wraps: reaching 2**64-1 raises ``NONCE_EXHAUSTED`` so a key is never
    used twice with the same nonce.
    """

    __slots__ = ("_aead", "_n")

    def __init__(self, key: bytes | None = None) -> None:
        self._aead: ChaCha20Poly1305 | None = None
        self._n = 0
        self.initialize_key(key)

    def initialize_key(self, key: bytes | None) -> None:
        """Set ``k`` (or clear it with ``None``) and reset the nonce to zero."""
        if key is not None and len(key) != 32:
            raise NoiseError("a cipher key is 32 bytes", code=ErrorCode.BAD_KEY)
        self._aead = None if key is None else ChaCha20Poly1305(bytes(key))
        self._n = 0

    def has_key(self) -> bool:
        """True once a key is set; before that, encryption is the identity (spec 5.1)."""
        return self._aead is not None

    @property
    def nonce(self) -> int:
        """The nonce the next encryption or decryption will use."""
        return self._n

    def set_nonce(self, n: int) -> None:
        """Set the next nonce (for tests and out-of-band schemes; section 5.1)."""
        if not 0 <= n <= MAX_NONCE:
            raise ValueError("nonce out of range")
        self._n = n

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        """ENCRYPT(k, n++, ad, plaintext), or the plaintext itself when there is no key."""
        aead = self._aead
        if aead is None:
            return plaintext
        n = self._n
        if n >= MAX_NONCE:
            raise NoiseError(code=ErrorCode.NONCE_EXHAUSTED)
        self._n = n + 1
        return aead.encrypt(_NONCE_PREFIX + n.to_bytes(8, "little"), plaintext, ad)

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        """DECRYPT(k, n, ad, ciphertext); the nonce advances only when the tag verifies.

        Not advancing on failure keeps a forged or corrupted message from desynchronising
        the two sides (the caller still decides whether to close the session).
        """
        aead = self._aead
        if aead is None:
            return ciphertext
        n = self._n
        if n >= MAX_NONCE:
            raise NoiseError(code=ErrorCode.NONCE_EXHAUSTED)
        try:
            plaintext = aead.decrypt(_NONCE_PREFIX + n.to_bytes(8, "little"), ciphertext, ad)
        except InvalidTag:
            raise NoiseError(code=ErrorCode.DECRYPT_FAILED) from None
        self._n = n + 1
        return plaintext

    def rekey(self) -> None:
        """k = first 32 bytes of ENCRYPT(k, 2**64-1, empty, 32 zeros) (section 4.2).

        The nonce is left as it is, as the specification requires.
        """
        if self._aead is None:
            raise NoiseError("rekey without a key", code=ErrorCode.UNEXPECTED_MESSAGE)
        key = self._aead.encrypt(_MAX_NONCE_BYTES, _ZEROS32, b"")[:32]
        self._aead = ChaCha20Poly1305(key)


# --------------------------------------------------------------------------- SymmetricState


class SymmetricState:
    """Chaining key ``ck`` and handshake hash ``h`` over a ``CipherState`` (section 5.2)."""

    __slots__ = ("cipher", "ck", "h")

    def __init__(self, protocol_name: bytes) -> None:
        """InitializeSymmetric: ``h`` is the name zero-padded to 32 bytes, or its hash."""
        if len(protocol_name) <= HASHLEN:
            self.h = protocol_name.ljust(HASHLEN, b"\x00")
        else:
            self.h = _hash(protocol_name)
        self.ck = self.h
        self.cipher = CipherState()

    def mix_key(self, ikm: bytes) -> None:
        """MixKey: ``ck, temp_k = HKDF(ck, ikm, 2)``; the cipher is keyed with ``temp_k``."""
        self.ck, temp_k = _hkdf(self.ck, ikm, 2)
        self.cipher.initialize_key(temp_k)

    def mix_hash(self, data: bytes) -> None:
        """MixHash: ``h = HASH(h || data)``."""
        self.h = _hash(self.h + data)

    def mix_key_and_hash(self, ikm: bytes) -> None:
        """MixKeyAndHash (used by ``psk``): ``ck, temp_h, temp_k = HKDF(ck, ikm, 3)``."""
        self.ck, temp_h, temp_k = _hkdf(self.ck, ikm, 3)
        self.mix_hash(temp_h)
        self.cipher.initialize_key(temp_k)

    def get_handshake_hash(self) -> bytes:
        """The transcript hash ``h``; equal on both sides iff they saw the same handshake."""
        return self.h

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        """Encrypt with ``h`` as associated data, then mix the ciphertext into ``h``."""
        ciphertext = self.cipher.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        """Decrypt with ``h`` as associated data, then mix the ciphertext into ``h``."""
        plaintext = self.cipher.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        """Split: two transport ciphers, ``c1`` (initiator to responder) and ``c2``."""
        temp_k1, temp_k2 = _hkdf(self.ck, b"", 2)
        return CipherState(temp_k1), CipherState(temp_k2)


# --------------------------------------------------------------------------- patterns

_TOKENS = frozenset({"e", "s", "ee", "es", "se", "ss", "psk"})
_PRE_TOKENS = frozenset({"e", "s"})


@dataclass(frozen=True, slots=True)
class HandshakePattern:
    """A handshake pattern as data (section 7).

    ``initiator_pre``/``responder_pre`` are the pre-message tokens (keys the other side
    knows in advance); ``messages[i]`` is sent by the initiator when ``i`` is even.
    """

    name: str
    initiator_pre: tuple[str, ...]
    responder_pre: tuple[str, ...]
    messages: tuple[tuple[str, ...], ...]

    def __post_init__(self) -> None:
        for token in self.initiator_pre + self.responder_pre:
            if token not in _PRE_TOKENS:
                raise ValueError(f"bad pre-message token {token!r}")
        for message in self.messages:
            for token in message:
                if token not in _TOKENS:
                    raise ValueError(f"bad token {token!r}")
        if not self.messages:
            raise ValueError("a pattern has at least one message")

    @property
    def has_psk(self) -> bool:
        """True for PSK handshakes, where ``e`` tokens also call MixKey (section 9.2)."""
        return any("psk" in message for message in self.messages)

    @property
    def one_way(self) -> bool:
        """One-way patterns (N, K, X) have a single message, initiator to responder."""
        return len(self.messages) == 1

    def with_psks(self, positions: Sequence[int]) -> HandshakePattern:
        """Apply ``pskN`` modifiers: psk0 starts message 1, pskN (N>0) ends message N."""
        messages = [list(message) for message in self.messages]
        for pos in positions:
            if pos < 0 or pos > len(messages):
                raise NoiseError(f"psk{pos} does not fit {self.name}")
            if pos == 0:
                messages[0].insert(0, "psk")
            else:
                messages[pos - 1].append("psk")
        suffix = "+".join(f"psk{pos}" for pos in positions)
        name = self.name + suffix if suffix else self.name
        return HandshakePattern(
            name, self.initiator_pre, self.responder_pre, tuple(map(tuple, messages))
        )


def _pattern(name: str, pre: str, *messages: str) -> HandshakePattern:
    """Build a pattern from the specification's notation.

    ``pre`` is ``"initiator pre | responder pre"``; each message is ``"e, es"``.
    """

    def tokens(text: str) -> tuple[str, ...]:
        return tuple(t.strip() for t in text.split(",") if t.strip())

    init_pre, _, resp_pre = pre.partition("|")
    return HandshakePattern(
        name, tokens(init_pre), tokens(resp_pre), tuple(tokens(m) for m in messages)
    )


#: Every base pattern of section 7: one-way, fundamental interactive and deferred ones.
#: Deferred patterns are included because the cacophony vectors exercise them.
PATTERNS: dict[str, HandshakePattern] = {
    p.name: p
    for p in (
        # One-way (7.4).
        _pattern("N", "| s", "e, es"),
        _pattern("K", "s | s", "e, es, ss"),
        _pattern("X", "| s", "e, es, s, ss"),
        # Fundamental interactive (7.5).
        _pattern("NN", "|", "e", "e, ee"),
        _pattern("NK", "| s", "e, es", "e, ee"),
        _pattern("NX", "|", "e", "e, ee, s, es"),
        _pattern("KN", "s |", "e", "e, ee, se"),
        _pattern("KK", "s | s", "e, es, ss", "e, ee, se"),
        _pattern("KX", "s |", "e", "e, ee, se, s, es"),
        _pattern("XN", "|", "e", "e, ee", "s, se"),
        _pattern("XK", "| s", "e, es", "e, ee", "s, se"),
        _pattern("XX", "|", "e", "e, ee, s, es", "s, se"),
        _pattern("IN", "|", "e, s", "e, ee, se"),
        _pattern("IK", "| s", "e, es, s, ss", "e, ee, se"),
        _pattern("IX", "|", "e, s", "e, ee, se, s, es"),
        # Deferred (18.1).
        _pattern("NK1", "| s", "e", "e, ee, es"),
        _pattern("NX1", "|", "e", "e, ee, s", "es"),
        _pattern("X1N", "|", "e", "e, ee", "s", "se"),
        _pattern("X1K", "| s", "e, es", "e, ee", "s", "se"),
        _pattern("XK1", "| s", "e", "e, ee, es", "s, se"),
        _pattern("X1K1", "| s", "e", "e, ee, es", "s", "se"),
        _pattern("X1X", "|", "e", "e, ee, s, es", "s", "se"),
        _pattern("XX1", "|", "e", "e, ee, s", "es, s, se"),
        _pattern("X1X1", "|", "e", "e, ee, s", "es, s", "se"),
        _pattern("K1N", "s |", "e", "e, ee", "se"),
        _pattern("K1K", "s | s", "e, es", "e, ee", "se"),
        _pattern("KK1", "s | s", "e", "e, ee, se, es"),
        _pattern("K1K1", "s | s", "e", "e, ee, es", "se"),
        _pattern("K1X", "s |", "e", "e, ee, s, es", "se"),
        _pattern("KX1", "s |", "e", "e, ee, se, s", "es"),
        _pattern("K1X1", "s |", "e", "e, ee, s", "se, es"),
        _pattern("I1N", "|", "e, s", "e, ee", "se"),
        _pattern("I1K", "| s", "e, es, s", "e, ee", "se"),
        _pattern("IK1", "| s", "e, s", "e, ee, se, es"),
        _pattern("I1K1", "| s", "e, s", "e, ee, es", "se"),
        _pattern("I1X", "|", "e, s", "e, ee, s, es", "se"),
        _pattern("IX1", "|", "e, s", "e, ee, se, s", "es"),
        _pattern("I1X1", "|", "e, s", "e, ee, s", "se, es"),
    )
}


def pattern_from_name(name: str) -> HandshakePattern:
    """``"XXpsk3"`` or ``"NNpsk0+psk2"`` -> the base pattern with its PSK modifiers applied."""
    base, sep, modifiers = name.partition("psk")
    pattern = PATTERNS.get(base)
    if pattern is None:
        raise NoiseError(f"unknown handshake pattern {base!r}")
    if not sep:
        return pattern
    positions: list[int] = []
    for modifier in (sep + modifiers).split("+"):
        digits = modifier.removeprefix("psk")
        if modifier == digits or not digits.isdigit() or not digits.isascii():
            raise NoiseError(f"unsupported pattern modifier {modifier!r}")
        positions.append(int(digits))
    if len(set(positions)) != len(positions):
        raise NoiseError("repeated psk modifier")
    return pattern.with_psks(positions)


class ProtocolName(NamedTuple):
    """The parts of a Noise protocol name (section 8)."""

    pattern: HandshakePattern
    dh: str
    cipher: str
    hash: str


def parse_protocol_name(name: str) -> ProtocolName:
    """Parse ``Noise_<pattern>_25519_ChaChaPoly_SHA256``; other suites are refused."""
    parts = name.split("_")
    if len(parts) != 5 or parts[0] != "Noise":
        raise NoiseError("not a Noise protocol name")
    if tuple(parts[2:]) != _SUITE:
        raise NoiseError("only 25519_ChaChaPoly_SHA256 is supported")
    return ProtocolName(pattern_from_name(parts[1]), *_SUITE)


# --------------------------------------------------------------------------- HandshakeState


class HandshakeState:
    """One side of a Noise handshake (section 5.3), driven by a ``HandshakePattern``.

    Call ``write_message`` and ``read_message`` in the pattern's order; once ``complete``,
    ``split()`` hands out the transport ciphers from this side's point of view.

    A failure inside ``read_message`` (or a DH failure in ``write_message``) leaves the
    state *poisoned*: every later call raises. Processing is not atomic — ``h``, ``ck``
    and the cipher nonce have already absorbed part of the bad message — so continuing
    would either desynchronise the transcripts or, worse, let an attacker probe the
    state with repeated guesses. Noise's answer is to abort; so is ours.
    """

    __slots__ = (
        "_cipher_pair",
        "_e",
        "_error",
        "_initiator",
        "_msg_index",
        "_pattern",
        "_psks",
        "_re",
        "_rs",
        "_s",
        "_split_taken",
        "_ss",
    )

    def __init__(
        self,
        pattern: HandshakePattern | str,
        initiator: bool,
        prologue: bytes = b"",
        s: X25519PrivateKey | None = None,
        e: X25519PrivateKey | None = None,
        rs: bytes | None = None,
        re: bytes | None = None,
        psks: Sequence[bytes] = (),
    ) -> None:
        """Initialize (section 5.3): mix prologue and pre-message keys into ``h``.

        ``pattern`` may be a ``HandshakePattern`` or a full protocol name. ``e`` fixes the
        ephemeral key (test vectors only; otherwise a fresh one is generated). ``psks``
        are consumed in order by the ``psk`` tokens and must match their count.
        """
        if isinstance(pattern, str):
            pattern = parse_protocol_name(pattern).pattern
        self._pattern = pattern
        self._initiator = initiator
        self._s = s
        self._e = e
        self._rs = None if rs is None else _check_public(rs)
        self._re = None if re is None else _check_public(re)
        self._psks = [bytes(p) for p in psks]
        self._msg_index = 0
        self._error: NoiseError | None = None
        self._cipher_pair: tuple[CipherState, CipherState] | None = None
        self._split_taken = False

        psk_count = sum(message.count("psk") for message in pattern.messages)
        if len(self._psks) != psk_count:
            raise NoiseError(f"{pattern.name} needs {psk_count} PSK(s)", code=ErrorCode.BAD_KEY)
        if any(len(p) != PSKLEN for p in self._psks):
            raise NoiseError("a PSK is 32 bytes", code=ErrorCode.BAD_KEY)
        self._check_static_keys()

        name = "_".join(("Noise", pattern.name, *_SUITE)).encode("ascii")
        self._ss = SymmetricState(name)
        self._ss.mix_hash(prologue)
        # Pre-message keys are hashed in pattern order: the initiator's, then the responder's.
        for token in pattern.initiator_pre:
            self._mix_pre_key(token, local=initiator)
        for token in pattern.responder_pre:
            self._mix_pre_key(token, local=not initiator)

    def _check_static_keys(self) -> None:
        """Fail at construction, not mid-handshake, when the pattern needs a missing key."""
        p = self._pattern
        my_pre, their_pre = (
            (p.initiator_pre, p.responder_pre)
            if self._initiator
            else (p.responder_pre, p.initiator_pre)
        )
        sends_s = "s" in my_pre or any(
            "s" in m for i, m in enumerate(p.messages) if (i % 2 == 0) == self._initiator
        )
        if sends_s and self._s is None:
            raise NoiseError(f"{p.name} needs a local static key", code=ErrorCode.BAD_KEY)
        if "s" in their_pre and self._rs is None:
            raise NoiseError(f"{p.name} needs the remote static key", code=ErrorCode.BAD_KEY)
        if "e" in my_pre and self._e is None:
            raise NoiseError(f"{p.name} needs a local ephemeral key", code=ErrorCode.BAD_KEY)
        if "e" in their_pre and self._re is None:
            raise NoiseError(f"{p.name} needs the remote ephemeral key", code=ErrorCode.BAD_KEY)

    def _mix_pre_key(self, token: str, *, local: bool) -> None:
        if local:
            private = self._s if token == "s" else self._e
            assert private is not None  # guaranteed by _check_static_keys
            key = public_bytes(private)
        else:
            remote = self._rs if token == "s" else self._re
            assert remote is not None  # guaranteed by _check_static_keys
            key = remote
        self._ss.mix_hash(key)
        if token == "e" and self._pattern.has_psk:
            self._ss.mix_key(key)

    # ----------------------------------------------------------------- properties

    @property
    def pattern(self) -> HandshakePattern:
        """The pattern (with modifiers applied) this handshake runs."""
        return self._pattern

    @property
    def initiator(self) -> bool:
        """True on the initiator's side."""
        return self._initiator

    @property
    def complete(self) -> bool:
        """True once every handshake message was written or read."""
        return self._cipher_pair is not None

    @property
    def handshake_hash(self) -> bytes:
        """``h``: bind it into channel-binding checks; final only once ``complete``."""
        return self._ss.get_handshake_hash()

    @property
    def remote_static(self) -> bytes | None:
        """The peer's static public key, if the pattern sent or pre-shared one."""
        return self._rs

    @property
    def is_my_turn(self) -> bool:
        """True when the next handshake message is ours to write."""
        return not self.complete and (self._msg_index % 2 == 0) == self._initiator

    # ----------------------------------------------------------------- messages

    def write_message(self, payload: bytes) -> bytes:
        """WriteMessage: the next handshake message carrying ``payload``.

        An oversize message is refused before any state changes (``TOO_LARGE``), so the
        caller may retry with a smaller payload.
        """
        tokens = self._next_tokens(writing=True)
        if len(payload) + self._overhead(tokens) > MAX_MESSAGE:
            raise NoiseError("handshake message over 65535 bytes", code=ErrorCode.TOO_LARGE)
        try:
            parts: list[bytes] = []
            ss = self._ss
            for token in tokens:
                if token == "e":
                    if self._e is None:
                        self._e = X25519PrivateKey.generate()
                    e_pub = public_bytes(self._e)
                    parts.append(e_pub)
                    ss.mix_hash(e_pub)
                    if self._pattern.has_psk:
                        ss.mix_key(e_pub)
                elif token == "s":
                    assert self._s is not None
                    parts.append(ss.encrypt_and_hash(public_bytes(self._s)))
                else:
                    self._mix_token(token)
            parts.append(ss.encrypt_and_hash(payload))
        except NoiseError as exc:
            self._error = exc
            raise
        self._advance()
        return b"".join(parts)

    def read_message(self, message: bytes) -> bytes:
        """ReadMessage: process the peer's next handshake message and return its payload.

        Any failure poisons this state (see the class docstring).
        """
        tokens = self._next_tokens(writing=False)
        try:
            payload = self._read(tokens, message)
        except NoiseError as exc:
            self._error = exc
            raise
        self._advance()
        return payload

    def _read(self, tokens: tuple[str, ...], message: bytes) -> bytes:
        if len(message) > MAX_MESSAGE:
            raise NoiseError("handshake message over 65535 bytes", code=ErrorCode.TOO_LARGE)
        view = memoryview(message)
        ss = self._ss
        for token in tokens:
            if token == "e":
                if len(view) < DHLEN:
                    raise NoiseError("handshake message too short")
                re = _check_public(bytes(view[:DHLEN]))
                view = view[DHLEN:]
                self._re = re
                ss.mix_hash(re)
                if self._pattern.has_psk:
                    ss.mix_key(re)
            elif token == "s":
                size = DHLEN + TAGLEN if ss.cipher.has_key() else DHLEN
                if len(view) < size:
                    raise NoiseError("handshake message too short")
                self._rs = _check_public(ss.decrypt_and_hash(bytes(view[:size])))
                view = view[size:]
            else:
                self._mix_token(token)
        if ss.cipher.has_key() and len(view) < TAGLEN:
            raise NoiseError("handshake message too short")
        return ss.decrypt_and_hash(bytes(view))

    def _mix_token(self, token: str) -> None:
        """The DH tokens and ``psk``; ``es``/``se`` name initiator/responder keys in order."""
        ss = self._ss
        if token == "psk":
            ss.mix_key_and_hash(self._psks.pop(0))
            return
        local, remote = token[0], token[1]
        if not self._initiator and token in ("es", "se"):
            local, remote = remote, local
        private = self._e if local == "e" else self._s
        public = self._re if remote == "e" else self._rs
        if private is None or public is None:  # only reachable with a malformed pattern
            raise NoiseError(f"token {token!r} lacks a key")
        ss.mix_key(_dh(private, public))

    def _overhead(self, tokens: tuple[str, ...]) -> int:
        """Bytes the tokens add to the payload in the message being written."""
        has_key = self._ss.cipher.has_key()
        size = 0
        for token in tokens:
            if token == "e":
                size += DHLEN
                has_key = has_key or self._pattern.has_psk
            elif token == "s":
                size += DHLEN + (TAGLEN if has_key else 0)
            else:
                has_key = True
        return size + (TAGLEN if has_key else 0)

    def _next_tokens(self, *, writing: bool) -> tuple[str, ...]:
        if self._error is not None:
            raise NoiseError(
                "handshake already failed; start a new one", code=ErrorCode.HANDSHAKE_FAILED
            ) from self._error
        if self.complete:
            raise NoiseError("handshake already complete", code=ErrorCode.UNEXPECTED_MESSAGE)
        if self.is_my_turn != writing:
            raise NoiseError("handshake message out of turn", code=ErrorCode.UNEXPECTED_MESSAGE)
        return self._pattern.messages[self._msg_index]

    def _advance(self) -> None:
        self._msg_index += 1
        if self._msg_index == len(self._pattern.messages):
            self._cipher_pair = self._ss.split()
            self._s = self._e = None  # drop private keys we no longer need

    # ----------------------------------------------------------------- split

    def split(self) -> tuple[CipherState, CipherState]:
        """``(send, receive)`` ciphers for this side; the initiator sends with ``c1``.

        Handed out once, so two transports can never share (and race on) one nonce.
        """
        if self._cipher_pair is None:
            raise NoiseError("handshake not complete", code=ErrorCode.UNEXPECTED_MESSAGE)
        if self._split_taken:
            raise NoiseError("split() already called", code=ErrorCode.UNEXPECTED_MESSAGE)
        self._split_taken = True
        c1, c2 = self._cipher_pair
        return (c1, c2) if self._initiator else (c2, c1)


# --------------------------------------------------------------------------- Haven helpers


def nk_initiator(
    relay_public: bytes, prologue: bytes, e: X25519PrivateKey | None = None
) -> HandshakeState:
    """The client side of Haven's handshake, pinned to ``relay_public``."""
    return HandshakeState(PATTERNS["NK"], initiator=True, prologue=prologue, e=e, rs=relay_public)


def nk_responder(
    static: X25519PrivateKey, prologue: bytes, e: X25519PrivateKey | None = None
) -> HandshakeState:
    """The relay side of Haven's handshake, proving possession of ``static``."""
    return HandshakeState(PATTERNS["NK"], initiator=False, prologue=prologue, s=static, e=e)
