"""The relay's side of RFC 6455 WebSocket, sans-IO: the upgrade and the framing.

Why not wsproto (with h11) any more: on the relay it was a fifth of the CPU of every
message and of every connection set up (docs/benchmarks.md, issue 14). The relay needs
only the server side, no extensions, and binary messages; that is what this module
does, in one pass over the bytes, with the masking done by the C routine that the
``websockets`` package (a dependency already) ships. Clients, the load tester and the
tests keep using wsproto, trio-websocket, ``websockets`` and browsers, so every test is
also an interoperability test of this code; ``tests/protocol/test_websocket.py`` checks
it against wsproto's client byte for byte.

Bounds: a request head is at most ``MAX_HEAD`` bytes; a message (all its fragments) at
most ``max_message`` bytes, refused from the frame header, before its payload is read;
at most ``max_fragments`` pieces per message; control frames at most 125 bytes. Every
violation raises a typed error saying which close code (``FramingError``) or HTTP status
(``UpgradeError``) to answer with.

Client addresses are not here to read: only the request line and the headers the
upgrade needs are looked at.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

_Masker = Callable[[bytes, bytes], bytes]
_apply_mask: _Masker | None
try:  # the C routine from the ``websockets`` package, when its wheel has it
    from websockets.speedups import apply_mask as _apply_mask
except ImportError:  # pragma: no cover - the pure-Python fallback is tested directly
    _apply_mask = None

#: Largest HTTP request head (request line and headers), bytes.
MAX_HEAD = 8192
#: RFC 6455 section 1.3.
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

CONTINUATION = 0x0
TEXT = 0x1
BINARY = 0x2
CLOSE = 0x8
PING = 0x9
PONG = 0xA
_KNOWN = frozenset((CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG))

#: Close codes (RFC 6455 section 7.4.1).
CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_NO_STATUS = 1005
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009

#: Codes a peer may put in a close frame: the registered ones it may send, and the
#: ranges for libraries (3000-3999) and applications (4000-4999).
_SENDABLE_CODES = frozenset(
    (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014)
)


class UpgradeError(Exception):
    """The upgrade request is not one to accept: answer ``status`` and hang up."""

    def __init__(self, status: int, reason: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers


class FramingError(Exception):
    """The peer broke the framing rules: close with ``code`` (1002, 1007 or 1009).

    ``events`` holds what the same ``FrameReader.receive`` call read before the bad
    frame, so the caller can handle those first, in order.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.events: list[tuple[int, bytes]] = []


@dataclass(frozen=True, slots=True)
class Upgrade:
    """A valid upgrade request: what the relay needs from it, and nothing more."""

    key: bytes
    subprotocols: tuple[str, ...]
    #: Bytes after the head (a client may send its first frame without waiting).
    rest: bytes


# ------------------------------------------------------------------ the upgrade


def head_complete(data: bytes) -> bool:
    """True once ``data`` holds a whole request head; raises past ``MAX_HEAD``."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if len(data) > MAX_HEAD:
            raise UpgradeError(431, "request head too large")
        return False
    if end + 4 > MAX_HEAD:
        raise UpgradeError(431, "request head too large")
    return True


def _tokens(value: str) -> list[str]:
    return [t.strip().lower() for t in value.split(",") if t.strip()]


def parse_upgrade(data: bytes) -> Upgrade:
    """Parse and check a complete request head (``head_complete(data)`` is true).

    Raises ``UpgradeError`` with the status to answer: 400 for a malformed request,
    405 for a method other than GET, 426 for a request that is not a version 13
    WebSocket upgrade.
    """
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise UpgradeError(400, "incomplete request head")
    try:
        text = data[:end].decode("ascii")
    except UnicodeDecodeError:
        raise UpgradeError(400, "request head is not ASCII") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0] or not parts[1] or not parts[2].startswith("HTTP/"):
        raise UpgradeError(400, "malformed request line")
    method, _target, version = parts
    if version != "HTTP/1.1":
        raise UpgradeError(400, "HTTP/1.1 required")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or " " in name or "\t" in name:
            raise UpgradeError(400, "malformed header line")
        headers.setdefault(name.lower(), []).append(value.strip(" \t"))
    if method != "GET":
        raise UpgradeError(405, "only GET upgrades to a WebSocket", (("Allow", "GET"),))
    if len(headers.get("host", ())) != 1:
        raise UpgradeError(400, "exactly one Host header required")
    if "transfer-encoding" in headers or any(v != "0" for v in headers.get("content-length", ())):
        raise UpgradeError(400, "an upgrade request has no body")
    upgrade_to = [t for v in headers.get("upgrade", ()) for t in _tokens(v)]
    connection = [t for v in headers.get("connection", ()) for t in _tokens(v)]
    needs = (("Upgrade", "websocket"), ("Connection", "Upgrade"))
    if "websocket" not in upgrade_to or "upgrade" not in connection:
        raise UpgradeError(426, "a WebSocket upgrade is required", needs)
    if headers.get("sec-websocket-version") != ["13"]:
        version_13 = (("Sec-WebSocket-Version", "13"),)
        raise UpgradeError(426, "WebSocket version 13 is required", version_13)
    keys = headers.get("sec-websocket-key", [])
    if len(keys) != 1:
        raise UpgradeError(400, "exactly one Sec-WebSocket-Key header required")
    key = keys[0].encode("ascii")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError
    except ValueError:
        raise UpgradeError(400, "Sec-WebSocket-Key is not 16 bytes in base64") from None
    offered = tuple(
        token.strip()
        for value in headers.get("sec-websocket-protocol", ())
        for token in value.split(",")
        if token.strip()
    )
    return Upgrade(key=key, subprotocols=offered, rest=data[end + 4 :])


def accept_token(key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key`` (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def accept_response(key: bytes, subprotocol: str | None) -> bytes:
    """The 101 response that completes the upgrade (no extensions are negotiated)."""
    lines = [
        b"HTTP/1.1 101 Switching Protocols",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Accept: " + accept_token(key),
    ]
    if subprotocol is not None:
        lines.append(b"Sec-WebSocket-Protocol: " + subprotocol.encode("ascii"))
    return b"\r\n".join(lines) + b"\r\n\r\n"


_REASONS = {400: "Bad Request", 405: "Method Not Allowed", 426: "Upgrade Required",
            431: "Request Header Fields Too Large"}  # fmt: skip


def reject_response(error: UpgradeError) -> bytes:
    """A complete HTTP response refusing the upgrade; the connection then closes."""
    body = (error.reason + "\n").encode("ascii")
    lines = [
        f"HTTP/1.1 {error.status} {_REASONS.get(error.status, 'Error')}",
        "Content-Type: text/plain",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in error.headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


# ------------------------------------------------------------------ framing


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``mask`` repeated (RFC 6455 section 5.3)."""
    if _apply_mask is not None:
        return _apply_mask(payload, mask)
    return unmask_python(payload, mask)


def unmask_python(payload: bytes, mask: bytes) -> bytes:
    """The pure-Python unmasking: one big-integer XOR."""
    n = len(payload)
    if n == 0:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final frame from the server."""
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return bytes((first, 126)) + n.to_bytes(2, "big") + payload
    return bytes((first, 127)) + n.to_bytes(8, "big") + payload


def close_frame(code: int | None, reason: str = "") -> bytes:
    """A close frame: no payload for ``None`` (or 1005), else the code and a short reason."""
    if code is None or code == CLOSE_NO_STATUS:
        return frame(CLOSE, b"")
    # At most 123 bytes of reason (a control frame carries 125), cut on a character.
    text = reason.encode("utf-8")[:123].decode("utf-8", "ignore").encode("utf-8")
    return frame(CLOSE, code.to_bytes(2, "big") + text)


def parse_close(payload: bytes) -> tuple[int, str]:
    """The code and reason of a received close frame (1005 when it has none)."""
    if not payload:
        return CLOSE_NO_STATUS, ""
    if len(payload) == 1:
        raise FramingError(CLOSE_PROTOCOL_ERROR, "close frame of one byte")
    code = int.from_bytes(payload[:2], "big")
    if code not in _SENDABLE_CODES and not 3000 <= code <= 4999:
        raise FramingError(CLOSE_PROTOCOL_ERROR, "invalid close code")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise FramingError(CLOSE_INVALID_DATA, "close reason is not UTF-8") from None
    return code, reason


class FrameReader:
    """Client frames in, whole messages and control frames out.

    ``receive(data)`` returns a list of ``(opcode, payload)``: ``BINARY`` with a whole
    (reassembled, unmasked) message; ``TEXT`` as soon as a text message starts (the
    relay refuses text, so it is never assembled); ``PING``, ``PONG`` and ``CLOSE``
    with their payloads. After a ``FramingError`` or a ``CLOSE`` the reader takes
    nothing more.
    """

    __slots__ = ("_buf", "_done", "_fragments", "_fragments_len", "max_fragments", "max_message")

    def __init__(self, max_message: int, max_fragments: int = 64) -> None:
        self.max_message = max_message
        self.max_fragments = max_fragments
        self._buf = b""
        self._fragments: list[bytes] | None = None  #: a fragmented message in progress
        self._fragments_len = 0
        self._done = False

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame or message (the relay's memory budget)."""
        return len(self._buf) + self._fragments_len

    def receive(self, data: bytes) -> list[tuple[int, bytes]]:
        if self._done:
            return []
        buf = self._buf + data if self._buf else data
        n = len(buf)
        pos = 0
        out: list[tuple[int, bytes]] = []
        try:
            while n - pos >= 2:
                b0 = buf[pos]
                b1 = buf[pos + 1]
                opcode = b0 & 0x0F
                length = b1 & 0x7F
                if b0 & 0x70:
                    raise FramingError(CLOSE_PROTOCOL_ERROR, "reserved bits set")
                if not b1 & 0x80:
                    raise FramingError(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
                if opcode not in _KNOWN:
                    raise FramingError(CLOSE_PROTOCOL_ERROR, "unknown opcode")
                head = 6
                if length >= 126:
                    if opcode >= CLOSE:
                        raise FramingError(CLOSE_PROTOCOL_ERROR, "control frame too long")
                    if length == 126:
                        head = 8
                        if n - pos < 4:  # the length is known before the mask arrives
                            break
                        length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                        if length < 126:
                            raise FramingError(CLOSE_PROTOCOL_ERROR, "length not minimal")
                    else:
                        head = 14
                        if n - pos < 10:
                            break
                        length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                        if length < 65536 or length >> 63:
                            raise FramingError(CLOSE_PROTOCOL_ERROR, "invalid length")
                if opcode >= CLOSE:
                    if not b0 & 0x80:
                        raise FramingError(CLOSE_PROTOCOL_ERROR, "fragmented control frame")
                elif opcode == CONTINUATION:
                    if self._fragments is None:
                        raise FramingError(CLOSE_PROTOCOL_ERROR, "continuation of nothing")
                    if self._fragments_len + length > self.max_message:
                        raise FramingError(CLOSE_TOO_BIG, "message too big")
                    if len(self._fragments) >= self.max_fragments:
                        raise FramingError(CLOSE_TOO_BIG, "too many fragments")
                else:
                    if self._fragments is not None:
                        raise FramingError(CLOSE_PROTOCOL_ERROR, "new message inside another")
                    if opcode == TEXT:
                        out.append((TEXT, b""))
                        self._done = True
                        return out
                    if length > self.max_message:
                        raise FramingError(CLOSE_TOO_BIG, "message too big")
                end = pos + head + length
                if end > n:
                    break
                payload = buf[pos + head : end]
                if length:
                    payload = unmask(payload, buf[pos + head - 4 : pos + head])
                pos = end
                if opcode == BINARY:
                    if b0 & 0x80:
                        out.append((BINARY, payload))
                    else:
                        self._fragments = [payload]
                        self._fragments_len = length
                elif opcode == CONTINUATION:
                    assert self._fragments is not None
                    self._fragments.append(payload)
                    self._fragments_len += length
                    if b0 & 0x80:
                        out.append((BINARY, b"".join(self._fragments)))
                        self._fragments = None
                        self._fragments_len = 0
                else:
                    out.append((opcode, payload))
                    if opcode == CLOSE:
                        self._done = True
                        break
        except FramingError as exc:
            exc.events = out
            self._done = True
            self._buf = b""
            self._fragments = None
            self._fragments_len = 0
            raise
        self._buf = buf[pos:] if pos < n and not self._done else b""
        return out


__all__ = [
    "BINARY", "CLOSE", "CLOSE_INVALID_DATA", "CLOSE_NORMAL", "CLOSE_NO_STATUS",
    "CLOSE_PROTOCOL_ERROR", "CLOSE_TOO_BIG", "CLOSE_UNSUPPORTED_DATA", "MAX_HEAD", "PING",
    "PONG", "TEXT", "FrameReader", "FramingError", "Upgrade", "UpgradeError", "accept_response",
    "accept_token", "close_frame", "frame", "head_complete", "parse_close", "parse_upgrade",
    "reject_response", "unmask", "unmask_python",
]  # fmt: skip
