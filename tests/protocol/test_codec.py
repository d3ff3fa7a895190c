"""The envelope codec: round trips, strict limits, and one typed error for bad input."""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import subprocess
import sys
import tracemalloc
import typing
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from haven.protocol import codec
from haven.protocol import messages as m
from haven.protocol.errors import DecodeError, ErrorCode

ALL = {**m.REQUESTS, **m.SERVER_MESSAGES, **m.HANDSHAKE}


def strategy_for(tp: Any, meta: Any) -> st.SearchStrategy[Any]:
    """Values valid for one field, derived from its type and metadata."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, __import__("types").UnionType):
        inner = next(a for a in typing.get_args(tp) if a is not type(None))
        return st.none() | strategy_for(inner, meta)
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.integers(meta.get("lo", 0), meta.get("hi", m.MAX_INT))
    if tp is str:
        if meta.get("choices"):
            return st.sampled_from(meta["choices"])
        return st.text(max_size=min(meta["max"], 40))
    if tp is bytes:
        return st.binary(max_size=min(meta["max"], 300))
    if origin is tuple:
        elem = typing.get_args(tp)[0]
        return st.lists(strategy_for(elem, {"max": 40}), max_size=4).map(tuple)
    assert dataclasses.is_dataclass(tp)
    return message_strategy(tp)


def message_strategy(cls: type[Any]) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    fields = {f.name: strategy_for(hints[f.name], f.metadata) for f in dataclasses.fields(cls)}
    return st.fixed_dictionaries(fields).map(lambda kw: cls(**kw))


@pytest.mark.parametrize("name", sorted(ALL))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_round_trip_every_message(name: str, data: st.DataObject) -> None:
    msg = data.draw(message_strategy(ALL[name]))
    assert codec.decode_any(codec.encode(msg)) == msg


def test_catalogue_is_large_enough() -> None:
    # Guards the parametrised test above against an empty registry.
    assert len(m.REQUESTS) >= 25
    assert len(m.SERVER_MESSAGES) >= 25


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_raise_only_decode_error(data: bytes) -> None:
    for decode in (codec.decode_request, codec.decode_server, codec.decode_handshake):
        with contextlib.suppress(DecodeError):
            decode(data)


@settings(max_examples=300, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=5)
    | st.binary(max_size=5)
    | st.floats(allow_nan=False),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=4) | st.integers(0, 99), children, max_size=4),
    max_leaves=20,
))  # fmt: skip
def test_arbitrary_msgpack_raises_only_decode_error(obj: Any) -> None:
    data = msgpack.packb(obj, use_bin_type=True)
    for decode in (codec.decode_request, codec.decode_server):
        with contextlib.suppress(DecodeError):
            decode(data)


def _verdict(check: Any, data: bytes) -> str | None:
    try:
        check(data)
    except DecodeError as exc:
        return exc.message
    return None


_FLAT_VALUES = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.text(max_size=40) | st.binary(max_size=300)
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(st.text(max_size=8), _FLAT_VALUES, max_size=17),
    st.integers(0, 40),
    st.binary(max_size=3),
)
def test_the_flat_scan_agrees_with_the_full_walk(
    obj: dict[str, Any], cut: int, tail: bytes
) -> None:
    """``scan``'s fast path for flat maps gives the full walk's verdict on the same
    bytes: whole, cut short, or with bytes after (regression guard for the fast path)."""
    whole = msgpack.packb(obj, use_bin_type=True)
    for data in (whole, whole[: max(0, len(whole) - cut)], whole + tail):
        assert _verdict(codec.scan, data) == _verdict(codec._scan_nested, data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_the_flat_scan_agrees_on_arbitrary_bytes(tail: bytes) -> None:
    for data in (tail, b"\x84" + tail, b"\x8f" + tail):
        assert _verdict(codec.scan, data) == _verdict(codec._scan_nested, data)


def test_wrong_types_are_bad_field_with_request_id() -> None:
    data = msgpack.packb({"t": "send", "id": 7, "room": 5, "body": b"x"})
    with pytest.raises(DecodeError) as info:
        codec.decode_request(data)
    assert info.value.code is ErrorCode.BAD_FIELD
    assert info.value.request_id == 7
    assert "room" in info.value.message


def test_bool_is_not_int_and_int_is_not_bool() -> None:
    with pytest.raises(DecodeError):
        codec.decode_request(msgpack.packb({"t": "ping", "id": True}))
    with pytest.raises(DecodeError):
        codec.decode_request(msgpack.packb({"t": "lock", "id": 1, "room": "r", "locked": 1}))


def test_unknown_type_and_direction() -> None:
    with pytest.raises(DecodeError) as info:
        codec.decode_request(msgpack.packb({"t": "nope", "id": 3}))
    assert info.value.code is ErrorCode.UNKNOWN_TYPE
    assert info.value.request_id == 3
    # An event is not a request.
    deliver = codec.encode(m.Deliver(room="r", seq=1, sender="a", body=b""))
    with pytest.raises(DecodeError):
        codec.decode_request(deliver)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\xc1", "reserved"),
        (b"\xd4\x01\x00", "fixext"),
        (b"\xc7\x01\x01\x00", "ext8"),
        (msgpack.packb({"t": "ping", "id": 1}) + b"\x00", "trailing"),
        (msgpack.packb({"t": "ping", "id": 1})[:-1], "truncated"),
        (msgpack.packb([1, 2]), "not a map"),
        (msgpack.packb({b"t": "ping", "id": 1}), "bytes key"),
        (b"\x83\xa1t\xa4join\xa2id\x01\xa4room\xa2\xff\xfe", "invalid utf-8"),
        (b"\xdd\xff\xff\xff\xff", "huge array header"),
        (b"\xdf\xff\xff\xff\xff", "huge map header"),
        (b"\xdb\xff\xff\xff\xff", "huge str header"),
    ],
)  # fmt: skip
def test_malformed_envelopes(data: bytes, why: str) -> None:
    with pytest.raises(DecodeError):
        codec.decode_request(data)


def test_size_checked_before_parsing() -> None:
    with pytest.raises(DecodeError) as info:
        codec.decode_request(b"\x80" * (codec.MAX_ENVELOPE + 1))
    assert info.value.code is ErrorCode.TOO_LARGE


@pytest.mark.parametrize(
    "frame",
    [
        b"\x91" * 65000 + b"\x90",  # 65,000 nested one-element arrays
        b"\xdc\x00\xff" + b"\x90" * 255,  # wide array of empty arrays (within length limit)
        b"\xdd\x00\x00\xff\xff" + b"\x90" * 65530,  # 65,535 empty arrays
        b"\xdf\x00\x00\x7f\xff" + b"\x80\x90" * 32767,  # map of empty containers
    ],
)
def test_container_bombs_refused_without_building(frame: bytes) -> None:
    frame = frame[: codec.MAX_ENVELOPE]
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError):
            codec.decode_request(frame)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Building 65k empty lists would take > 3.5 MB; the scan refuses with almost nothing.
    assert peak < 64 * 1024


def test_scan_is_byte_exact_on_every_prefix() -> None:
    data = codec.encode(m.Joined(id=9, seat=m.Seat(room="r", alias="a", token=b"t" * 32, seq=3,
                                                   members=2, kind="group", topic="x")))
    assert codec.decode_server(data)
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            codec.decode_server(data[:cut])


def test_none_fields_are_omitted() -> None:
    raw = msgpack.unpackb(codec.encode(m.Sent(id=1, room="r", seq=4)))
    assert raw == {"t": "sent", "id": 1, "room": "r", "seq": 4}


PROTOCOL_DIR = Path(__file__).resolve().parents[2] / "protocol"
FORBIDDEN = {"trio", "socket", "time", "logging", "asyncio", "threading"}


@pytest.mark.parametrize("path", sorted(PROTOCOL_DIR.glob("*.py")), ids=lambda p: p.name)
def test_protocol_sources_import_no_io(path: Path) -> None:
    tree = ast.parse(path.read_text("utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN


def test_importing_protocol_does_not_import_trio() -> None:
    code = (
        "import sys, haven.protocol, haven.protocol.codec, haven.protocol.noise, "
        "haven.protocol.frames, haven.protocol.codes, haven.protocol.pow, "
        "haven.protocol.messages, haven.protocol.errors\n"
        "bad = {'trio', 'socket', 'logging', 'asyncio'} & set(sys.modules)\n"
        "assert not bad, bad\n"
    )
    root = str(PROTOCOL_DIR.parent)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


def test_depth_limit_counts_the_top_level_map_as_depth_one() -> None:
    """§5: MAX_DEPTH 4 with the top-level map at depth 1 (regression: 4 was refused)."""
    # {"x": [[[]]]}: map, array, array, array = depth 4, as literal bytes.
    at_limit = b"\x81\xa1x\x91\x91\x90"
    codec.scan(at_limit)
    # {"x": [[[[]]]]}: depth 5.
    with pytest.raises(DecodeError) as too_deep:
        codec.scan(b"\x81\xa1x\x91\x91\x91\x90")
    assert "deep" in str(too_deep.value)
    assert codec.MAX_DEPTH == 4
