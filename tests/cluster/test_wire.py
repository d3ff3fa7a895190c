"""The sans-IO NATS protocol parser and command builders (no server, no I/O)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from haven.cluster import wire

STREAM = (
    b'INFO {"server_id":"x","max_payload":1048576,"headers":true}\r\n'
    b"PING\r\n"
    b"MSG hv.a 1 5\r\nhello\r\n"
    b"MSG hv.b 2 _INBOX.x.1 0\r\n\r\n"
    b"HMSG hv.c 3 18 22\r\nNATS/1.0\r\nA: b\r\n\r\nbody\r\n"
    b"HMSG _INBOX.x.2 9 16 16\r\nNATS/1.0 503\r\n\r\n\r\n"
    b"PONG\r\n+OK\r\n-ERR 'Authorization Violation'\r\n"
)


def expected() -> list[wire.Event]:
    return [
        wire.Info({"server_id": "x", "max_payload": 1048576, "headers": True}),
        wire.Ping(),
        wire.Msg(b"hv.a", 1, None, b"hello"),
        wire.Msg(b"hv.b", 2, b"_INBOX.x.1", b""),
        wire.Msg(b"hv.c", 3, None, b"body", b"NATS/1.0\r\nA: b\r\n\r\n"),
        wire.Msg(b"_INBOX.x.2", 9, None, b"", b"NATS/1.0 503\r\n\r\n"),
        wire.Pong(),
        wire.Ok(),
        wire.Err("Authorization Violation"),
    ]


def test_parses_every_server_operation() -> None:
    events = wire.Parser().feed(STREAM)
    assert events == expected()
    hmsg, status = events[4], events[5]
    assert isinstance(hmsg, wire.Msg)
    assert hmsg.status is None
    assert isinstance(status, wire.Msg)
    assert status.status == 503
    err = events[-1]
    assert isinstance(err, wire.Err)
    assert err.fatal


@given(st.lists(st.integers(0, len(STREAM)), max_size=12))
def test_any_split_gives_the_same_events(cuts: list[int]) -> None:
    parser = wire.Parser()
    bounds = [0, *sorted(cuts), len(STREAM)]
    events: list[wire.Event] = []
    for a, b in itertools.pairwise(bounds):
        events += parser.feed(STREAM[a:b])
    assert events == wire.Parser().feed(STREAM)
    assert parser.buffered == 0


@given(st.binary(max_size=300))
def test_garbage_is_refused_with_a_wire_error_or_parsed(data: bytes) -> None:
    parser = wire.Parser(max_line=64, max_payload=128)
    try:
        parser.feed(data)
    except wire.WireError:
        return
    assert parser.buffered <= 64 + 128 + 2 + 64 + 2  # never holds more than one message


@pytest.mark.parametrize(
    "data",
    [
        b"MSG hv.a 1\r\n",  # no size
        b"MSG hv.a x 5\r\nhello\r\n",  # sid not a number
        b"MSG hv.a 1 5\r\nhelloXX",  # payload not followed by CRLF
        b"HMSG hv.a 1 30 10\r\n",  # headers longer than the message
        b"INFO [1]\r\n",
        b"INFO {nope\r\n",
        b"WHAT\r\n",
    ],
)
def test_malformed_input_is_a_wire_error(data: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.Parser().feed(data)


def test_limits_bound_what_is_buffered() -> None:
    parser = wire.Parser(max_line=64)
    parser.feed(b"MSG " + b"a" * 60)
    with pytest.raises(wire.WireError, match="control line too long"):
        parser.feed(b"b" * 10)
    info = wire.Parser()
    info.feed(b'INFO {"max_payload": 100}\r\n')
    with pytest.raises(wire.WireError, match="max_payload"):
        info.feed(b"MSG hv.a 1 %d\r\n" % (100 + wire.MAX_LINE + 1))


def test_non_fatal_errors() -> None:
    assert not wire.Err("Invalid Subject").fatal
    assert not wire.Err("Permissions Violation for Publish to hv.x").fatal
    assert wire.Err("Stale Connection").fatal


def test_commands() -> None:
    assert wire.pub(b"hv.a", b"xy") == b"PUB hv.a 2\r\nxy\r\n"
    assert wire.pub(b"hv.a", b"", reply=b"_INBOX.1") == b"PUB hv.a _INBOX.1 0\r\n\r\n"
    assert wire.sub(b"hv.*", 7) == b"SUB hv.* 7\r\n"
    assert wire.sub(b"hv.q", 8, queue=b"staff") == b"SUB hv.q staff 8\r\n"
    assert wire.unsub(7) == b"UNSUB 7\r\n"
    assert wire.unsub(7, 1) == b"UNSUB 7 1\r\n"
    hpub = wire.hpub(b"hv.h", {"K": "v"}, b"p")
    assert hpub == b"HPUB hv.h 18 19\r\nNATS/1.0\r\nK: v\r\n\r\np\r\n"
    assert wire.connect({"verbose": False}) == b'CONNECT {"verbose":false}\r\nPING\r\n'
    with pytest.raises(ValueError, match="header"):
        wire.hpub(b"hv.h", {"K": "v\r\nX: injected"}, b"")
    with pytest.raises(ValueError, match="queue"):
        wire.sub(b"hv.q", 1, queue=b"has space")


@pytest.mark.parametrize(
    ("subject", "wildcards", "ok"),
    [
        (b"hv.0123abcd", False, True),
        (b"hv.*", True, True),
        (b"hv.>", True, True),
        (b"hv.*", False, False),
        (b"hv..x", False, False),
        (b"hv.a b", False, False),
        (b"", False, False),
        (b"hv.a*", True, False),
        (b"hv.\r\nPUB", False, False),
    ],
)
def test_subject_checks(subject: bytes, wildcards: bool, ok: bool) -> None:
    if ok:
        wire.check_subject(subject, wildcards=wildcards)
    else:
        with pytest.raises(ValueError, match=r"subject|token|wildcard"):
            wire.check_subject(subject, wildcards=wildcards)
