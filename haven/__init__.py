"""Haven: an anonymous, ephemeral, end-to-end-encrypted session relay.

Everything Haven installs lives under this one name, so it cannot collide with a
user's own ``protocol`` or ``client`` module:

* ``haven.client`` (and ``haven`` itself): the Python SDK, for Trio and asyncio;
* ``haven.protocol``: the wire protocol, pure and sans-IO;
* ``haven.relay``: the relay server (``haven serve``);
* ``haven.loadtest``: the load tester (``haven loadtest``).

In the repository these are the top-level folders ``client/``, ``protocol/``, ``relay/``
and ``loadtest/``; ``haven/`` links them under one package. The SDK's names are loaded
on first use, so ``import haven.protocol`` does not pull in Trio.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from haven.client import (
        ConnectFailed,
        Connection,
        ConnectionLost,
        ConnState,
        HandshakeFailed,
        HavenClientError,
        HavenRequestError,
        QueueTicket,
        Room,
        TLSFailed,
        UpgradeRefused,
        connect,
        parse_relay_key,
    )

__all__ = [
    "ConnState",
    "ConnectFailed",
    "Connection",
    "ConnectionLost",
    "HandshakeFailed",
    "HavenClientError",
    "HavenRequestError",
    "QueueTicket",
    "Room",
    "TLSFailed",
    "UpgradeRefused",
    "connect",
    "parse_relay_key",
]


def __getattr__(name: str) -> Any:
    """Load the SDK on first use of one of its names (PEP 562)."""
    if name in __all__:
        return getattr(importlib.import_module("haven.client"), name)
    raise AttributeError(f"module 'haven' has no attribute {name!r}")
