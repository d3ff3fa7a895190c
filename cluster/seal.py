"""What relays put on the NATS bus is opaque to it: HMAC subjects, AEAD-sealed payloads.

The bus is treated as hostile (docs/threat-model.md): a NATS operator, or a tap on a
route between servers, must learn only traffic volume. So, under the cluster key (32
random bytes every relay of one cluster shares, from ``haven keygen --cluster``):

* **Subjects** never carry a room code, alias, token or queue name. A subject is
  ``<prefix>.<32 hex digits>``: the first 128 bits of HMAC-SHA256 under a subject key
  derived from the cluster key, over a kind and a name (``subject("room", code)``).
  Without the key a subject cannot be linked to a code, nor one kind told from another.
* **Payloads** are ChaCha20-Poly1305 (RFC 8439, from ``cryptography``). Each relay
  process picks a random 128-bit sender id at start and seals under its own key,
  HKDF-SHA256(cluster payload key, salt = sender id); nonces are a 64-bit counter, so a
  (key, nonce) pair never repeats, across processes or restarts. The associated data
  binds the header (version, sender id, counter) and the subject, so a sealed message
  cannot be moved to another subject.
* **Replays** are refused: from one sender (one NATS connection) messages reach a
  subscriber in the order they were published, so a receiver keeps the last counter per
  sender and refuses anything not newer. The table is bounded (least recently heard
  senders are forgotten first); a sender is entered only after a message from it opened.

Only primitives of ``cryptography`` are used, composed in the usual way (HKDF per-sender
keys, counter nonces); nothing here is a new construction. No I/O, no clock.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections import OrderedDict

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = 1
SENDER_BYTES = 16
HEADER_BYTES = 1 + SENDER_BYTES + 8
TAG_BYTES = 16
#: Sealing overhead per bus message (header + Poly1305 tag).
OVERHEAD = HEADER_BYTES + TAG_BYTES
MAX_COUNTER = 2**64 - 1
#: Senders whose last counter a receiver remembers (more than any real cluster has).
MAX_SENDERS = 4096


class BusSealError(ValueError):
    """A bus message did not open: forged, replayed, moved, or under another key."""


def _hkdf(key: bytes, info: bytes, salt: bytes | None = None) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(key)


class ClusterKey:
    """The cluster key and the keys derived from it (one per purpose)."""

    def __init__(self, key: bytes, prefix: str = "hv") -> None:
        if len(key) != 32:
            raise ValueError("a cluster key is 32 bytes")
        if not prefix or not all(c.isalnum() or c in "_-" for c in prefix):
            raise ValueError("the subject prefix is one token of letters, digits, _ and -")
        self._subject_key = _hkdf(key, b"haven cluster v1 subjects")
        self._payload_key = _hkdf(key, b"haven cluster v1 payloads")
        self.prefix = prefix.encode()

    @classmethod
    def generate(cls) -> bytes:
        """32 fresh random bytes for a new cluster."""
        return secrets.token_bytes(32)

    def subject(self, kind: str, name: bytes | str = b"") -> bytes:
        """The opaque bus subject of ``name`` of ``kind`` (``room``, ``queue``, ``node``...)."""
        raw = name.encode() if isinstance(name, str) else name
        mac = hmac.new(self._subject_key, kind.encode() + b"\0" + raw, hashlib.sha256)
        return self.prefix + b"." + mac.hexdigest()[:32].encode()

    def sender_key(self, sender: bytes) -> ChaCha20Poly1305:
        return ChaCha20Poly1305(_hkdf(self._payload_key, b"haven cluster v1 sender", sender))


class Sealer:
    """Seals this process's bus messages (one per process; its counter only grows)."""

    def __init__(self, key: ClusterKey, sender: bytes | None = None) -> None:
        self.sender = sender if sender is not None else os.urandom(SENDER_BYTES)
        if len(self.sender) != SENDER_BYTES:
            raise ValueError("a sender id is 16 bytes")
        self._aead = key.sender_key(self.sender)
        self._head = bytes((VERSION,)) + self.sender
        self.counter = 0

    def seal(self, subject: bytes, plaintext: bytes) -> bytes:
        n = self.counter
        if n >= MAX_COUNTER:
            raise OverflowError("sender counter exhausted; restart the process")
        self.counter = n + 1
        header = self._head + n.to_bytes(8, "big")
        nonce = b"\0\0\0\0" + n.to_bytes(8, "little")
        return header + self._aead.encrypt(nonce, plaintext, header + subject)


class Opener:
    """Opens bus messages from any sender of the cluster, refusing replays."""

    def __init__(self, key: ClusterKey, max_senders: int = MAX_SENDERS) -> None:
        self._key = key
        self._max = max_senders
        #: sender id -> (its AEAD, the last counter opened); least recent first.
        self._senders: OrderedDict[bytes, tuple[ChaCha20Poly1305, int]] = OrderedDict()

    def open(self, subject: bytes, data: bytes) -> tuple[bytes, bytes]:
        """``(sender id, plaintext)``, or ``BusSealError``."""
        if len(data) < OVERHEAD or data[0] != VERSION:
            raise BusSealError("not a sealed bus message")
        header = data[:HEADER_BYTES]
        sender = header[1 : 1 + SENDER_BYTES]
        n = int.from_bytes(header[1 + SENDER_BYTES :], "big")
        known = self._senders.get(sender)
        if known is not None:
            aead, last = known
            if n <= last:
                raise BusSealError("replayed bus message")
        else:
            aead, last = self._key.sender_key(sender), -1
        nonce = b"\0\0\0\0" + n.to_bytes(8, "little")
        try:
            plaintext = aead.decrypt(nonce, data[HEADER_BYTES:], header + subject)
        except InvalidTag:
            raise BusSealError("bus message failed authentication") from None
        senders = self._senders
        senders[sender] = (aead, n)
        senders.move_to_end(sender)
        if len(senders) > self._max:
            senders.popitem(last=False)
        return sender, plaintext


__all__ = [
    "OVERHEAD",
    "BusSealError",
    "ClusterKey",
    "Opener",
    "Sealer",
]
