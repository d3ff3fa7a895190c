"""Reading and writing the relay's static X25519 key (raw 32 bytes, base64url text).

Keys are written only by ``haven keygen``, before any relay runs, with mode 0600 and
never over an existing file.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat


class KeyFileError(ValueError):
    """The key file is missing, unreadable or malformed."""


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def read_private_key(path: Path) -> X25519PrivateKey:
    """Load a key written by ``write_private_key`` (base64url of the raw 32 bytes)."""
    try:
        text = path.read_text("ascii").strip()
        raw = _b64decode(text)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc}") from None
    if len(raw) != 32:
        raise KeyFileError(f"key file {path} does not hold a 32-byte X25519 key")
    return X25519PrivateKey.from_private_bytes(raw)


def private_bytes(key: X25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def write_secret_file(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600; refuse to overwrite anything."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} exists; refusing to overwrite it") from None
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(text + "\n")


def write_private_key(path: Path, key: X25519PrivateKey) -> None:
    """Write ``key`` as base64url text, mode 0600, never overwriting."""
    write_secret_file(path, base64.urlsafe_b64encode(private_bytes(key)).rstrip(b"=").decode())
