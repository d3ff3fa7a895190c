"""The examples in docs/examples/ run against a real relay and do what they say."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import trio

from haven.protocol.errors import ErrorCode
from haven.protocol.session import close_code
from tests.conftest import start_relay

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_two_peers(nursery: trio.Nursery) -> None:
    info = await start_relay(nursery)
    got = await load("two_peers").main(info.url, info.key_text)
    assert got == [b"hello, is anyone here?", b"yes - take your time"]


async def test_survive_a_drop(nursery: trio.Nursery) -> None:
    info = await start_relay(nursery)
    relay = info.relay

    def drop(alias: str) -> None:
        # Cut the receiver's connection from the relay side, as a network would.
        for conn in list(relay.connections):
            seats = conn.peer.seats.values() if conn.peer is not None else ()
            if any(seat.alias == alias for seat in seats):
                conn.close(close_code(ErrorCode.SLOW_CONSUMER), "test drop")

    got = await load("survive_a_drop").main(info.url, info.key_text, drop)
    assert got == [b"one", b"two", b"three"]
    assert relay.hub.stats["resumes"] >= 1


async def test_survive_a_drop_standalone_really_drops(nursery: trio.Nursery) -> None:
    """Regression: run as documented (no test hook), the example never dropped anything."""
    info = await start_relay(nursery)
    got = await load("survive_a_drop").main(info.url, info.key_text)
    assert got == [b"one", b"two", b"three"]
    assert info.relay.hub.stats["resumes"] >= 1  # the receiver's link was cut and resumed


def test_asyncio_reload_runs_under_asyncio() -> None:
    """The asyncio example, under ``asyncio.run`` as documented, against a real relay."""
    import asyncio

    from .netkit import relay_process

    with relay_process() as relay:
        got = asyncio.run(load("asyncio_reload").main(relay.url, relay.key))
    assert got == [b"hello, I'm here to listen", b"take your time"]
