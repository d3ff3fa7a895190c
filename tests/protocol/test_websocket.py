"""The relay's RFC 6455 layer (protocol/websocket.py), checked against wsproto's client.

wsproto is an independent implementation: what its client sends must come out of
``FrameReader`` as the same messages however the bytes are split, and what the relay's
helpers build must parse in wsproto's client as the frames they claim to be. Every
malformed frame or request gets its typed error with the code or status the RFCs name.
"""

from __future__ import annotations

import base64
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection as WsFraming
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Pong,
    Request,
    TextMessage,
)

from haven.protocol import websocket as ws

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def request(*extra: str, method: str = "GET", drop: tuple[str, ...] = ()) -> bytes:
    headers = {
        "Host": "relay.example",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Protocol": "haven.v1",
    }
    lines = [f"{method} /ws HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k not in drop]
    lines += list(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# ------------------------------------------------------------------ upgrade


def test_rfc_example_accept_token() -> None:
    # RFC 6455 section 1.3's worked example.
    assert ws.accept_token(KEY.encode()) == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_wsproto_client_accepts_our_101() -> None:
    client = WSConnection(ConnectionType.CLIENT)
    data = client.send(Request(host="relay.example", target="/ws", subprotocols=["x", "haven.v1"]))
    assert ws.head_complete(data)
    upgrade = ws.parse_upgrade(data)
    assert upgrade.subprotocols == ("x", "haven.v1")
    assert upgrade.rest == b""
    client.receive_data(ws.accept_response(upgrade.key, "haven.v1"))
    (event,) = list(client.events())
    assert isinstance(event, AcceptConnection)
    assert event.subprotocol == "haven.v1"


def test_pipelined_first_frame_is_kept() -> None:
    head = request()
    upgrade = ws.parse_upgrade(head + b"\x82\x80abcd")
    assert upgrade.rest == b"\x82\x80abcd"


def test_header_names_are_case_insensitive_and_lists_combine() -> None:
    data = request(
        "sec-websocket-protocol: a, b", drop=("Sec-WebSocket-Protocol",)
    ).replace(b"Connection: Upgrade", b"connection: keep-alive, UPGRADE")
    data = data.replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Protocol: haven.v1\r\n\r\n")
    assert ws.parse_upgrade(data).subprotocols == ("a", "b", "haven.v1")


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (request(method="HEAD"), 405),
        (request(method="POST"), 405),
        (request(drop=("Upgrade",)), 426),
        (request(drop=("Connection",)), 426),
        (request(drop=("Sec-WebSocket-Version",)), 426),
        (request("Sec-WebSocket-Version: 8", drop=("Sec-WebSocket-Version",)), 426),
        (request(drop=("Sec-WebSocket-Key",)), 400),
        (request("Sec-WebSocket-Key: AAAA", drop=("Sec-WebSocket-Key",)), 400),
        (request("Sec-WebSocket-Key: not base64!!", drop=("Sec-WebSocket-Key",)), 400),
        (request(drop=("Host",)), 400),
        (request("Host: second"), 400),
        (request("Content-Length: 5"), 400),
        (request("Transfer-Encoding: chunked"), 400),
        (request(" folded: header"), 400),
        (request("no colon here"), 400),
        (b"GET /ws HTTP/1.0\r\nHost: x\r\n\r\n", 400),
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /\xff HTTP/1.1\r\n\r\n", 400),
    ],
)
def test_bad_upgrades_get_their_status(data: bytes, status: int) -> None:
    assert ws.head_complete(data)
    with pytest.raises(ws.UpgradeError) as caught:
        ws.parse_upgrade(data)
    assert caught.value.status == status
    response = ws.reject_response(caught.value)
    assert response.startswith(f"HTTP/1.1 {status} ".encode())
    head, _, body = response.partition(b"\r\n\r\n")
    assert f"Content-Length: {len(body)}".encode() in head
    assert b"Connection: close" in head


def test_request_head_is_bounded() -> None:
    assert not ws.head_complete(b"GET / HTTP/1.1\r\n")
    with pytest.raises(ws.UpgradeError) as caught:
        ws.head_complete(b"GET / HTTP/1.1\r\nX: " + b"a" * ws.MAX_HEAD)
    assert caught.value.status == 431
    with pytest.raises(ws.UpgradeError):
        ws.head_complete(request("X: " + "a" * ws.MAX_HEAD))


@given(st.binary(max_size=300))
def test_garbage_heads_raise_only_upgrade_errors(data: bytes) -> None:
    status = 0
    try:
        if ws.head_complete(data):
            ws.parse_upgrade(data)
    except ws.UpgradeError as exc:
        status = exc.status
    assert status in (0, 400, 405, 426, 431)


# ------------------------------------------------------------------ framing


def client_framing() -> WsFraming:
    return WsFraming(ConnectionType.CLIENT)


def read_all(reader: ws.FrameReader, data: bytes, cuts: list[int]) -> list[tuple[int, bytes]]:
    """Feed ``data`` split at ``cuts``; collect every event."""
    out: list[tuple[int, bytes]] = []
    last = 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        out += reader.receive(data[last:cut])
        last = cut
    return out


message_st = st.one_of(
    st.tuples(st.just("bin"), st.binary(max_size=70000), st.integers(1, 5)),
    st.tuples(st.just("ping"), st.binary(max_size=125), st.just(1)),
    st.tuples(st.just("pong"), st.binary(max_size=125), st.just(1)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(message_st, max_size=6), st.lists(st.integers(0, 10**6), max_size=8))
def test_messages_survive_any_split(
    messages: list[tuple[str, bytes, int]], cuts: list[int]
) -> None:
    client = client_framing()
    wire = b""
    expected: list[tuple[int, bytes]] = []
    for kind, payload, pieces in messages:
        if kind == "bin":
            step = max(1, -(-len(payload) // pieces))
            chunks = [payload[i : i + step] for i in range(0, len(payload), step)] or [b""]
            for i, chunk in enumerate(chunks):
                wire += client.send(Message(data=chunk, message_finished=i == len(chunks) - 1))
            expected.append((ws.BINARY, payload))
        elif kind == "ping":
            wire += client.send(Ping(payload=payload))
            expected.append((ws.PING, payload))
        else:
            wire += client.send(Pong(payload=payload))
            expected.append((ws.PONG, payload))
    wire += client.send(CloseConnection(code=4000, reason="bye"))
    reader = ws.FrameReader(max_message=70000)
    events = read_all(reader, wire, cuts)
    assert events[:-1] == expected
    assert events[-1][0] == ws.CLOSE
    assert ws.parse_close(events[-1][1]) == (4000, "bye")
    assert reader.receive(b"\x82\x80abcd") == []  # nothing after the close
    assert reader.buffered == 0


@given(st.binary(max_size=64), st.binary(min_size=4, max_size=4))
def test_unmask_python_matches_the_c_routine(payload: bytes, mask: bytes) -> None:
    assert ws.unmask_python(payload, mask) == ws.unmask(payload, mask)
    assert ws.unmask_python(ws.unmask_python(payload, mask), mask) == payload


def test_text_is_reported_at_its_first_frame() -> None:
    client = client_framing()
    data = client.send(Message(data="héllo", message_finished=False))
    reader = ws.FrameReader(max_message=1000)
    assert reader.receive(data[:2]) == [(ws.TEXT, b"")]


def masked(first: int, payload: bytes, length_bytes: bytes | None = None) -> bytes:
    mask = os.urandom(4)
    if length_bytes is None:
        length_bytes = bytes((0x80 | len(payload),))
    else:
        length_bytes = bytes((length_bytes[0] | 0x80,)) + length_bytes[1:]
    return bytes((first,)) + length_bytes + mask + ws.unmask(payload, mask)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (masked(0xC2, b"x"), 1002),  # RSV1 without an extension
        (masked(0x83, b"x"), 1002),  # reserved opcode
        (masked(0x8B, b""), 1002),  # reserved control opcode
        (b"\x82\x01x", 1002),  # unmasked
        (masked(0x80, b"x"), 1002),  # continuation of nothing
        (masked(0x09, b""), 1002),  # fragmented ping
        (masked(0x89, b"", b"\x7e\x00\x7e"), 1002),  # control frame over 125 bytes
        (masked(0x82, b"x", b"\x7e\x00\x01"), 1002),  # 16-bit length that fits in 7
        (masked(0x82, b"x", b"\x7f" + (1).to_bytes(8, "big")), 1002),
        (b"\x82\xff" + (1 << 63).to_bytes(8, "big") + b"abcd", 1002),  # 64-bit MSB set
        (masked(0x88, b"\x03"), 1002),  # close frame of one byte
        (masked(0x88, (1005).to_bytes(2, "big")), 1002),  # code not for the wire
        (masked(0x88, (999).to_bytes(2, "big")), 1002),
        (masked(0x88, (2000).to_bytes(2, "big")), 1002),
        (masked(0x88, (5000).to_bytes(2, "big")), 1002),
        (masked(0x88, (1000).to_bytes(2, "big") + b"\xff"), 1007),  # reason not UTF-8
    ],
)
def test_framing_violations_name_their_close_code(data: bytes, code: int) -> None:
    reader = ws.FrameReader(max_message=1000)

    def read() -> None:
        for opcode, payload in reader.receive(data):
            if opcode == ws.CLOSE:
                ws.parse_close(payload)

    with pytest.raises(ws.FramingError) as caught:
        read()
    assert caught.value.code == code
    assert reader.receive(masked(0x82, b"ok")) == []  # a failed reader takes nothing more


def test_new_message_inside_a_fragmented_one_is_refused() -> None:
    reader = ws.FrameReader(max_message=1000)
    assert reader.receive(masked(0x02, b"a")) == []
    with pytest.raises(ws.FramingError) as caught:
        reader.receive(masked(0x82, b"b"))
    assert caught.value.code == 1002


def test_too_big_is_refused_from_the_header_alone() -> None:
    reader = ws.FrameReader(max_message=1000)
    header = b"\x82\xfe" + (1001).to_bytes(2, "big")
    with pytest.raises(ws.FramingError) as caught:
        reader.receive(header)  # no mask or payload yet: nothing is buffered first
    assert caught.value.code == 1009


def test_fragments_are_bounded_in_bytes_and_count() -> None:
    reader = ws.FrameReader(max_message=10, max_fragments=3)
    reader.receive(masked(0x02, b"123456"))
    assert reader.buffered == 6
    with pytest.raises(ws.FramingError) as caught:
        reader.receive(masked(0x00, b"12345"))
    assert caught.value.code == 1009
    reader = ws.FrameReader(max_message=10, max_fragments=3)
    reader.receive(masked(0x02, b"") + masked(0x00, b"") + masked(0x00, b""))
    with pytest.raises(ws.FramingError) as caught:
        reader.receive(masked(0x00, b""))  # empty continuations count too
    assert caught.value.code == 1009


def test_events_before_a_bad_frame_are_kept() -> None:
    reader = ws.FrameReader(max_message=1000)
    with pytest.raises(ws.FramingError) as caught:
        reader.receive(masked(0x82, b"first") + masked(0x89, b"p") + b"\x82\x01x")
    assert caught.value.events == [(ws.BINARY, b"first"), (ws.PING, b"p")]


@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=4))
def test_garbage_frames_raise_only_framing_errors(data: bytes, cuts: list[int]) -> None:
    reader = ws.FrameReader(max_message=200, max_fragments=4)
    code = 0
    try:
        for opcode, payload in read_all(reader, data, cuts):
            assert opcode in (ws.BINARY, ws.TEXT, ws.PING, ws.PONG, ws.CLOSE)
            assert len(payload) <= 200
            if opcode == ws.CLOSE:
                ws.parse_close(payload)
    except ws.FramingError as exc:
        code = exc.code
    assert code in (0, 1002, 1007, 1009)
    assert reader.buffered <= 200 + 14 + len(data)


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_server_frames_parse_in_wsproto(size: int) -> None:
    client = WSConnection(ConnectionType.CLIENT)
    head = client.send(Request(host="h", target="/"))
    upgrade = ws.parse_upgrade(head)
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    client.receive_data(
        ws.accept_response(upgrade.key, None)
        + ws.frame(ws.BINARY, payload)
        + ws.frame(ws.PING, b"hi")
        + ws.frame(ws.PONG, b"yo")
        + ws.close_frame(4403, "forbidden " * 20)
    )
    events = list(client.events())
    assert isinstance(events[0], AcceptConnection)
    assert isinstance(events[1], BytesMessage)
    assert events[1].data == payload
    assert isinstance(events[2], Ping)
    assert events[2].payload == b"hi"
    assert isinstance(events[3], Pong)
    assert isinstance(events[4], CloseConnection)
    assert events[4].code == 4403
    long_close = ws.close_frame(4403, "é" * 200)
    assert len(long_close) <= 127  # a control frame's limit
    assert ws.parse_close(long_close[2:])[1] == "é" * 61  # cut on a character


def test_empty_close_reads_as_no_status() -> None:
    assert ws.parse_close(b"") == (1005, "")
    assert ws.close_frame(None) == b"\x88\x00"
    assert ws.close_frame(1005) == b"\x88\x00"


def test_text_event_type_is_wsproto_text() -> None:
    # The relay refuses text; wsproto agrees the frame we see as TEXT is one.
    client = client_framing()
    data = client.send(TextMessage(data="x"))
    server = WsFraming(ConnectionType.SERVER)
    server.receive_data(data)
    assert isinstance(next(iter(server.events())), TextMessage)
    assert ws.FrameReader(100).receive(data) == [(ws.TEXT, b"")]


def test_key_is_base64_of_16_bytes() -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    data = request(f"Sec-WebSocket-Key: {key}", drop=("Sec-WebSocket-Key",))
    assert ws.parse_upgrade(data).key == key.encode()
