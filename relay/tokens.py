"""Role tokens: Ed25519-signed claims that prove staff, moderator or responder roles.

Haven keeps no user database. An operator holds an Ed25519 signing key (``haven token
keygen``) and issues short-lived tokens (``haven token issue``); a relay lists the
*public* keys of the issuers it trusts (``[[issuers]]`` in its config) and checks each
token a connection presents inside its encrypted channel (the ``auth`` request).

Token text (ASCII, at most ``MAX_TOKEN_TEXT`` characters)::

    hv1.<base64url(payload)>.<base64url(signature)>

* ``payload`` is a msgpack map with short keys:

  ==========  ========  ================================================================
  key         type      meaning
  ==========  ========  ================================================================
  ``v``       int       claims format version, 1
  ``kid``     bytes(8)  issuer key id: the first 8 bytes of SHA-256(raw public key)
  ``role``    str       ``staff``, ``moderator`` or ``responder``
  ``q``       [str]     intake queues the token covers (``*`` = all); staff only
  ``r``       [str]     rooms it may moderate: room codes, scheduled-room names or ``*``
  ``iat``     int       issued at, Unix seconds
  ``exp``     int       expires at, Unix seconds
  ``jti``     bytes(16) random token id (for revocation lists)
  ``aud``     str       optional audience: the deployment the token is for; a relay
                        accepts it only if its ``token_audience`` setting is equal
  ==========  ========  ================================================================

* ``signature`` is Ed25519 over ``b"haven-token/1\\x00" + payload`` (domain separated,
  so no other Haven signature can be replayed as a token).

Why this shape rather than JWT: one algorithm, no header to negotiate (so no
``alg: none`` class of bugs), a binary payload that stays well under the wire limit of
1024 bytes, and the key id lets the relay pick the one issuer key to try.

Verification order, each step with its own typed error: text shape and payload schema
(``TOKEN_INVALID``), issuer known (``TOKEN_UNTRUSTED``), signature (``TOKEN_INVALID``),
audience (``TOKEN_UNTRUSTED``),
revoked (``TOKEN_UNTRUSTED``), role allowed for the issuer (``TOKEN_UNTRUSTED``), not yet
valid (``TOKEN_INVALID``), expired (``TOKEN_EXPIRED``). Error messages never echo the
token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from haven.protocol.errors import ErrorCode, RequestError

PREFIX = "hv1"
DOMAIN = b"haven-token/1\x00"
CLAIMS_VERSION = 1
ROLES = ("staff", "moderator", "responder")
#: Longest token text accepted (the ``auth`` request carries at most 1024 bytes).
MAX_TOKEN_TEXT = 1024
#: Most queue or room scopes one token may carry, and the longest scope entry.
MAX_SCOPES = 32
MAX_SCOPE_LEN = 64
#: Tolerated clock skew between issuer and relay for ``iat`` (seconds).
CLOCK_SKEW = 300
#: ``*`` in a queue or room scope means "all".
ALL = "*"


def b64url(data: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of ``b64url``; raises ``ValueError`` on bad input."""
    if not text.isascii():
        raise ValueError("not ASCII")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise ValueError(str(exc)) from None


def _invalid(why: str) -> RequestError:
    return RequestError(f"the token is invalid ({why})", code=ErrorCode.TOKEN_INVALID)


def key_id(public_key: Ed25519PublicKey) -> bytes:
    """The 8-byte id of an issuer key, carried in every token it signs."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:8]


def public_key_text(public_key: Ed25519PublicKey) -> str:
    """How issuer public keys are written in config files (base64url of 32 bytes)."""
    return b64url(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw))


def parse_public_key(text: str) -> Ed25519PublicKey:
    """Read an issuer public key written by ``public_key_text``; ``ValueError`` if bad."""
    raw = b64url_decode(text.strip())
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes (base64url)")
    return Ed25519PublicKey.from_public_bytes(raw)


def private_key_text(key: Ed25519PrivateKey) -> str:
    """How signing keys are stored (base64url of the raw 32-byte seed)."""
    return b64url(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))


def parse_private_key(text: str) -> Ed25519PrivateKey:
    """Read a signing key written by ``private_key_text``; ``ValueError`` if bad."""
    raw = b64url_decode(text.strip())
    if len(raw) != 32:
        raise ValueError("an Ed25519 signing key is 32 bytes (base64url)")
    return Ed25519PrivateKey.from_private_bytes(raw)


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified token says about the connection that presented it."""

    role: str
    queues: tuple[str, ...]
    rooms: tuple[str, ...]
    issued: int
    expires: int
    token_id: bytes
    issuer: str = ""  #: the trusted issuer's configured name (set on verification)

    def covers_queue(self, queue: str) -> bool:
        return ALL in self.queues or queue in self.queues

    def covers_room(self, *names: str | None) -> bool:
        """Whether the room scope includes any of ``names`` (code, scheduled name)."""
        return ALL in self.rooms or any(n is not None and n in self.rooms for n in names)

    def valid_at(self, wall: float) -> bool:
        return wall < self.expires


def _scopes(values: Iterable[str], what: str) -> tuple[str, ...]:
    out = tuple(values)
    if len(out) > MAX_SCOPES:
        raise ValueError(f"at most {MAX_SCOPES} {what} scopes")
    for v in out:
        if not isinstance(v, str) or not 0 < len(v) <= MAX_SCOPE_LEN:
            raise ValueError(f"each {what} scope is 1..{MAX_SCOPE_LEN} characters")
    return out


def issue(
    key: Ed25519PrivateKey,
    *,
    role: str,
    ttl: float,
    now: float,
    queues: Iterable[str] = (),
    rooms: Iterable[str] = (),
    token_id: bytes | None = None,
    audience: str | None = None,
) -> str:
    """Sign claims with ``key``: a token valid from ``now`` for ``ttl`` seconds.

    ``audience`` binds the token to the relays whose ``token_audience`` equals it, so a
    token issued for one deployment is refused by another that trusts the same issuer.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    if audience is not None and not 0 < len(audience) <= MAX_SCOPE_LEN:
        raise ValueError(f"the audience is 1..{MAX_SCOPE_LEN} characters")
    claims: dict[str, Any] = {
            "v": CLAIMS_VERSION,
            "kid": key_id(key.public_key()),
            "role": role,
            "q": list(_scopes(queues, "queue")),
            "r": list(_scopes(rooms, "room")),
            "iat": int(now),
            "exp": int(now + ttl),
            "jti": token_id if token_id is not None else secrets.token_bytes(16),
        }
    if audience is not None:
        claims["aud"] = audience
    payload = msgpack.packb(claims, use_bin_type=True)
    signature = key.sign(DOMAIN + payload)
    text = f"{PREFIX}.{b64url(payload)}.{b64url(signature)}"
    if len(text) > MAX_TOKEN_TEXT:
        raise ValueError("too many scopes: the token would exceed 1024 characters")
    return text


@dataclass(frozen=True, slots=True)
class Issuer:
    """A trusted issuer from config: its public key and what it may vouch for."""

    name: str
    public_key: Ed25519PublicKey
    roles: tuple[str, ...] = ROLES
    revoked: frozenset[bytes] = field(default_factory=frozenset)  #: token ids

    @property
    def kid(self) -> bytes:
        return key_id(self.public_key)


def _str_list(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_SCOPES:
        raise _invalid(f"bad {what} scope")
    for v in value:
        if not isinstance(v, str) or not 0 < len(v) <= MAX_SCOPE_LEN:
            raise _invalid(f"bad {what} scope")
    return tuple(value)


def _decode(text: str) -> tuple[bytes, bytes, dict[str, Any]]:
    """Split and parse the token text; ``TOKEN_INVALID`` for anything malformed."""
    if len(text) > MAX_TOKEN_TEXT:
        raise _invalid("too long")
    parts = text.strip().split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise _invalid("not a Haven token")
    try:
        payload = b64url_decode(parts[1])
        signature = b64url_decode(parts[2])
    except ValueError:
        raise _invalid("bad encoding") from None
    if len(signature) != 64:
        raise _invalid("bad signature length")
    try:
        claims = msgpack.unpackb(
            payload,
            raw=False,
            strict_map_key=True,
            max_str_len=MAX_SCOPE_LEN,
            max_bin_len=64,
            max_array_len=MAX_SCOPES,
            max_map_len=16,
            max_ext_len=0,
        )
    except (ValueError, msgpack.UnpackException, TypeError):
        raise _invalid("bad payload") from None
    if not isinstance(claims, dict):
        raise _invalid("bad payload")
    return payload, signature, claims


def verify(
    token: bytes | str,
    issuers: Mapping[bytes, Issuer],
    wall: float,
    audience: str | None = None,
) -> Claims:
    """Check a presented token against the trusted ``issuers`` (by key id) at ``wall``.

    ``audience`` is this relay's ``token_audience``: the token's ``aud`` must equal it
    exactly, absence included (a relay with an audience refuses tokens without one, and
    a relay without one refuses tokens bound to some deployment).

    Raises ``RequestError`` with ``TOKEN_INVALID``, ``TOKEN_UNTRUSTED`` or
    ``TOKEN_EXPIRED``; returns the claims otherwise.
    """
    if isinstance(token, bytes):
        try:
            text = token.decode("ascii")
        except UnicodeDecodeError:
            raise _invalid("not ASCII") from None
    else:
        text = token
    payload, signature, raw = _decode(text)
    if raw.get("v") != CLAIMS_VERSION:
        raise _invalid("unsupported claims version")
    kid = raw.get("kid")
    if not isinstance(kid, bytes) or len(kid) != 8:
        raise _invalid("bad issuer id")
    issuer = issuers.get(kid)
    if issuer is None:
        raise RequestError(code=ErrorCode.TOKEN_UNTRUSTED)
    try:
        issuer.public_key.verify(signature, DOMAIN + payload)
    except InvalidSignature:
        raise _invalid("signature does not verify") from None
    role, iat, exp, jti = raw.get("role"), raw.get("iat"), raw.get("exp"), raw.get("jti")
    if role not in ROLES:
        raise _invalid("unknown role")
    if not isinstance(iat, int) or not isinstance(exp, int) or isinstance(exp, bool):
        raise _invalid("bad validity period")
    if not isinstance(jti, bytes) or len(jti) != 16:
        raise _invalid("bad token id")
    aud = raw.get("aud")
    if aud is not None and not isinstance(aud, str):
        raise _invalid("bad audience")
    if aud != audience:
        raise RequestError(
            "this token was issued for another deployment (audience)",
            code=ErrorCode.TOKEN_UNTRUSTED,
        )
    claims = Claims(
        role=role,
        queues=_str_list(raw.get("q", []), "queue"),
        rooms=_str_list(raw.get("r", []), "room"),
        issued=iat,
        expires=exp,
        token_id=jti,
        issuer=issuer.name,
    )
    if jti in issuer.revoked:
        raise RequestError("this token was revoked", code=ErrorCode.TOKEN_UNTRUSTED)
    if role not in issuer.roles:
        raise RequestError(
            "this issuer is not trusted for that role", code=ErrorCode.TOKEN_UNTRUSTED
        )
    if iat > wall + CLOCK_SKEW:
        raise _invalid("not valid yet; check the issuer's clock")
    if not claims.valid_at(wall):
        raise RequestError(code=ErrorCode.TOKEN_EXPIRED)
    return claims


def parse_ttl(text: str) -> int:
    """``"8h"``, ``"30m"``, ``"90s"``, ``"2d"`` or plain seconds -> seconds."""
    text = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    scale = 1
    if text and text[-1] in units:
        scale = units[text[-1]]
        text = text[:-1]
    if not text.isdigit():
        raise ValueError("a TTL looks like 90s, 30m, 8h or 2d")
    seconds = int(text) * scale
    if seconds <= 0:
        raise ValueError("the TTL must be positive")
    return seconds
