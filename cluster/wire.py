"""The NATS core client protocol, sans-IO: bytes in, typed events out; commands as bytes.

Why our own: there is no Trio NATS client, and driving nats-py (asyncio) through a
bridge costs several times the CPU per message (docs/benchmarks.md). The core protocol
is small and line-based (https://docs.nats.io/reference/reference-protocols/nats-protocol):
the server sends ``INFO``, ``MSG``, ``HMSG``, ``PING``, ``PONG``, ``+OK`` and ``-ERR``;
the client sends ``CONNECT``, ``PUB``, ``HPUB``, ``SUB``, ``UNSUB``, ``PING`` and ``PONG``.
JetStream is not used: nothing Haven puts on the bus is ever persisted.

Everything is bounded: a control line longer than ``max_line`` or a payload larger
than the server's advertised ``max_payload`` (plus its headers) is a ``WireError``, so a
misbehaving server cannot make a relay buffer without limit. Nothing here does I/O or
reads a clock; the Trio shell is ``cluster.nats``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

CRLF = b"\r\n"
#: The server's default ``max_control_line``; our own lines are far shorter.
MAX_LINE = 4096
#: The server's default ``max_payload`` until its INFO says otherwise.
DEFAULT_MAX_PAYLOAD = 1024 * 1024
HEADER_PREFIX = b"NATS/1.0"

#: A subject: dot-separated tokens of printable ASCII without spaces (wildcards allowed
#: where subscribing). Haven's own subjects are hex HMACs under a short prefix.
_SUBJECT = re.compile(rb"[!-~]+")
_TOKEN = re.compile(rb"[A-Za-z0-9_\-]+")


class WireError(Exception):
    """The server sent something this parser refuses (the connection must be dropped)."""


@dataclass(frozen=True, slots=True)
class Info:
    """The server's ``INFO``: limits, whether TLS is required, its cluster's addresses."""

    fields: dict[str, Any]

    @property
    def max_payload(self) -> int:
        value = self.fields.get("max_payload", DEFAULT_MAX_PAYLOAD)
        return value if isinstance(value, int) and value > 0 else DEFAULT_MAX_PAYLOAD

    @property
    def tls_required(self) -> bool:
        return bool(self.fields.get("tls_required", False))

    @property
    def headers(self) -> bool:
        return bool(self.fields.get("headers", False))


@dataclass(frozen=True, slots=True)
class Msg:
    """A delivered message (``MSG`` or ``HMSG``); ``headers`` is the raw header block."""

    subject: bytes
    sid: int
    reply: bytes | None
    payload: bytes
    headers: bytes | None = None

    @property
    def status(self) -> int | None:
        """The status code in an ``HMSG`` header line (503: no responders), if any."""
        if not self.headers:
            return None
        first = self.headers.split(CRLF, 1)[0]
        parts = first.split()
        if len(parts) >= 2 and parts[1].isdigit():
            return int(parts[1])
        return None


@dataclass(frozen=True, slots=True)
class Ping:
    """The server checks we are alive: answer ``PONG``."""


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to one of our ``PING``s."""


@dataclass(frozen=True, slots=True)
class Ok:
    """``+OK`` (only sent in verbose mode, which we never ask for)."""


@dataclass(frozen=True, slots=True)
class Err:
    """``-ERR``: the server's reason text; most end the connection."""

    message: str

    @property
    def fatal(self) -> bool:
        """Whether the server closes the connection after this error.

        Per the protocol only ``Invalid Subject`` and ``Permissions Violation`` leave the
        connection up; every other ``-ERR`` is followed by the server closing it.
        """
        text = self.message.lower()
        return not (text.startswith("invalid subject") or "permissions violation" in text)


Event = Info | Msg | Ping | Pong | Ok | Err


@dataclass
class Parser:
    """Incremental parser of what a NATS server sends; ``feed`` returns whole events."""

    max_line: int = MAX_LINE
    max_payload: int = DEFAULT_MAX_PAYLOAD
    _buf: bytearray = field(default_factory=bytearray)
    #: The header of a MSG/HMSG whose payload has not all arrived yet.
    _pending: tuple[bytes, int, bytes | None, int, int] | None = None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray) -> list[Event]:
        buf = self._buf
        buf += data
        events: list[Event] = []
        pos = 0
        n = len(buf)
        while pos < n:
            pending = self._pending
            if pending is not None:
                subject, sid, reply, hlen, total = pending
                end = pos + total
                if n < end + 2:
                    break
                if buf[end : end + 2] != CRLF:
                    raise WireError("message payload not followed by CRLF")
                body = bytes(buf[pos:end])
                if hlen:
                    events.append(Msg(subject, sid, reply, body[hlen:], body[:hlen]))
                else:
                    events.append(Msg(subject, sid, reply, body))
                pos = end + 2
                self._pending = None
                continue
            eol = buf.find(CRLF, pos, pos + self.max_line + 2)
            if eol < 0:
                if n - pos > self.max_line:
                    raise WireError("control line too long")
                break
            line = bytes(buf[pos:eol])
            pos = eol + 2
            event = self._line(line)
            if event is not None:
                events.append(event)
        del buf[:pos]
        return events

    def _line(self, line: bytes) -> Event | None:
        op, _, rest = line.partition(b" ")
        op = op.upper()
        if op == b"MSG":
            args = rest.split()
            if len(args) == 3:
                subject, sid, size = args
                reply = None
            elif len(args) == 4:
                subject, sid, reply, size = args
            else:
                raise WireError("malformed MSG")
            total = self._size(size)
            self._pending = (subject, self._sid(sid), reply, 0, total)
            return None
        if op == b"HMSG":
            args = rest.split()
            if len(args) == 4:
                subject, sid, hsize, size = args
                reply = None
            elif len(args) == 5:
                subject, sid, reply, hsize, size = args
            else:
                raise WireError("malformed HMSG")
            hlen, total = self._size(hsize), self._size(size)
            if hlen > total or hlen < len(HEADER_PREFIX):
                raise WireError("malformed HMSG sizes")
            self._pending = (subject, self._sid(sid), reply, hlen, total)
            return None
        if op == b"PING":
            return Ping()
        if op == b"PONG":
            return Pong()
        if op == b"+OK":
            return Ok()
        if op == b"-ERR":
            return Err(rest.strip().strip(b"'").decode("utf-8", "replace"))
        if op == b"INFO":
            try:
                fields = json.loads(rest)
            except ValueError:
                raise WireError("INFO is not JSON") from None
            if not isinstance(fields, dict):
                raise WireError("INFO is not an object")
            info = Info(fields)
            self.max_payload = info.max_payload
            return info
        raise WireError(f"unknown operation {op[:16]!r}")

    def _size(self, text: bytes) -> int:
        if not text.isdigit():
            raise WireError("message size is not a number")
        size = int(text)
        # Headers may add to max_payload (the server counts them in); allow a margin
        # the size of one control line for them.
        if size > self.max_payload + self.max_line:
            raise WireError("message larger than max_payload")
        return size

    @staticmethod
    def _sid(text: bytes) -> int:
        if not text.isdigit() or len(text) > 19:
            raise WireError("subscription id is not a number")
        return int(text)


# --------------------------------------------------------------------------- commands


def check_subject(subject: bytes, *, wildcards: bool = False) -> None:
    """Raise ``ValueError`` for a subject the server would refuse (or misparse)."""
    if not subject or not _SUBJECT.fullmatch(subject) or len(subject) > 512:
        raise ValueError(f"invalid subject {subject[:40]!r}")
    for token in subject.split(b"."):
        if not token:
            raise ValueError("empty subject token")
        if token in (b"*", b">"):
            if not wildcards:
                raise ValueError("wildcards are for subscribing only")
        elif b"*" in token or b">" in token:
            raise ValueError("wildcard inside a token")


def connect(options: dict[str, Any]) -> bytes:
    """``CONNECT`` with the given options, followed by a ``PING`` whose ``PONG`` (or
    ``-ERR``) tells the caller whether the server accepted it."""
    return b"CONNECT " + json.dumps(options, separators=(",", ":")).encode() + CRLF + PING


def pub(subject: bytes, payload: bytes, reply: bytes | None = None) -> bytes:
    """``PUB``: ``subject`` (checked by the caller once, not per message) and payload."""
    if reply is None:
        head = b"PUB %s %d\r\n" % (subject, len(payload))
    else:
        head = b"PUB %s %s %d\r\n" % (subject, reply, len(payload))
    return head + payload + CRLF


def hpub(
    subject: bytes, headers: dict[str, str], payload: bytes, reply: bytes | None = None
) -> bytes:
    """``HPUB``: a message with NATS headers (``Name: value`` lines)."""
    lines = [HEADER_PREFIX]
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name.encode()) or "\r" in value or "\n" in value:
            raise ValueError(f"invalid header {name!r}")
        lines.append(f"{name}: {value}".encode())
    block = CRLF.join(lines) + CRLF + CRLF
    total = len(block) + len(payload)
    if reply is None:
        head = b"HPUB %s %d %d\r\n" % (subject, len(block), total)
    else:
        head = b"HPUB %s %s %d %d\r\n" % (subject, reply, len(block), total)
    return head + block + payload + CRLF


def sub(subject: bytes, sid: int, queue: bytes | None = None) -> bytes:
    """``SUB``, in a queue group when ``queue`` is given (each message to one member)."""
    if queue is None:
        return b"SUB %s %d\r\n" % (subject, sid)
    if not _TOKEN.fullmatch(queue):
        raise ValueError("invalid queue group name")
    return b"SUB %s %s %d\r\n" % (subject, queue, sid)


def unsub(sid: int, max_msgs: int | None = None) -> bytes:
    """``UNSUB``, at once or after ``max_msgs`` more messages."""
    if max_msgs is None:
        return b"UNSUB %d\r\n" % sid
    return b"UNSUB %d %d\r\n" % (sid, max_msgs)


PING = b"PING\r\n"
PONG = b"PONG\r\n"

__all__ = [
    "CRLF",
    "DEFAULT_MAX_PAYLOAD",
    "MAX_LINE",
    "PING",
    "PONG",
    "Err",
    "Event",
    "Info",
    "Msg",
    "Ok",
    "Parser",
    "Ping",
    "Pong",
    "WireError",
    "check_subject",
    "connect",
    "hpub",
    "pub",
    "sub",
    "unsub",
]
