"""One HTTP/1.1 request per connection, over h11: the relay's two small HTTP listeners.

The metrics listener (relay/metrics.py) and the page server (relay/pages.py) both read
one request, answer it and hang up. This module is that loop, once: a bounded time per
connection, request heads of at most 8 KiB, garbage answered 400 (if h11 still can),
HEAD answered with the headers and no body, and broken connections ignored. Nothing about
the peer is read.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

import h11
import trio

#: One answer: status, body, content type, extra headers.
Answer = tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]
Headers = list[tuple[bytes, bytes]]
MAX_HEAD = 8192  #: largest request head, bytes
BAD_REQUEST: Answer = (400, b"bad request\n", b"text/plain", [])


def respond(conn: h11.Connection, head: bool, answer: Answer, common: Headers) -> bytes:
    """Serialise one response; HEAD gets the same headers (length included), no body."""
    status, body, ctype, extra = answer
    headers = [
        (b"content-type", ctype),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *common,
        *extra,
    ]
    out = conn.send(h11.Response(status_code=status, headers=headers)) or b""
    if not head:
        out += conn.send(h11.Data(data=body)) or b""
    out += conn.send(h11.EndOfMessage()) or b""
    return out


async def answer_one(
    stream: trio.abc.Stream,
    route: Callable[[h11.Request], Awaitable[Answer]],
    common: Headers,
    seconds: float,
) -> None:
    """Read one request from ``stream``, answer it with ``route``, close the stream; the
    whole exchange may take at most ``seconds``."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    try:
        with trio.move_on_after(seconds):
            while True:
                try:
                    event = conn.next_event()
                except h11.RemoteProtocolError:
                    # Garbage instead of HTTP: answer 400 if h11 still can, then hang up.
                    if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                        with contextlib.suppress(h11.LocalProtocolError):
                            await stream.send_all(respond(conn, False, BAD_REQUEST, common))
                    return
                if event is h11.NEED_DATA:
                    data = bytes(await stream.receive_some(MAX_HEAD))
                    conn.receive_data(data)
                    if not data:
                        return
                    continue
                if not isinstance(event, h11.Request):
                    return
                answer = await route(event)
                await stream.send_all(respond(conn, event.method == b"HEAD", answer, common))
                return
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return
    finally:
        await trio.aclose_forcefully(stream)
