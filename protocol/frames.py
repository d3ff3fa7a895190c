"""Haven's encrypted transport: one padded, Noise-encrypted envelope per WebSocket message.

After the NK handshake, every binary WebSocket message is exactly one Noise transport
message (associated data empty). Its plaintext is::

    L (2 bytes, big-endian) || envelope (L bytes) || zero bytes up to a bucket size

Padding to a few fixed buckets hides the length of individual chat messages from anyone
watching the wire (a short "yes" and a long sentence look identical), at a bounded cost.
The largest bucket is 65519 so that bucket + 16-byte tag is exactly Noise's 65535 limit.
Because the wire sizes are fixed, a message of any other length is refused before any
decryption work is spent on it.

Sans-IO: ``Transport`` turns envelopes into wire messages and back; the caller owns the
socket. Message order is enforced by the Noise nonce: a reordered, dropped or replayed
message fails authentication.
"""

from __future__ import annotations

from haven.protocol.errors import ErrorCode, FrameError, NoiseError
from haven.protocol.noise import MAX_MESSAGE, TAGLEN, CipherState

__all__ = [
    "BUCKETS",
    "MAX_ENVELOPE",
    "WIRE_SIZES",
    "Transport",
    "bucket_for",
    "pad",
    "unpad",
]

#: Padded plaintext sizes, smallest first. 65519 = 65535 - 16 (Noise limit minus the tag).
BUCKETS: tuple[int, ...] = (256, 1024, 4096, 16384, MAX_MESSAGE - TAGLEN)
#: Every length a transport message can have on the wire: 272, 1040, 4112, 16400, 65535.
WIRE_SIZES: tuple[int, ...] = tuple(b + TAGLEN for b in BUCKETS)
#: The largest envelope that fits: the top bucket minus the 2-byte length prefix.
MAX_ENVELOPE = BUCKETS[-1] - 2

_BUCKET_SET = frozenset(BUCKETS)
_WIRE_SET = frozenset(WIRE_SIZES)
_EMPTY = b""


# Every bucket but the last is a multiple of 256, so the bucket for a padded length is a
# table lookup on its 256-byte block count (sizes above MAX_ENVELOPE are refused first).
_BUCKET_BY_BLOCKS: tuple[int, ...] = tuple(
    next(b for b in BUCKETS if blocks * 256 <= b or b == BUCKETS[-1]) for blocks in range(257)
)


def bucket_for(envelope_len: int) -> int:
    """The smallest bucket holding an envelope of ``envelope_len`` bytes plus its prefix."""
    if envelope_len > MAX_ENVELOPE:
        raise FrameError("envelope larger than the largest frame", code=ErrorCode.TOO_LARGE)
    return _BUCKET_BY_BLOCKS[(envelope_len + 257) >> 8]


def pad(envelope: bytes) -> bytes:
    """Length-prefix ``envelope`` and zero-pad it to the smallest bucket that fits."""
    size = len(envelope)
    if size > MAX_ENVELOPE:
        raise FrameError("envelope larger than the largest frame", code=ErrorCode.TOO_LARGE)
    bucket = _BUCKET_BY_BLOCKS[(size + 257) >> 8]
    return b"".join((size.to_bytes(2, "big"), envelope, bytes(bucket - 2 - size)))


def unpad(plaintext: bytes) -> bytes:
    """Undo ``pad``; anything but a bucket-sized, zero-padded plaintext is ``BAD_PADDING``.

    Padding bytes must be zero so that the padding cannot become a covert channel and
    every plaintext has exactly one valid reading. (A larger bucket than the smallest
    that fits is accepted: senders may pad up for cover.)
    """
    total = len(plaintext)
    if total not in _BUCKET_SET:
        raise FrameError("plaintext is not a bucket size", code=ErrorCode.BAD_PADDING)
    end = 2 + int.from_bytes(plaintext[:2], "big")
    if end > total:
        raise FrameError("length prefix beyond the frame", code=ErrorCode.BAD_PADDING)
    if plaintext.count(0, end) != total - end:
        raise FrameError("nonzero padding", code=ErrorCode.BAD_PADDING)
    return plaintext[2:end]


class Transport:
    """Both directions of one connection's encrypted transport, from ``HandshakeState.split``.

    ``seal`` runs once per delivery on the relay's hot path, so it is two calls: pad and
    encrypt. A relay fanning one envelope out to many recipients pads once (``pad``) and
    calls ``seal_padded`` per recipient.
    """

    __slots__ = ("_recv", "_send")

    def __init__(self, send: CipherState, recv: CipherState) -> None:
        if not (send.has_key() and recv.has_key()):
            # A keyless CipherState "encrypts" as the identity: never let that reach the wire.
            raise NoiseError("transport needs the keyed ciphers of a completed handshake")
        self._send = send
        self._recv = recv

    def seal(self, envelope: bytes) -> bytes:
        """Encrypt one envelope into one wire message (length in ``WIRE_SIZES``)."""
        return self._send.encrypt_with_ad(_EMPTY, pad(envelope))

    def seal_padded(self, padded: bytes) -> bytes:
        """Encrypt an already padded plaintext (the output of ``pad``)."""
        if len(padded) not in _BUCKET_SET:
            raise FrameError("plaintext is not a bucket size", code=ErrorCode.BAD_PADDING)
        return self._send.encrypt_with_ad(_EMPTY, padded)

    def open(self, message: bytes) -> bytes:
        """Authenticate, decrypt and unpad one wire message; returns the envelope.

        The length is checked first, so junk of the wrong size costs no crypto. A failed
        tag leaves the receive nonce unchanged, but the connection should still be closed:
        it is either under attack or out of sync.
        """
        size = len(message)
        if size not in _WIRE_SET:
            if size > MAX_MESSAGE:
                raise FrameError("frame over 65535 bytes", code=ErrorCode.TOO_LARGE)
            raise FrameError("frame is not a wire size", code=ErrorCode.BAD_PADDING)
        try:
            plaintext = self._recv.decrypt_with_ad(_EMPTY, message)
        except NoiseError as exc:
            if exc.code is ErrorCode.DECRYPT_FAILED:
                raise FrameError(code=ErrorCode.DECRYPT_FAILED) from None
            raise
        return unpad(plaintext)
