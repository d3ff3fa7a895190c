"""Privacy-safe logging: plain or JSON lines, and a filter that scrubs what slips in.

The relay never formats a client address, code, alias, token or body into a log
record in the first place; the filter is a second line of defence that redacts
anything shaped like an IP address (with or without port), a room code, or a long
base64/hex run, including inside exception tracebacks.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

_PATTERNS = [
    re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"),  # IPv4[:port]
    re.compile(r"\[?\b(?:[0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F]{0,4}\b\]?(?::\d+)?"),  # IPv6
    re.compile(r"\b[0-9a-hjkmnp-tv-z]{4}(?:-[0-9a-hjkmnp-tv-z]{4}){6}\b", re.I),  # room code
    re.compile(r"\b[A-Za-z0-9_\-+/]{32,}={0,2}"),  # keys, tokens, bodies
]
REDACTED = "[redacted]"


def scrub(text: str) -> str:
    """Redact anything that looks like an address, a code or a secret."""
    for pattern in _PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


class PrivacyFilter(logging.Filter):
    """Render each record's message (and traceback) once, scrubbed, and freeze it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            out["traceback"] = record.exc_text
        return json.dumps(out)


def setup(level: str = "INFO", fmt: str = "plain", stream: object = None) -> logging.Handler:
    """Install one privacy-filtered handler on the ``haven`` logger (stderr by default)."""
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.addFilter(PrivacyFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("haven")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
    for name in ("trio-websocket", "wsproto"):
        logging.getLogger(name).addFilter(PrivacyFilter())
    return handler
