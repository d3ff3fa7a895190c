"""The WebSocket under a link, for whichever async runtime the application runs.

The SDK's logic is written once on anyio, so it runs under Trio and under asyncio; only
the WebSocket itself is runtime-specific, and each runtime gets a well-kept library:
trio-websocket under Trio, ``websockets`` under asyncio. Both are wrapped in the same
small ``Channel`` interface, and their failures are mapped to the SDK's typed errors in
one place here:

* ``TLSFailed``: the TLS handshake failed (an untrusted or mismatched certificate),
  raised at once rather than surfacing as a timeout;
* ``UpgradeRefused``: the server answered the WebSocket upgrade with an HTTP status (a
  proxy's 502 during a restart, a 404 on a wrong path), carrying that status;
* ``ConnectFailed``: anything else that kept the socket from opening.

A channel that closes raises ``ChannelClosed(code, reason)`` from ``send``/``receive``.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

import anyio
import sniffio

from haven.protocol import SUBPROTOCOL
from haven.protocol.noise import MAX_MESSAGE

from .errors import ConnectFailed, TLSFailed, UpgradeRefused

#: Messages the WebSocket library may buffer ahead of the SDK's reader (backpressure
#: beyond this reaches the relay through TCP).
MESSAGE_QUEUE = 16
#: Seconds allowed for a closing handshake before the socket is simply dropped.
CLOSE_TIMEOUT = 2.0


class ChannelClosed(Exception):
    """The WebSocket closed; ``code`` is the close code received (``None`` if none)."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"closed ({code}) {reason}".strip())
        self.code = code
        self.reason = reason


class Channel(Protocol):
    """One open WebSocket carrying binary messages."""

    @property
    def subprotocol(self) -> str | None: ...

    async def send(self, data: bytes) -> None: ...

    async def receive(self) -> bytes | str: ...

    async def aclose(self, code: int = 1000) -> None: ...


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind ``exc`` (itself or anywhere in its cause chain), if any."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, ssl.SSLError):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def _connect_failure(exc: BaseException) -> ConnectFailed:
    """``TLSFailed`` when a TLS error is behind ``exc`` (or one of its group), else
    ``ConnectFailed`` naming the error type."""
    leaves = list(exc.exceptions) if isinstance(exc, BaseExceptionGroup) else [exc]
    for leaf in leaves:
        tls = _tls_failure(leaf)
        if tls is not None:
            detail = getattr(tls, "verify_message", None) or getattr(tls, "reason", None)
            return TLSFailed(f"the TLS handshake failed: {detail or tls}")
    failure = ConnectFailed(f"could not open the WebSocket: {type(leaves[0]).__name__}")
    failure.__cause__ = leaves[0]
    return failure


class _LibraryChannel:
    """A library's WebSocket object behind ``Channel``: subclasses name its send and
    receive calls, its "closed" exception and where that exception keeps the close."""

    _closed_type: type[BaseException] = Exception

    def __init__(self, ws: Any) -> None:
        self._ws = ws

    @property
    def subprotocol(self) -> str | None:
        sub = self._ws.subprotocol
        return str(sub) if sub is not None else None

    async def _send(self, data: bytes) -> None:
        raise NotImplementedError

    async def _receive(self) -> bytes | str:
        raise NotImplementedError

    def _close_of(self, exc: Any) -> tuple[int, str] | None:
        raise NotImplementedError

    def _closed(self, exc: BaseException) -> ChannelClosed:
        close = self._close_of(exc)
        return ChannelClosed(None) if close is None else ChannelClosed(close[0], close[1] or "")

    async def send(self, data: bytes) -> None:
        try:
            await self._send(data)
        except self._closed_type as exc:
            raise self._closed(exc) from None

    async def receive(self) -> bytes | str:
        try:
            return await self._receive()
        except self._closed_type as exc:
            raise self._closed(exc) from None


# ----------------------------------------------------------------------- Trio


class _TrioChannel(_LibraryChannel):
    """trio-websocket, kept open by a task that owns its nursery."""

    def __init__(self, ws: Any, done: anyio.Event) -> None:
        from trio_websocket import ConnectionClosed

        super().__init__(ws)
        self._closed_type = ConnectionClosed
        self._done = done

    async def _send(self, data: bytes) -> None:
        await self._ws.send_message(data)

    async def _receive(self) -> bytes | str:
        message: bytes | str = await self._ws.get_message()
        return message

    def _close_of(self, exc: Any) -> tuple[int, str] | None:
        reason = exc.reason
        return None if reason is None else (reason.code, reason.reason)

    async def aclose(self, code: int = 1000) -> None:
        try:
            with anyio.move_on_after(CLOSE_TIMEOUT):
                await self._ws.aclose(code)
        finally:
            # trio-websocket leaves the TCP stream open when the relay started the close
            # or its handshake timed out; close it here, always.
            stream = getattr(self._ws, "_stream", None)
            if stream is not None:
                await anyio.aclose_forcefully(stream)
            self._done.set()


async def _open_trio(
    tg: anyio.abc.TaskGroup, url: str, ssl_context: ssl.SSLContext | None
) -> Channel:
    import trio
    import trio_websocket

    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ConnectFailed(f"not a ws:// or wss:// URL: {url!r}")
    host = parts.hostname
    port = parts.port or (443 if secure else 80)
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    async def hold(*, task_status: anyio.abc.TaskStatus[Channel]) -> None:
        stream: trio.abc.Stream | None = None
        try:
            stream = await trio.open_tcp_stream(host, port)
            if secure:
                assert ssl_context is not None
                stream = trio.SSLStream(
                    stream, ssl_context, server_hostname=host, https_compatible=True
                )
                # Handshake now, so a certificate failure is an error here rather than
                # a WebSocket upgrade that never completes.
                await stream.do_handshake()
            async with trio.open_nursery() as nursery:
                ws = await trio_websocket.wrap_client_stream(
                    nursery,
                    stream,
                    host if parts.port is None else f"{host}:{port}",
                    resource,
                    subprotocols=[SUBPROTOCOL],
                    max_message_size=MAX_MESSAGE,
                    message_queue_size=MESSAGE_QUEUE,
                )
                done = anyio.Event()
                task_status.started(_TrioChannel(ws, done))
                await done.wait()
                nursery.cancel_scope.cancel()  # trio-websocket's reader, if still there
        except* trio_websocket.ConnectionRejected as group:
            rejected = group.exceptions[0]
            assert isinstance(rejected, trio_websocket.ConnectionRejected)
            raise UpgradeRefused(rejected.status_code) from None
        except* Exception as group:
            raise _connect_failure(group) from None
        finally:
            # Whatever ended this task (a failure, the channel closed, a cancellation
            # while connecting), the socket does not outlive it.
            if stream is not None:
                with trio.CancelScope(shield=True):
                    await trio.aclose_forcefully(stream)

    channel: Channel = await tg.start(hold)
    return channel


# --------------------------------------------------------------------- asyncio


class _AsyncioChannel(_LibraryChannel):
    """The ``websockets`` library's asyncio client."""

    def __init__(self, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        super().__init__(ws)
        self._closed_type = ConnectionClosed

    async def _send(self, data: bytes) -> None:
        await self._ws.send(data)

    async def _receive(self) -> bytes | str:
        message: bytes | str = await self._ws.recv()
        return message

    def _close_of(self, exc: Any) -> tuple[int, str] | None:
        rcvd = exc.rcvd
        return None if rcvd is None else (rcvd.code, rcvd.reason)

    async def aclose(self, code: int = 1000) -> None:
        with anyio.move_on_after(CLOSE_TIMEOUT):
            await self._ws.close(code)
        self._ws.transport.abort()


async def _open_asyncio(
    tg: anyio.abc.TaskGroup, url: str, ssl_context: ssl.SSLContext | None
) -> Channel:
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    kwargs: dict[str, Any] = {}
    if ssl_context is not None and url.startswith("wss:"):
        kwargs["ssl"] = ssl_context
    try:
        ws = await connect(
            url,
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
            max_size=MAX_MESSAGE,
            max_queue=MESSAGE_QUEUE,
            compression=None,  # compressing before encryption would leak lengths
            user_agent_header=None,  # say nothing about the client
            proxy=None,
            open_timeout=None,  # the caller's deadline applies
            ping_interval=None,  # the SDK's keepalive is a Haven ping
            close_timeout=CLOSE_TIMEOUT,
            **kwargs,
        )
    except InvalidStatus as exc:
        raise UpgradeRefused(exc.response.status_code) from None
    except Exception as exc:
        raise _connect_failure(exc) from None
    return _AsyncioChannel(ws)


Opener = Callable[[anyio.abc.TaskGroup, str, "ssl.SSLContext | None"], Awaitable[Channel]]
_OPENERS: dict[str, Opener] = {"trio": _open_trio, "asyncio": _open_asyncio}


async def open_channel(
    tg: anyio.abc.TaskGroup, url: str, ssl_context: ssl.SSLContext | None = None
) -> Channel:
    """Open a WebSocket to ``url`` offering Haven's subprotocol, on the current runtime.

    ``tg`` hosts whatever background task the library needs. Raises ``TLSFailed``,
    ``UpgradeRefused`` or ``ConnectFailed``; the caller bounds it with a deadline.
    """
    runtime = sniffio.current_async_library()
    opener = _OPENERS.get(runtime)
    if opener is None:
        raise RuntimeError(f"the Haven SDK runs under trio or asyncio, not {runtime}")
    if url.startswith("wss:") and ssl_context is None:
        ssl_context = ssl.create_default_context()
    return await opener(tg, url, ssl_context)


__all__ = [
    "CLOSE_TIMEOUT",
    "MESSAGE_QUEUE",
    "Channel",
    "ChannelClosed",
    "open_channel",
]
