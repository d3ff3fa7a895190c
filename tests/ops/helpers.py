"""Helpers for the operations tests: scraping the metrics listener and a raw Haven
client that can bind its own source address and forge proxy headers.

Why a client of its own: these tests need what neither the SDK nor a well-behaved
front end does: a client socket bound to 127.0.0.2..127.0.0.9, forged
``X-Forwarded-For``/``Forwarded``/``X-Real-IP`` headers on the upgrade, a wrong relay
key, garbage envelopes. trio-websocket carries the WebSocket (``wrap_client_stream``
over a socket the test bound itself); Noise and framing come from ``protocol/``.
"""

from __future__ import annotations

import socket as stdlib_socket
from dataclasses import dataclass, field

import trio
from prometheus_client.parser import text_string_to_metric_families
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_client_stream

from haven.protocol import SUBPROTOCOL, codec
from haven.protocol import messages as m
from haven.protocol.session import ClientSession, Welcomed

#: Forged proxy headers: a relay that read any of them would leak these addresses.
FORGED_ADDRESSES = ("203.0.113.7", "198.51.100.23", "192.0.2.60", "198.51.100.99")
FORGED_HEADERS = [
    (b"X-Forwarded-For", b"203.0.113.7, 198.51.100.23"),
    (b"Forwarded", b"for=192.0.2.60;proto=https;by=203.0.113.43"),
    (b"X-Real-IP", b"198.51.100.99"),
]
TIMEOUT = 30.0
#: Every socket a helper opened, so a fixture can close them at teardown.
OPENED: list[stdlib_socket.socket] = []


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].strip("/"))


# ------------------------------------------------------------------ HTTP scraping


@dataclass
class HttpReply:
    status: int
    body: bytes


async def http_get(base_url: str, path: str) -> HttpReply:
    """A plain HTTP/1.1 GET against the metrics listener (``http://host:port``)."""
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        await stream.send_all(request.encode("ascii"))
        data = b""
        with trio.fail_after(TIMEOUT):
            while chunk := await stream.receive_some(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return HttpReply(status, body)


Series = frozenset[tuple[str, frozenset[tuple[str, str]]]]


def parse_series(text: str) -> tuple[Series, dict[str, float]]:
    """The exposition's set of (sample name, labels) and a name{labels} -> value map."""
    series: set[tuple[str, frozenset[tuple[str, str]]]] = set()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = frozenset(sample.labels.items())
            series.add((sample.name, labels))
            key = sample.name + "{" + ",".join(f"{k}={v}" for k, v in sorted(labels)) + "}"
            values[key] = sample.value
    return frozenset(series), values


async def scrape(metrics_url: str) -> tuple[str, Series, dict[str, float]]:
    reply = await http_get(metrics_url, "/metrics")
    assert reply.status == 200
    text = reply.body.decode("utf-8")
    series, values = parse_series(text)
    return text, series, values


# ------------------------------------------------------------------ raw client


@dataclass
class RawClient:
    """A handshaken Haven session over trio-websocket on a socket the test bound."""

    ws: WebSocketConnection
    session: ClientSession
    welcome: m.Welcome
    local: tuple[str, int]
    last_id: int = 0
    events: list[m.Message] = field(default_factory=list)

    def next_id(self) -> int:
        self.last_id += 1
        return self.last_id

    async def send(self, msg: m.Message) -> None:
        await self.send_envelope(codec.encode(msg))

    async def send_envelope(self, envelope: bytes) -> None:
        await self.ws.send_message(self.session.seal_envelope(envelope))

    async def receive(self) -> m.Message:
        with trio.fail_after(TIMEOUT):
            data = await self.ws.get_message()
        assert isinstance(data, bytes)
        return codec.decode_server(self.session.open_envelope(data))

    async def reply(self, rid: int) -> m.Message:
        """The reply to ``rid`` (events met on the way are kept in ``events``)."""
        while True:
            msg = await self.receive()
            if isinstance(msg, m.Reply) and msg.id == rid:
                return msg
            self.events.append(msg)

    async def wait_closed(self) -> int | None:
        """Read until the relay closes the WebSocket; its close code."""
        with trio.fail_after(TIMEOUT):
            try:
                while True:
                    await self.ws.get_message()
            except ConnectionClosed as exc:
                return exc.reason.code if exc.reason is not None else None


async def open_ws(
    nursery: trio.Nursery,
    port: int,
    bind_host: str,
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    subprotocols: tuple[str, ...] = (SUBPROTOCOL,),
) -> tuple[WebSocketConnection, tuple[str, int]]:
    """TCP from ``bind_host`` to the relay, then the WebSocket upgrade (with ``headers``)."""
    std = stdlib_socket.socket(stdlib_socket.AF_INET, stdlib_socket.SOCK_STREAM)
    OPENED.append(std)
    sock = trio.socket.from_stdlib_socket(std)
    try:
        await sock.bind((bind_host, 0))
        await sock.connect(("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    local = sock.getsockname()
    stream = trio.SocketStream(sock)
    ws = await wrap_client_stream(
        nursery, stream, "127.0.0.1", "/", subprotocols=list(subprotocols),
        extra_headers=list(headers if headers is not None else FORGED_HEADERS),
    )  # fmt: skip
    return ws, (local[0], local[1])


async def connect(
    nursery: trio.Nursery,
    port: int,
    relay_key: bytes,
    bind_host: str,
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> RawClient:
    """A handshaken raw client from ``bind_host`` carrying forged proxy headers."""
    ws, local = await open_ws(nursery, port, bind_host, headers=headers)
    session = ClientSession(relay_key)
    await ws.send_message(session.start())
    with trio.fail_after(TIMEOUT):
        event = session.receive(await ws.get_message())
    assert isinstance(event, Welcomed), event
    return RawClient(ws, session, event.welcome, local)
