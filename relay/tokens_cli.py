"""``haven token``: operator signing keys and role tokens (see ``relay.tokens``).

    haven token keygen --out operator.key        # prints the public key for [[issuers]]
    haven token issue --key operator.key --role staff --queue helpline --ttl 8h
    haven token room-code                        # a fresh code for a link-only room

Importing this module registers the subcommand in ``haven.relay.cli.SUBCOMMANDS``. Nothing
here talks to a relay: tokens are minted offline and handed to staff out of band.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from haven.protocol import codes

from . import cli, tokens
from .keys import SIGNING_KEY_HEADER, KeyFileError, read_key_text, write_secret_file

#: Longest TTL ``issue`` accepts: tokens are meant to last a shift, not a season.
MAX_TTL = 30 * 86400


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="token_command", required=True)
    keygen = sub.add_parser("keygen", help="write an Ed25519 operator signing key (0600)")
    keygen.add_argument("--out", type=Path, required=True, help="file to create")
    issue = sub.add_parser("issue", help="print a signed role token")
    issue.add_argument("--key", type=Path, required=True, help="operator signing key file")
    issue.add_argument("--role", required=True, choices=tokens.ROLES,
                       help="what the token holder may do")
    issue.add_argument(
        "--queue", action="append", default=[], help="intake queue (repeatable; * = all)"
    )
    issue.add_argument(
        "--room-scope",
        action="append",
        default=[],
        help="room code or scheduled-room name it may moderate (repeatable; * = all)",
    )
    issue.add_argument(
        "--audience",
        default=None,
        help="deployment the token is for (must equal the relay's token_audience)",
    )
    issue.add_argument("--ttl", default="8h", help="lifetime: 90s, 30m, 8h, 2d (default 8h)")
    sub.add_parser("room-code", help="print a fresh room code (for link-only scheduled rooms)")


def _fail(message: str) -> int:
    print(f"haven: {message}", file=sys.stderr)
    return 2


def _keygen(args: argparse.Namespace) -> int:
    key = Ed25519PrivateKey.generate()
    try:
        write_secret_file(args.out, f"{SIGNING_KEY_HEADER}\n{tokens.private_key_text(key)}")
    except (KeyFileError, OSError) as exc:
        return _fail(str(exc))
    print(tokens.public_key_text(key.public_key()))
    return 0


def _issue(args: argparse.Namespace) -> int:
    try:
        key = tokens.parse_private_key(read_key_text(args.key, SIGNING_KEY_HEADER))
    except KeyFileError as exc:
        return _fail(str(exc))
    except (OSError, ValueError) as exc:
        return _fail(f"cannot read signing key {args.key}: {exc}")
    try:
        ttl = tokens.parse_ttl(args.ttl)
        if ttl > MAX_TTL:
            raise ValueError(f"the TTL may be at most {MAX_TTL // 86400} days")
        if args.role == "staff" and not args.queue:
            raise ValueError("a staff token needs at least one --queue")
        if args.role == "moderator" and not args.room_scope:
            raise ValueError("a moderator token needs at least one --room-scope")
        text = tokens.issue(
            key,
            role=args.role,
            ttl=ttl,
            now=time.time(),
            queues=args.queue,
            rooms=args.room_scope,
            audience=args.audience,
        )
    except ValueError as exc:
        return _fail(str(exc))
    print(text)
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.token_command == "keygen":
        return _keygen(args)
    if args.token_command == "issue":
        return _issue(args)
    print(codes.new_room_code())
    return 0


cli.SUBCOMMANDS["token"] = (_add_arguments, _run)
