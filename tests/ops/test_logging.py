"""Privacy of logs, error replies and metrics under every error path.

Clients connect from 127.0.0.2..127.0.0.9 with forged X-Forwarded-For, Forwarded and
X-Real-IP headers and walk through the error paths a relay has: bad frames, bad
envelopes, a wrong relay key, a wrong subprotocol, text frames, garbage before the
upgrade, unknown codes and tokens, oversized bodies, abrupt drops, resumes. The relay's
logs are captured at DEBUG (JSON and plain) through the real ``logs.setup`` handler,
together with an exception whose message and chained cause carry a code, an address
and a token. No address, port, code, alias, token or body may appear in the logs, in
any error reply, or in the metrics.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import warnings
from collections.abc import Iterator

import msgpack
import pytest
import trio
from trio_websocket import ConnectionClosed

from haven.protocol import codec, codes
from haven.protocol import messages as m
from haven.protocol.session import ClientSession
from haven.relay import logs
from haven.relay.server import RelayInfo
from tests.conftest import start_relay

from .helpers import FORGED_ADDRESSES, RawClient, connect, open_ws, port_of, scrape

BODY_MARK = "BODYSECRETq7Zx"


@pytest.fixture
def captured() -> Iterator[dict[str, io.StringIO]]:
    """Run ``logs.setup`` into a buffer (per format), restoring logging afterwards."""
    haven = logging.getLogger("haven")
    root = logging.getLogger()
    saved = (haven.handlers[:], haven.level, haven.propagate, root.handlers[:], root.level)
    buffers: dict[str, io.StringIO] = {}
    yield buffers
    haven.handlers[:], haven.level, haven.propagate = saved[0], saved[1], saved[2]
    root.handlers[:], root.level = saved[3], saved[4]
    logging.captureWarnings(False)
    warnings.resetwarnings()
    warnings.simplefilter("error")


def _forms(token: bytes) -> set[str]:
    """Printable forms a token could leak in."""
    return {
        token.hex(),
        base64.b64encode(token).decode().rstrip("="),
        base64.urlsafe_b64encode(token).decode().rstrip("="),
        repr(token)[2:-1][:24],
    }


async def _request(client: RawClient, make: type[m.Request], **fields: object) -> m.Message:
    rid = client.next_id()
    await client.send(make(id=rid, **fields))  # type: ignore[call-arg]
    return await client.reply(rid)


async def _walk_error_paths(
    nursery: trio.Nursery, info: RelayInfo
) -> tuple[set[str], set[int], list[str]]:
    """Drive every error path; returns (secrets, client ports, error reply texts)."""
    port = port_of(info.url)
    key = info.public_key
    secrets: set[str] = {BODY_MARK, *FORGED_ADDRESSES}
    ports: set[int] = set()
    replies: list[str] = []

    def note(reply: m.Message) -> None:
        if isinstance(reply, m.Error):
            replies.append(reply.message)

    a = await connect(nursery, port, key, "127.0.0.2")
    b = await connect(nursery, port, key, "127.0.0.3")
    for c in (a, b):
        secrets.add(c.local[0])
        ports.add(c.local[1])
    created = await _request(a, m.CreateRoom, kind="group", topic="night shift")
    assert isinstance(created, m.Joined)
    code = created.seat.room
    secrets |= {code, created.seat.alias, *_forms(created.seat.token)}
    joined = await _request(b, m.Join, room=code.upper().replace("-", " "))
    assert isinstance(joined, m.Joined)
    secrets |= {joined.seat.alias, *_forms(joined.seat.token)}
    sent = await _request(a, m.Send, room=code, body=BODY_MARK.encode() * 3)
    assert isinstance(sent, m.Sent)
    queued = await _request(b, m.RequestHelp, queue="helpline")
    assert isinstance(queued, m.Queued)
    secrets |= _forms(queued.token)

    # Request-level errors from client c: each reply is checked for leaks below.
    c = await connect(nursery, port, key, "127.0.0.4")
    secrets.add(c.local[0])
    ports.add(c.local[1])
    mistyped = code[:-1] + ("0" if code[-1] != "0" else "1")
    other_code = codes.new_room_code()
    spoken = codes.new_spoken_code()
    secrets |= {mistyped, other_code, spoken}
    requests: list[tuple[type[m.Request], dict[str, object]]] = [
        (m.Join, {"room": mistyped}),
        (m.Join, {"room": other_code}),
        (m.Join, {"room": spoken}),
        (m.Send, {"room": code, "body": BODY_MARK.encode()}),
        (m.Send, {"room": other_code, "body": BODY_MARK.encode() * 2000}),
        (m.Resume, {"token": codes.new_token(), "after": 0}),
        (m.RequestHelp, {"queue": "no-such-queue"}),
        (m.HandoffAccept, {"code": spoken}),
        (m.Leave, {"room": code}),
    ]
    for make, fields in requests:
        note(await _request(c, make, **fields))
    # Bad envelopes: not msgpack, an unknown type named like a code, a bad field.
    for envelope in [
        b"\xc1" + code.encode(),
        msgpack.packb({"t": code, "id": 50}),
        msgpack.packb({"t": "join", "id": 51, "room": 7, code: BODY_MARK}),
        msgpack.packb({"t": "send", "id": 52, "room": code, "body": BODY_MARK}),
    ]:
        await c.send_envelope(envelope)
        reply = await c.receive()
        assert isinstance(reply, m.Error), reply
        note(reply)
    c.last_id = 60

    # A bit-flipped frame ends that connection (4105) and nothing else.
    d = await connect(nursery, port, key, "127.0.0.5")
    secrets.add(d.local[0])
    ports.add(d.local[1])
    frame = bytearray(d.session.seal_envelope(codec.encode(m.Ping(id=1))))
    frame[20] ^= 0x40
    await d.ws.send_message(bytes(frame))
    assert await d.wait_closed() == 4105

    # The wrong relay key: the relay cannot read message 1 (4106).
    ws, local = await open_ws(nursery, port, "127.0.0.6")
    secrets.add(local[0])
    ports.add(local[1])
    await ws.send_message(ClientSession(bytes(range(32))).start())
    with pytest.raises(ConnectionClosed) as closed:
        await ws.get_message()
    assert closed.value.reason is not None
    assert closed.value.reason.code == 4106

    # A text frame instead of the Noise message (1003), and a wrong subprotocol.
    ws, local = await open_ws(nursery, port, "127.0.0.7")
    ports.add(local[1])
    await ws.send_message(f"hello {code} {BODY_MARK}")
    with pytest.raises(ConnectionClosed):
        await ws.get_message()
    ws, local = await open_ws(nursery, port, "127.0.0.8", subprotocols=("haven.v0",))
    ports.add(local[1])
    with pytest.raises(ConnectionClosed):
        await ws.get_message()

    # Garbage instead of an HTTP upgrade, with forged headers, from 127.0.0.9.
    stream = await trio.open_tcp_stream("127.0.0.1", port, local_address="127.0.0.9")
    ports.add(stream.socket.getsockname()[1])
    async with stream:
        await stream.send_all(
            b"GET /" + code.encode() + b" HTTP/1.1\r\nHost: x\r\n"
            b"X-Forwarded-For: 203.0.113.7\r\nX-Real-IP: 198.51.100.99\r\n\r\n"
        )
        with trio.fail_after(30):
            while await stream.receive_some(4096):
                pass

    # An abrupt drop, then a resume from another address with the seat's token.
    await a.ws.aclose()
    e = await connect(nursery, port, key, "127.0.0.9")
    ports.add(e.local[1])
    resumed = await _request(e, m.Resume, token=created.seat.token, after=0)
    assert isinstance(resumed, m.Joined)
    secrets |= _forms(resumed.seat.token)
    note(await _request(e, m.Resume, token=created.seat.token, after=0))  # used up
    return secrets, ports, replies


def _log_exception_with_secrets(code: str, token: bytes) -> None:
    """A traceback whose message and chained cause carry a code, address and token."""
    log = logging.getLogger("haven.test")

    def lookup() -> None:
        raise KeyError(f"room {code} from 127.0.0.2:41234 token={token!r}")

    try:
        try:
            lookup()
        except KeyError as exc:
            raise RuntimeError(f"handler failed for {code} ({token.hex()})") from exc
    except RuntimeError:
        log.exception("unexpected error in %s for %s", "join", code)
    log.debug("debug line about %s at %s", code, "[::ffff:127.0.0.3]:5000", stack_info=True)


@pytest.mark.parametrize("fmt", ["json", "plain"])
async def test_no_address_port_code_alias_token_or_body_anywhere(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    captured: dict[str, io.StringIO],
    fmt: str,
) -> None:
    buffer = io.StringIO()
    logs.setup("DEBUG", fmt, stream=buffer)
    info = await start_relay(
        nursery, metrics_port=0, log_level="DEBUG", extra={"queues": [{"name": "helpline"}]}
    )
    assert info.metrics_url is not None
    secrets, ports, replies = await _walk_error_paths(nursery, info)
    token = codes.new_token()
    _log_exception_with_secrets(next(s for s in secrets if s.count("-") == 6), token)
    secrets |= _forms(token)
    text, _, _ = await scrape(info.metrics_url)
    await trio.sleep(1)  # a housekeeping tick (ages the held seat, flushes)

    logged = buffer.getvalue()
    # The capture works: the relay's own lines and the traceback are there.
    assert "listening on" in logged
    assert "handshake failed" in logged  # the relay's own DEBUG lines on error paths
    assert "closing a connection" in logged
    assert "Traceback" in logged
    assert "RuntimeError" in logged
    assert "KeyError" in logged
    if fmt == "json":
        for line in logged.splitlines():
            json.loads(line)
    assert len(replies) >= 12

    # The relay's own listen ports are its configuration and appear in its start-up line;
    # a client socket on 127.0.0.2-9 may happen to get the same number (different address).
    own = {port_of(info.url), port_of(info.metrics_url)}
    ports = [p for p in ports if p not in own]
    for where, body in [("logs", logged), ("metrics", text), ("replies", "\n".join(replies))]:
        for secret in secrets:
            assert secret.lower() not in body.lower(), (where, secret)
        assert "127.0.0." not in body.replace("127.0.0.1", ""), where
        for p in ports:
            assert not re.search(rf"(?<![\d.]){p}(?![\d.])", body), (where, p)
