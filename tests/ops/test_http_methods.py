"""The metrics listener answers every method and any garbage without harming the relay.

Regression: a single ``HEAD /healthz`` (what uptime checkers send) used to raise h11's
``LocalProtocolError`` out of the metrics task and end the whole relay process.
"""

from __future__ import annotations

import trio

from haven.protocol import messages as m
from tests.conftest import start_relay

from .helpers import TIMEOUT, connect, http_get, port_of


async def _exchange(base_url: str, raw: bytes) -> bytes:
    """Send ``raw`` to the metrics listener and read until it closes."""
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(raw)
        data = b""
        with trio.fail_after(TIMEOUT):
            while chunk := await stream.receive_some(65536):
                data += chunk
    return data


def _head(path: str) -> bytes:
    return f"HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()


async def test_head_post_and_garbage_cost_nothing(nursery: trio.Nursery) -> None:
    info = await start_relay(nursery, metrics_port=0)
    url = info.metrics_url
    assert url is not None
    client = await connect(nursery, port_of(info.url), info.public_key, "127.0.0.1")

    for path in ("/healthz", "/metrics", "/readyz", "/nowhere"):
        reply = await _exchange(url, _head(path))
        head, _, body = reply.partition(b"\r\n\r\n")
        assert body == b"", path  # HEAD: headers only
        assert b"content-length:" in head.lower(), path
        expected = b" 404 " if path == "/nowhere" else b" 200 "
        assert expected in head.split(b"\r\n", 1)[0], (path, head)

    post = await _exchange(url, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    status_line, _, _ = post.partition(b"\r\n")
    assert b" 405 " in status_line
    assert b"allow: get, head" in post.lower()

    garbage = await _exchange(url, b"\x00\x01 not http at all\r\n\r\n")
    assert garbage == b"" or b" 400 " in garbage.split(b"\r\n", 1)[0]

    # Everything still works: health, metrics, and the WebSocket side.
    assert (await http_get(url, "/healthz")).status == 200
    assert (await http_get(url, "/metrics")).status == 200
    rid = client.next_id()
    await client.send(m.Ping(id=rid))
    assert isinstance(await client.reply(rid), m.Pong)
