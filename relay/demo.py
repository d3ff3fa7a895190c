"""Demo mode (``haven serve --demo``): everything a newcomer needs to try the pages locally.

An in-memory token issuer (its private key never leaves this process and is never
written anywhere), a ``helpline`` queue, one scheduled group room open now and one that
is not, and staff / responder / moderator tokens printed for local use. The pages
listener is switched on (127.0.0.1:8080 unless told otherwise). Nothing goes to disk.

Why the scheduled windows are computed from the clock: "open now" must hold whenever
someone runs the demo; the closed room opens well after the open one ends.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import tokens

DEMO_PAGES_PORT = 8080
TOKEN_TTL = 12 * 3600.0  #: seconds the printed demo tokens stay valid
#: Where the built pages are in a source checkout (``web/`` builds into ``web/dist``).
DEFAULT_PAGES_DIR = Path(__file__).resolve().parent.parent / "web" / "dist"
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
QUEUE = "helpline"
OPEN_ROOM = "evening-circle"
AUDIENCE = "haven-demo"  #: token_audience of a demo relay (its tokens carry it)
CLOSED_ROOM = "morning-circle"


@dataclass(frozen=True, slots=True)
class Demo:
    """The demo's flow configuration (``Config.extra``) and the tokens to print."""

    extra: Mapping[str, Any]
    tokens: Mapping[str, str]  #: role -> token text


def _hhmm(moment: dt.datetime) -> str:
    return moment.strftime("%H:%M")


def build(now: float) -> Demo:
    """A demo configuration valid at wall-clock time ``now`` (seconds since the epoch)."""
    key = Ed25519PrivateKey.generate()
    wall = dt.datetime.fromtimestamp(now, dt.UTC)
    rules = (
        "Welcome. Use only your alias; never share names, places or anything that "
        "identifies anyone. A moderator reads messages before they appear. If you are in "
        "danger, use the crisis button."
    )
    rooms = [
        {   # open from an hour ago for eight hours, every day
            "name": OPEN_ROOM, "topic": "Evening survivors' circle (demo)", "days": DAYS,
            "start": _hhmm(wall - dt.timedelta(hours=1)),
            "end": _hhmm(wall + dt.timedelta(hours=8)), "timezone": "UTC",
            "listed": True, "premoderated": True, "rules": rules,
        },
        {   # opens ten hours from now, for one hour: closed while the demo is tried
            "name": CLOSED_ROOM, "topic": "Morning check-in (demo)", "days": DAYS,
            "start": _hhmm(wall + dt.timedelta(hours=10)),
            "end": _hhmm(wall + dt.timedelta(hours=11)), "timezone": "UTC",
            "listed": True, "rules": "Be gentle with each other.",
        },
    ]  # fmt: skip
    extra = {
        "issuers": [{"name": "demo", "public_key": tokens.public_key_text(key.public_key())}],
        "queues": [{"name": QUEUE, "max_length": 50, "retry_after": 60}],
        "rooms": rooms,
    }
    issued = {
        role: tokens.issue(key, role=role, ttl=TOKEN_TTL, now=now, queues=[QUEUE],
                          audience=AUDIENCE)
        for role in ("staff", "responder")
    }
    issued["moderator"] = tokens.issue(
        key, role="moderator", ttl=TOKEN_TTL, now=now, rooms=[tokens.ALL],
        audience=AUDIENCE
    )
    return Demo(extra, issued)


def lines(demo: Demo, pages_url: str | None) -> list[str]:
    """What the CLI prints after the banner line (stdout): pages URL and the tokens."""
    out = []
    if pages_url:
        out += [
            f"pages {pages_url}/",
            f"  visitor   {pages_url}/visitor.html",
            f"  group     {pages_url}/group.html",
            f"  staff     {pages_url}/staff.html",
            f"  responder {pages_url}/responder.html",
            f"  moderator {pages_url}/moderator.html",
        ]
    out += [f"token {role} {text}" for role, text in demo.tokens.items()]
    out.append("demo mode: an in-memory issuer; these tokens are for local use only")
    return out
