"""Privacy-safe logging: plain or JSON lines, and a filter that scrubs what slips in.

The relay never formats a client address, code, alias, token or body into a log
record in the first place (it never even reads client addresses). The filter here is a
second line of defence: it renders each record once, redacts anything shaped like an
IP address (with or without port), a room code, a spoken code, an alias, a bytes
literal or a long token-like run, including inside exception tracebacks and chained
causes, and freezes the result so no later handler can re-render the raw arguments.

Records of every logger pass through it: ``setup`` puts the one handler on the
``haven`` logger and on the root logger (for libraries), and routes ``warnings`` into
logging so they are scrubbed too.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import IO

_DASH = r"[\-\u2010-\u2014\u2212]"
_PATTERNS = [
    # bytes literals (a repr of a token, nonce or body), any quoting
    re.compile(r"""\bb(['"])(?:\\.|(?!\1).)+\1"""),
    re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"),  # IPv4[:port]
    re.compile(r"(?<![\w:])\[?(?:[0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F]{0,4}\]?(?::\d+)?"),  # IPv6
    # room / link codes, grouped by any separator or not at all
    re.compile(r"\b[0-9a-z]{4}(?:[\s\-\u2010-\u2014\u2212]?[0-9a-z]{4}){6}\b", re.I),
    re.compile(rf"\b\d{{1,2}}(?:\s*{_DASH}\s*[A-Za-z]+){{3}}\b"),  # spoken: 27-word-word-word
    re.compile(r"\b[a-z]+-[a-z]+-\d{2}\b", re.I),  # aliases: quiet-heron-27
    # keys, tokens, bodies: long runs with a digit or capital (not snake_case names)
    re.compile(r"\b(?=[a-z_\-+/]*[0-9A-Z])[A-Za-z0-9_\-+/]{32,}={0,2}"),
    re.compile(r"\b(?=[A-Za-z_\-+]*\d)[A-Za-z0-9_\-+]{20,}={0,2}"),  # shorter, with digits
]
REDACTED = "[redacted]"
_MARK = "_haven_privacy_handler"


def scrub(text: str, keep: tuple[str, ...] = ()) -> str:
    """Redact anything that looks like an address, a code, an alias or a secret.

    ``keep`` are strings the relay itself put there from its own configuration (its
    listen addresses): they are shown as they are, never a client's.
    """
    for k, own in enumerate(keep):
        text = text.replace(own, f"\x00{k}\x00")
    for pattern in _PATTERNS:
        text = pattern.sub(REDACTED, text)
    for k, own in enumerate(keep):
        text = text.replace(f"\x00{k}\x00", own)
    return text


def iso_time(created: float) -> str:
    """UTC time with milliseconds and the zone: ``2026-12-05T03:35:01.123Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + (
        f".{int(created % 1 * 1000):03d}Z"
    )


class PrivacyFilter(logging.Filter):
    """Render each record's message (and traceback) once, scrubbed, and freeze it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_haven_scrubbed", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not leak its arguments either
            message = f"unformattable log record from {record.name}"
        record.msg = scrub(message, tuple(getattr(record, "haven_own", ())))
        record.args = None
        if record.exc_info:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        record._haven_scrubbed = True
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            out["traceback"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out)


class PlainFormatter(logging.Formatter):
    """``time level logger: message`` with an ISO 8601 UTC time in milliseconds."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return iso_time(record.created)


def setup(
    level: str = "INFO", fmt: str = "plain", stream: IO[str] | None = None
) -> logging.Handler:
    """Install one privacy-filtered handler (stderr by default) for Haven and libraries.

    The ``haven`` loggers log at ``level``; other libraries' records reach the same
    handler through the root logger at WARNING and above. Calling it again replaces
    the handler it installed before (and leaves other handlers alone).
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(PrivacyFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(PlainFormatter())
    setattr(handler, _MARK, True)
    for logger in (logging.getLogger("haven"), logging.getLogger()):
        logger.handlers[:] = [h for h in logger.handlers if not getattr(h, _MARK, False)]
        logger.addHandler(handler)
    haven = logging.getLogger("haven")
    haven.setLevel(level.upper())
    haven.propagate = False
    root = logging.getLogger()
    root.setLevel(logging.WARNING)
    logging.captureWarnings(True)
    # A crash's traceback goes through the same filter, not straight to stderr.
    sys.excepthook = _log_uncaught
    return handler


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: object) -> None:
    logging.getLogger("haven").critical("the relay crashed", exc_info=(kind, exc, tb))  # type: ignore[arg-type]
