"""Key files: the relay's static X25519 key, the operator's Ed25519 signing key and the
cluster key relays share on the NATS bus.

All are written only by ``haven keygen [--cluster]`` / ``haven token keygen``, with mode
0600 and never over an existing file. Format (ASCII, two lines)::

    haven relay-key v1                  (or: haven operator-signing-key v1,
                                         haven cluster-key v1)
    <base64url, unpadded, of the raw 32-byte private key>

The typed first line lets each command refuse the other kind of key with a clear
message: all are 32 random bytes, so without it a swapped file would load silently.
Headerless files (written before the header existed) are refused; nothing was deployed.
A key file readable by group or others is refused too: the key is the relay's identity
(or the power to mint staff tokens, or to read and forge the relays' bus traffic),
and a copy lets anyone impersonate it.
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


RELAY_KEY_HEADER = "haven relay-key v1"
SIGNING_KEY_HEADER = "haven operator-signing-key v1"
CLUSTER_KEY_HEADER = "haven cluster-key v1"
_KINDS = {
    RELAY_KEY_HEADER: "a relay key (from `haven keygen`; for `haven serve --key-file`)",
    SIGNING_KEY_HEADER: (
        "an operator signing key (from `haven token keygen`; for `haven token issue --key`)"
    ),
    CLUSTER_KEY_HEADER: (
        "a cluster key (from `haven keygen --cluster`; for `haven serve --cluster-key`)"
    ),
}


def read_key_text(path: Path, header: str) -> str:
    """The key text of a typed key file of kind ``header``, or a one-line ``KeyFileError``."""
    try:
        mode = os.stat(path).st_mode
        if mode & 0o077:
            raise KeyFileError(
                f"key file {path} is readable by group or others (mode {mode & 0o777:o}); "
                f"run: chmod 600 {path}"
            )
        lines = path.read_text("ascii").split("\n")
    except (OSError, ValueError) as exc:
        if isinstance(exc, KeyFileError):
            raise
        raise KeyFileError(f"cannot read key file {path}: {exc}") from None
    first = lines[0].strip()
    if first != header:
        found = _KINDS.get(first)
        if found is not None:
            raise KeyFileError(f"key file {path} is {found}, but this needs {_KINDS[header]}")
        raise KeyFileError(f"key file {path} does not start with '{header}'; this needs "
                           f"{_KINDS[header]}")  # fmt: skip
    return "\n".join(lines[1:]).strip()


def read_private_key(path: Path) -> X25519PrivateKey:
    """Load a key written by ``write_private_key`` (typed header, base64url of 32 bytes)."""
    return X25519PrivateKey.from_private_bytes(_read_32(path, RELAY_KEY_HEADER, "X25519 key"))


def _read_32(path: Path, header: str, what: str) -> bytes:
    """The 32 bytes a typed key file of kind ``header`` holds."""
    text = read_key_text(path, header)
    try:
        raw = _b64decode(text)
    except ValueError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc}") from None
    if len(raw) != 32:
        raise KeyFileError(f"key file {path} does not hold a 32-byte {what}")
    return raw


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
    """Write ``key`` as a typed relay key file, mode 0600, never overwriting."""
    text = base64.urlsafe_b64encode(private_bytes(key)).rstrip(b"=").decode()
    write_secret_file(path, f"{RELAY_KEY_HEADER}\n{text}")


def write_cluster_key(path: Path, key: bytes) -> None:
    """Write a cluster key (32 bytes every relay of one cluster shares), mode 0600."""
    text = base64.urlsafe_b64encode(key).rstrip(b"=").decode()
    write_secret_file(path, f"{CLUSTER_KEY_HEADER}\n{text}")


def read_cluster_key(path: Path) -> bytes:
    """The 32 bytes of a cluster key file, or a one-line ``KeyFileError``."""
    return _read_32(path, CLUSTER_KEY_HEADER, "cluster key")
