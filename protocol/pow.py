"""Hashcash-style proof of work over SHA-256, bound to one connection and one request.

A solution for request ``id`` on a connection whose challenge seed is ``seed`` is any
byte string ``nonce`` (at most 64 bytes) such that

    SHA-256(b"haven-pow/1" || seed || id as 8 bytes big-endian || nonce)

starts with ``difficulty`` zero bits. The seed is random per connection and request ids
must strictly increase on a connection, so a solution can never be replayed: not on
another connection (other seed) and not for another request (other id). Verifying costs
one hash; solving costs about ``2**difficulty`` hashes.
"""

from __future__ import annotations

import hashlib
from itertools import count

from .errors import ErrorCode, HavenError

DOMAIN = b"haven-pow/1"
MAX_DIFFICULTY = 32


def _digest(seed: bytes, request_id: int, nonce: bytes) -> bytes:
    return hashlib.sha256(DOMAIN + seed + request_id.to_bytes(8, "big") + nonce).digest()


def leading_zero_bits(digest: bytes) -> int:
    """Number of leading zero bits of ``digest``."""
    value = int.from_bytes(digest, "big")
    return len(digest) * 8 - value.bit_length()


def verify(seed: bytes, request_id: int, difficulty: int, nonce: bytes | None) -> None:
    """Raise ``POW_REQUIRED`` or ``POW_INVALID`` unless ``nonce`` solves the challenge."""
    if difficulty <= 0:
        return
    if nonce is None:
        raise HavenError(code=ErrorCode.POW_REQUIRED)
    if len(nonce) > 64 or leading_zero_bits(_digest(seed, request_id, nonce)) < difficulty:
        raise HavenError(code=ErrorCode.POW_INVALID)


def solve(seed: bytes, request_id: int, difficulty: int) -> bytes | None:
    """Find a nonce for the challenge (``None`` when no work is needed)."""
    if difficulty <= 0:
        return None
    if difficulty > MAX_DIFFICULTY:
        raise ValueError("difficulty above MAX_DIFFICULTY")
    prefix = hashlib.sha256(DOMAIN + seed + request_id.to_bytes(8, "big"))
    for n in count():
        nonce = n.to_bytes(8, "big")
        h = prefix.copy()
        h.update(nonce)
        if leading_zero_bits(h.digest()) >= difficulty:
            return nonce
    raise AssertionError("unreachable")  # pragma: no cover
