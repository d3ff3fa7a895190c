"""Helpers for the flow tests: a real relay on 127.0.0.1:0 with issuers, queues, rooms.

Every test talks to the relay through the Python SDK (``client``). Tokens are minted
with ``relay.tokens`` from an operator key made per test, exactly as
``haven token issue`` would.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from haven import client
from haven.relay import flows, tokens
from haven.relay.server import RelayInfo
from tests.conftest import start_relay


@dataclass
class Operator:
    """An issuer: signing key plus the ``[[issuers]]`` entry that trusts it."""

    name: str
    key: Ed25519PrivateKey

    def entry(self, **extra: Any) -> dict[str, Any]:
        return {
            "name": self.name,
            "public_key": tokens.public_key_text(self.key.public_key()),
            **extra,
        }

    def token(self, role: str, *, ttl: float = 8 * 3600, now: float | None = None,
              queues: tuple[str, ...] = (), rooms: tuple[str, ...] = ()) -> str:  # fmt: skip
        return tokens.issue(
            self.key,
            role=role,
            ttl=ttl,
            now=time.time() if now is None else now,
            queues=queues,
            rooms=rooms,
        )


def flows_extra(operator: Operator, **sections: Any) -> dict[str, Any]:
    """Config sections: the operator as issuer, two queues, plus ``sections``."""
    extra: dict[str, Any] = {
        "issuers": [operator.entry()],
        "queues": [
            {"name": "helpline", "max_length": 3, "retry_after": 90},
            {"name": "male-survivors"},
        ],
    }
    extra.update(sections)
    return extra


async def relay_with(nursery: trio.Nursery, extra: dict[str, Any], **changes: Any) -> RelayInfo:
    return await start_relay(nursery, extra=extra, **changes)


#: Seconds (virtual under MockClock) to wait for an expected event.
EVENT_WAIT = 10


def connect(info: RelayInfo, **kwargs: Any) -> Any:
    """An SDK connection to ``info`` (an async context manager)."""
    return client.connect(info.url, info.key_text, **kwargs)


async def next_event(stream: Any, kind: type[Any]) -> Any:
    """The next event of type ``kind`` from an SDK stream (others are skipped)."""
    with trio.fail_after(EVENT_WAIT):
        async for event in stream:
            if isinstance(event, kind):
                return event
    raise AssertionError(f"stream ended before a {kind.__name__}")


def anchor(info: RelayInfo, wall: float) -> None:
    """Make the relay's flows see Unix time ``wall`` at this instant."""
    flows.installed(info.relay.hub).clock.set(wall, trio.current_time())
