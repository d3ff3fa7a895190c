"""A full relay scenario at DEBUG logging, run in a child process by test_privacy.py.

Why a separate process: ``sys.addaudithook`` cannot be removed once installed, so the
hook that watches for files opened for writing must not outlive this run. The script
prints one JSON report on stdout: every captured log line, every error text the relay
sent, the secrets the scenario used (codes, aliases, tokens, bodies, topic), the
clients' own ports, and every write-like file operation seen after start-up. The test
asserts on it; this script asserts only that the scenario itself went as planned.

Clients connect from 127.0.0.2 while the relay listens on 127.0.0.1, so the client
address is a string the relay has no legitimate reason to ever print.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import sys
import tempfile
from functools import partial
from typing import Any

import msgpack
import trio
import trio.testing
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from haven.protocol import codec, codes
from haven.protocol import messages as m
from haven.protocol.noise import public_bytes
from haven.relay import logs
from haven.relay.config import Config
from haven.relay.server import RelayInfo, serve
from tests.relay.wire import Closed, RawSocket, WireClient, port_of, req

CLIENT_HOST = "127.0.0.2"
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
WRITE_EVENTS = {
    "os.rename", "os.remove", "os.rmdir", "os.mkdir", "os.truncate", "os.link",
    "os.symlink", "os.chmod", "os.chown", "shutil.copyfile", "shutil.move", "shutil.rmtree",
}  # fmt: skip

armed = False
writes: list[str] = []


def audit(event: str, args: tuple[Any, ...]) -> None:
    """Record every write-like file operation once the relay is up."""
    if not armed:
        return
    if event == "open":
        path, mode, flags = [*args, None, None, None][:3]
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & WRITE_FLAGS
        )
        if writing:
            writes.append(f"open {path!r} mode={mode!r} flags={flags!r}")
    elif event in WRITE_EVENTS:
        writes.append(f"{event} {args!r}")


def token_forms(token: bytes) -> list[str]:
    """Every way a token might be spelled in text."""
    return [
        token.hex(),
        base64.b64encode(token).decode(),
        base64.urlsafe_b64encode(token).decode().rstrip("="),
        repr(token)[2:-1],
    ]


class Report:
    def __init__(self) -> None:
        self.secrets: list[str] = []
        self.ports: list[int] = []
        self.errors: list[str] = []

    def client(self, c: WireClient) -> WireClient:
        self.ports.append(c.sock.local_port)
        assert c.sock.local_host == CLIENT_HOST
        return c

    def seat(self, seat: m.Seat) -> None:
        self.secrets += [seat.room, seat.room.replace("-", ""), seat.alias]
        self.secrets += token_forms(seat.token)

    async def expect_error(self, c: WireClient, make: Any, code: int) -> None:
        reply = await c.request(make)
        assert isinstance(reply, m.Error), reply
        assert reply.code == code, reply
        self.errors.append(reply.message)

    def closed(self, exc: Closed) -> None:
        self.errors.append(exc.reason)


async def scrape(url: str) -> str:
    host, port = url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data.decode("utf-8", "replace")


async def scenario(report: Report, metrics_text: list[str]) -> None:
    global armed
    config = Config(port=0, metrics_port=0, log_level="DEBUG", resume_grace=5,
                    max_body_bytes=2048)
    async with trio.open_nursery() as nursery:
        info: RelayInfo = await nursery.start(partial(serve, config))
        armed = True
        port = port_of(info.url)
        clients: list[WireClient] = []

        async def connect(key: bytes = info.public_key) -> WireClient:
            c = await WireClient.connect(port, key, bind_host=CLIENT_HOST)
            clients.append(c)
            return report.client(c)

        a, b, c, d = [await connect() for _ in range(4)]
        topic = "topic-" + os.urandom(6).hex()
        report.secrets.append(topic)
        created = await a.call(lambda i: m.CreateRoom(id=i, kind="group", topic=topic), m.Joined)
        code = created.seat.room
        report.seat(created.seat)
        seats: dict[int, m.Seat] = {}
        for joiner, spelling in ((b, code.upper()), (c, code.replace("-", " "))):
            joined = await joiner.call(req(m.Join, room=spelling), m.Joined)
            report.seat(joined.seat)
            seats[id(joiner)] = joined.seat
        for sender in (a, b, c):
            body = b"body-" + os.urandom(8).hex().encode()
            report.secrets.append(body.decode())
            await sender.call(req(m.Send, room=code, body=body), m.Sent)
        await a.call(lambda i: m.Typing(id=i, room=code), m.Ok)

        # Mistakes and refusals: every error text is kept for the check.
        alphabet = codes.ROOM_CODE_ALPHABET
        typo = alphabet[(alphabet.index(code[0]) + 1) % len(alphabet)] + code[1:]
        unknown = codes.new_room_code()
        report.secrets += [typo, unknown]
        await report.expect_error(b, lambda i: m.Join(id=i, room=typo), 111)
        await report.expect_error(d, lambda i: m.Join(id=i, room=unknown), 200)
        await report.expect_error(d, lambda i: m.Send(id=i, room=code, body=b"x"), 202)
        big = b"big-" + os.urandom(8).hex().encode() + bytes(3000)
        report.secrets.append(big[:20].decode())
        await report.expect_error(a, lambda i: m.Send(id=i, room=code, body=big), 103)
        for envelope in (b"\xc1garbage", msgpack.packb({"t": "nope", "id": 99})):
            await a.send_envelope(envelope)
            reply = await a.reply(0 if envelope.startswith(b"\xc1") else 99)
            assert isinstance(reply, m.Error)
            report.errors.append(reply.message)
        a.last_id = 99

        # Hostile connections.
        flipper = await connect()
        frame = bytearray(flipper.session.seal_envelope(codec.encode(m.Ping(id=1))))
        frame[5] ^= 1
        await flipper.sock.send_bytes(bytes(frame))
        await flipper.wait_closed()
        report.errors.append(flipper.sock.inbox.closed.reason if flipper.sock.inbox.closed else "")
        try:
            await connect(public_bytes(X25519PrivateKey.generate().public_key()))
        except Closed as exc:
            report.closed(exc)
        raw = await RawSocket.open(port, bind_host=CLIENT_HOST)
        report.ports.append(raw.local_port)
        await raw.send_raw(b"garbage before the upgrade\r\n\r\n")
        await raw.wait_closed()
        await raw.abort()
        texter = await connect()
        await texter.sock.send_text("hello " + topic)
        await texter.wait_closed()

        # A drop and a resume; the rotated token is a secret too.
        await b.abort()
        body = b"body-" + os.urandom(8).hex().encode()
        report.secrets.append(body.decode())
        await a.call(lambda i: m.Send(id=i, room=code, body=body), m.Sent)
        b2 = await connect()
        b_token = seats[id(b)].token
        joined_b = await b2.call(lambda i: m.Resume(id=i, token=b_token, after=0), m.Joined)
        report.seat(joined_b.seat)
        got = await b2.event(m.Deliver, where=lambda e: e.body == body)
        assert got.body == body
        await c.call(lambda i: m.Leave(id=i, room=code), m.Left)

        # A direct room, then a seat released after the grace window.
        direct = await d.call(lambda i: m.CreateRoom(id=i, kind="direct"), m.Joined)
        report.seat(direct.seat)
        joined_direct = await a.call(lambda i: m.Join(id=i, room=direct.seat.room), m.Joined)
        report.seat(joined_direct.seat)
        await d.abort()
        await a.event(m.Presence, where=lambda p: p.event == "left", within=30)

        if info.metrics_url:
            metrics_text.append(await scrape(info.metrics_url))
        info.relay.drain_requested.set()
        for client in (a, b2):
            await client.event(m.Draining)
            await client.close()
        for client in clients:
            await client.abort()
    armed = False


def main() -> None:
    sys.addaudithook(audit)
    root_stream, haven_stream = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handler = logging.StreamHandler(root_stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    logging.captureWarnings(True)
    logs.setup("DEBUG", stream=haven_stream)
    logging.getLogger("haven.selftest").debug("capture works")

    report = Report()
    metrics_text: list[str] = []
    trio.run(scenario, report, metrics_text,
             clock=trio.testing.MockClock(autojump_threshold=0))
    scenario_writes = list(writes)
    # Self-test, outside the watched window: the hook does see a file opened for writing.
    global armed
    armed = True
    with tempfile.TemporaryFile():
        pass
    armed = False
    hook_works = len(writes) > len(scenario_writes)
    print(json.dumps({
        "logs": root_stream.getvalue() + haven_stream.getvalue(),
        "errors": report.errors,
        "secrets": report.secrets,
        "ports": report.ports,
        "client_host": CLIENT_HOST,
        "writes": scenario_writes,
        "hook_works": hook_works,
        "metrics": metrics_text[0] if metrics_text else "",
    }))


if __name__ == "__main__":
    main()
