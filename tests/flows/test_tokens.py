"""Role tokens: signing, verification, every typed refusal, and the ``haven token`` CLI."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from haven.protocol.codes import is_canonical_room_code
from haven.protocol.errors import ErrorCode, RequestError
from haven.relay import cli, tokens

NOW = 1_700_000_000.0


def trusted(*keys: Ed25519PrivateKey, **kw: object) -> dict[bytes, tokens.Issuer]:
    out = {}
    for i, key in enumerate(keys):
        issuer = tokens.Issuer(f"issuer{i}", key.public_key(), **kw)  # type: ignore[arg-type]
        out[issuer.kid] = issuer
    return out


def refused(token: str | bytes, issuers: dict[bytes, tokens.Issuer], wall: float = NOW) -> int:
    with pytest.raises(RequestError) as info:
        tokens.verify(token, issuers, wall)
    assert "hv1." not in info.value.message  # never echoes the token
    return info.value.code


def test_issue_and_verify_round_trip() -> None:
    key = Ed25519PrivateKey.generate()
    text = tokens.issue(key, role="staff", ttl=8 * 3600, now=NOW, queues=["helpline"])
    assert text.startswith("hv1.")
    assert len(text) < 300
    assert text.isascii()
    claims = tokens.verify(text.encode(), trusted(key), NOW + 60)
    assert claims.role == "staff"
    assert claims.queues == ("helpline",)
    assert claims.expires == NOW + 8 * 3600
    assert claims.issuer == "issuer0"
    assert claims.covers_queue("helpline")
    assert not claims.covers_queue("other")
    assert len(claims.token_id) == 16


def test_several_issuers_are_trusted_at_once() -> None:
    central, local = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    issuers = trusted(central, local)
    for key in (central, local):
        text = tokens.issue(key, role="moderator", ttl=60, now=NOW, rooms=["*"])
        assert tokens.verify(text, issuers, NOW).covers_room("any-room")


def test_expired_untrusted_and_wrongly_signed_tokens_are_refused() -> None:
    key, stranger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    issuers = trusted(key)
    text = tokens.issue(key, role="responder", ttl=60, now=NOW)
    assert refused(text, issuers, NOW + 60) == ErrorCode.TOKEN_EXPIRED
    assert refused(tokens.issue(stranger, role="staff", ttl=60, now=NOW), issuers) == (
        ErrorCode.TOKEN_UNTRUSTED
    )
    # A stranger's signature over claims naming the trusted key id.
    _, payload_text, _ = text.split(".")
    forged_sig = stranger.sign(tokens.DOMAIN + tokens.b64url_decode(payload_text))
    forged = f"hv1.{payload_text}.{tokens.b64url(forged_sig)}"
    assert refused(forged, issuers) == ErrorCode.TOKEN_INVALID


def test_tampered_claims_do_not_verify() -> None:
    key = Ed25519PrivateKey.generate()
    text = tokens.issue(key, role="staff", ttl=60, now=NOW, queues=["helpline"])
    prefix, payload_text, sig = text.split(".")
    claims = msgpack.unpackb(tokens.b64url_decode(payload_text))
    claims["q"] = ["*"]
    tampered = f"{prefix}.{tokens.b64url(msgpack.packb(claims))}.{sig}"
    assert refused(tampered, trusted(key)) == ErrorCode.TOKEN_INVALID


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hv1",
        "hv2.AAAA.AAAA",
        "hv1.!!!.AAAA",
        "hv1.AAAA.AAAA",
        "hv1." + tokens.b64url(b"\xc1") + "." + tokens.b64url(bytes(64)),
        "hv1." + tokens.b64url(msgpack.packb([1, 2])) + "." + tokens.b64url(bytes(64)),
        "hv1." + tokens.b64url(msgpack.packb({"v": 9})) + "." + tokens.b64url(bytes(64)),
        "x" * 2000,
        "hv1.é.é",
    ],
)
def test_malformed_tokens_are_invalid(text: str) -> None:
    assert refused(text, trusted(Ed25519PrivateKey.generate())) == ErrorCode.TOKEN_INVALID


def test_non_ascii_bytes_are_invalid() -> None:
    assert refused(b"\xff\xfe", {}) == ErrorCode.TOKEN_INVALID


def test_revoked_tokens_and_issuer_role_limits() -> None:
    key = Ed25519PrivateKey.generate()
    token_id = bytes(range(16))
    text = tokens.issue(key, role="staff", ttl=60, now=NOW, queues=["q"], token_id=token_id)
    assert refused(text, trusted(key, revoked=frozenset({token_id}))) == ErrorCode.TOKEN_UNTRUSTED
    assert refused(text, trusted(key, roles=("responder",))) == ErrorCode.TOKEN_UNTRUSTED
    future = tokens.issue(key, role="staff", ttl=3600, now=NOW + 3600, queues=["q"])
    assert refused(future, trusted(key)) == ErrorCode.TOKEN_INVALID


def test_issue_refuses_bad_claims() -> None:
    key = Ed25519PrivateKey.generate()
    with pytest.raises(ValueError, match="role"):
        tokens.issue(key, role="admin", ttl=60, now=NOW)
    with pytest.raises(ValueError, match="ttl"):
        tokens.issue(key, role="staff", ttl=0, now=NOW)
    with pytest.raises(ValueError, match="scopes"):
        tokens.issue(key, role="staff", ttl=60, now=NOW, queues=[f"q{i}" for i in range(40)])


@pytest.mark.parametrize(
    ("text", "seconds"), [("8h", 28800), ("30m", 1800), ("90s", 90), ("2d", 172800), ("45", 45)]
)
def test_parse_ttl(text: str, seconds: int) -> None:
    assert tokens.parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "-5m", "1.5h", "0s", "8w"])
def test_parse_ttl_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="TTL"):
        tokens.parse_ttl(text)


def test_cli_keygen_and_issue(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_file = tmp_path / "operator.key"
    assert cli.main(["token", "keygen", "--out", str(key_file)]) == 0
    public = capsys.readouterr().out.strip()
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    issuer = tokens.Issuer("op", tokens.parse_public_key(public))
    assert cli.main(["token", "keygen", "--out", str(key_file)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    argv = ["token", "issue", "--key", str(key_file), "--role", "staff", "--queue", "helpline",
            "--queue", "male-survivors", "--ttl", "8h"]  # fmt: skip
    assert cli.main(argv) == 0
    text = capsys.readouterr().out.strip()
    claims = tokens.verify(text, {issuer.kid: issuer}, time.time())
    assert claims.role == "staff"
    assert claims.queues == ("helpline", "male-survivors")
    assert claims.expires - claims.issued == 8 * 3600


def test_cli_issue_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_file = tmp_path / "k"
    cli.main(["token", "keygen", "--out", str(key_file)])
    capsys.readouterr()
    base = ["token", "issue", "--key", str(key_file)]
    assert cli.main([*base, "--role", "staff", "--ttl", "8h"]) == 2
    assert "--queue" in capsys.readouterr().err
    assert cli.main([*base, "--role", "moderator"]) == 2
    assert "--room-scope" in capsys.readouterr().err
    assert cli.main([*base, "--role", "responder", "--ttl", "90d"]) == 2
    assert cli.main([*base, "--role", "responder", "--ttl", "soon"]) == 2
    assert cli.main(["token", "issue", "--key", str(tmp_path / "missing"), "--role", "responder"])
    assert cli.main(["token", "room-code"]) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert is_canonical_room_code(out)
