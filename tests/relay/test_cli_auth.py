"""``haven token issue --audience`` and ``haven serve``'s audience warning, as subprocesses."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from haven.protocol.errors import ErrorCode, RequestError
from haven.relay import tokens

from .test_cli import HANG_GUARD, REPO, child_env, run_serve, stop


def haven(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "haven", *args],
        capture_output=True, env=child_env(), cwd=REPO, timeout=HANG_GUARD, check=False,
    )  # fmt: skip


def test_token_issue_audience_binds_the_token(tmp_path: Path) -> None:
    key_file = tmp_path / "operator.key"
    made = haven("token", "keygen", "--out", str(key_file))
    assert made.returncode == 0, made.stderr
    issuer = tokens.Issuer("ops", tokens.parse_public_key(made.stdout.decode()))
    done = haven("token", "issue", "--key", str(key_file), "--role", "staff",
                 "--queue", "helpline", "--audience", "north")  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = done.stdout.decode().strip()
    issuers = {issuer.kid: issuer}
    assert tokens.verify(text, issuers, time.time(), audience="north").role == "staff"
    for other in ("south", None):
        with pytest.raises(RequestError) as refused:
            tokens.verify(text, issuers, time.time(), audience=other)
        assert refused.value.code == ErrorCode.TOKEN_UNTRUSTED


async def test_serve_warns_when_issuers_have_no_audience(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    conf = tmp_path / "relay.toml"
    public = tokens.public_key_text(key.public_key())
    conf.write_text(f'[[issuers]]\nname = "ops"\npublic_key = "{public}"\n')
    for extra, warned in (((), True), (("--token-audience", "north"), False)):
        async with trio.open_nursery() as nursery:
            relay = await run_serve(nursery, "--port", "0", "--metrics-port", "none",
                                    "--config", str(conf), *extra)  # fmt: skip
            assert await stop(relay) == 0, relay.stderr.decode()
        assert (b"token_audience is not" in relay.stderr) == warned, relay.stderr.decode()
