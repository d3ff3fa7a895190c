"""Parsing the relay's pinned static public key.

The relay prints its key as base64url without padding (43 characters for 32 bytes);
applications may also hold the raw bytes. Pinning is the whole of the client's trust
in the relay, so a key that is not exactly 32 bytes is refused here, with a message
that says what was wrong, instead of failing later as a confusing handshake error.
"""

from __future__ import annotations

import base64
import binascii
import re

KEY_LEN = 32
KEY_TEXT_LEN = 43  # ceil(32 * 4 / 3) characters, no "=" padding

_B64URL = re.compile(r"[A-Za-z0-9_-]{43}")


class RelayKeyError(ValueError):
    """The relay key is not 32 raw bytes or 43 characters of unpadded base64url."""


def parse_relay_key(key: bytes | bytearray | memoryview | str) -> bytes:
    """Return the 32-byte relay public key from raw bytes or its printed text form.

    Text is accepted only in the relay's canonical spelling (unpadded base64url; a
    trailing ``=`` and surrounding whitespace are tolerated), so that two spellings of
    the same key cannot differ in a pin list. Bytes must be exactly 32 long.
    """
    if isinstance(key, bytes | bytearray | memoryview):
        raw = bytes(key)
        if len(raw) != KEY_LEN:
            raise RelayKeyError(f"a raw relay key is {KEY_LEN} bytes, got {len(raw)}")
        return raw
    if not isinstance(key, str):
        raise TypeError("the relay key must be bytes or base64url text")
    text = key.strip().removesuffix("=")
    if not _B64URL.fullmatch(text):
        raise RelayKeyError(
            f"the relay key text must be {KEY_TEXT_LEN} base64url characters "
            "(A-Z a-z 0-9 - _), as the relay prints it"
        )
    try:
        raw = base64.urlsafe_b64decode(text + "=")
    except (binascii.Error, ValueError):  # pragma: no cover - the regex rules this out
        raise RelayKeyError("the relay key text is not valid base64url") from None
    # 43 characters carry 258 bits: the last 2 must be zero in the canonical encoding.
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != text:
        raise RelayKeyError("the relay key text is not canonical base64url (wrong last char)")
    return raw


def format_relay_key(raw: bytes) -> str:
    """The canonical text form of a raw key (what the relay prints)."""
    return base64.urlsafe_b64encode(parse_relay_key(raw)).rstrip(b"=").decode("ascii")


__all__ = ["KEY_LEN", "KEY_TEXT_LEN", "RelayKeyError", "format_relay_key", "parse_relay_key"]
