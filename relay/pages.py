"""The front-end page server: static files of the built pages on their own listener.

Why in the relay at all: a newcomer sees the pages with one command (``haven serve --demo``)
and tests run the real pages against a real relay. Production may serve the same directory
from any static host with the same headers (deploy/nginx/haven-pages.conf).

What it does, and nothing more:
- answers GET and HEAD (HEAD: the headers without the body), 405 to anything else;
- serves only regular files under ``pages_dir`` whose names are plain
  (``[A-Za-z0-9._-]``, no leading dot, no ``..``, no percent-escapes) and whose
  extension is in an allow-list; everything else is 404. Path traversal cannot happen:
  no segment can name a parent, and the resolved path must still lie under the root
  (a symlink pointing out is refused too);
- ``/config.json``: the relay URL, its public key and the Quick Exit address, built from
  the running relay so the pages never hard-code them;
- the same strict headers on every response (CSP, no-store, no referrer, nosniff,
  a minimal Permissions-Policy) and never a cookie.

Bounds: at most ``MAX_CLIENTS`` connections at once (more are closed at once), one
request per connection, ``REQUEST_TIMEOUT`` seconds per connection, request heads of at
most 8 KiB, files of at most ``MAX_FILE_BYTES``. Nothing about the peer is read or logged.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import h11
import trio

from .http1 import Answer, answer_one

log = logging.getLogger("haven.pages")

MAX_CLIENTS = 64  #: connections served at once; more are closed without an answer
REQUEST_TIMEOUT = 5.0  #: seconds one connection may take, request and response
MAX_FILE_BYTES = 4 * 1024 * 1024  #: largest file served (the bundles are far smaller)

#: Extensions served, with their content types (anything else is 404).
CONTENT_TYPES: dict[str, bytes] = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".mjs": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".json": b"application/json",
    ".map": b"application/json",
    ".svg": b"image/svg+xml",
    ".png": b"image/png",
    ".ico": b"image/x-icon",
    ".txt": b"text/plain; charset=utf-8",
    ".webmanifest": b"application/manifest+json",
}

_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")



def _ws_origin(relay_url: str) -> str:
    """The CSP source for the relay: scheme, host and port of its WebSocket URL."""
    parts = urlsplit(relay_url)
    return f"{parts.scheme}://{parts.netloc}"


def security_headers(relay_url: str) -> list[tuple[bytes, bytes]]:
    """Headers sent with every response (also in deploy/nginx/haven-pages.conf).

    The CSP allows scripts, styles and connections only from the page's own origin plus
    the relay's WebSocket origin: no inline code, no third party, no framing, no forms.
    """
    csp = (
        "default-src 'self'; "
        f"connect-src 'self' {_ws_origin(relay_url)}; "
        "script-src 'self'; worker-src 'self'; style-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return [
        (b"content-security-policy", csp.encode("ascii")),
        (b"cache-control", b"no-store"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"permissions-policy",
         b"camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()"),
    ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Site:
    """What the page server serves: a root directory and the running relay's coordinates."""

    root: Path
    relay_url: str
    relay_key: str
    quick_exit_url: str

    @classmethod
    def create(cls, root: Path, relay_url: str, relay_key: str, quick_exit_url: str) -> Site:
        resolved = root.resolve()
        if not resolved.is_dir():
            raise OSError(f"pages_dir {str(root)!r} is not a directory (build the pages first)")
        return cls(resolved, relay_url, relay_key, quick_exit_url)

    def config_json(self) -> bytes:
        """``/config.json``: what the pages need to reach this relay (nothing secret)."""
        return json.dumps(
            {"relay_url": self.relay_url, "relay_key": self.relay_key,
             "quick_exit_url": self.quick_exit_url},
            separators=(",", ":"),
        ).encode()  # fmt: skip

    def file_for(self, target: bytes) -> Path | None:
        """The file a request target names, or None (bad name, not allowed, not there)."""
        path = target.split(b"?", 1)[0].split(b"#", 1)[0]
        try:
            text = path.decode("ascii")
        except UnicodeDecodeError:
            return None
        if not text.startswith("/"):
            return None
        segments = [s for s in text[1:].split("/")]
        if segments[-1] == "":
            segments[-1] = "index.html"
        if not all(_SEGMENT.fullmatch(s) and ".." not in s for s in segments):
            return None
        candidate = self.root.joinpath(*segments)
        if candidate.suffix.lower() not in CONTENT_TYPES:
            return None
        try:
            resolved = candidate.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not resolved.is_relative_to(self.root) or not resolved.is_file():
            return None
        return resolved

    def answer(self, request: h11.Request) -> Answer:
        """Status, body, content type and extra headers for one request."""
        if request.method not in (b"GET", b"HEAD"):
            return 405, b"method not allowed\n", b"text/plain", [(b"allow", b"GET, HEAD")]
        if request.target.split(b"?", 1)[0] == b"/config.json":
            return 200, self.config_json(), b"application/json", []
        file = self.file_for(request.target)
        if file is None:
            return 404, b"not found\n", b"text/plain", []
        try:
            if file.stat().st_size > MAX_FILE_BYTES:
                return 404, b"not found\n", b"text/plain", []
            body = file.read_bytes()
        except OSError:
            return 404, b"not found\n", b"text/plain", []
        return 200, body, CONTENT_TYPES[file.suffix.lower()], []


async def _http(site: Site, security: list[tuple[bytes, bytes]], stream: trio.abc.Stream) -> None:
    """Read one request, answer it, hang up (bounded by REQUEST_TIMEOUT)."""

    async def route(request: h11.Request) -> Answer:
        # Files are read in a worker thread so a slow disk never stalls the relay.
        return await trio.to_thread.run_sync(site.answer, request)

    await answer_one(stream, route, security, REQUEST_TIMEOUT)


async def serve_pages(
    site: Site, listeners: list[trio.SocketListener], *, task_status: trio.TaskStatus[None]
) -> None:
    """Serve the pages on ``listeners`` until cancelled."""
    security = security_headers(site.relay_url)
    busy = trio.CapacityLimiter(MAX_CLIENTS)

    async def handler(stream: trio.SocketStream) -> None:
        try:
            busy.acquire_nowait()
        except trio.WouldBlock:
            await trio.aclose_forcefully(stream)
            return
        try:
            await _http(site, security, stream)
        except Exception:
            # One bad request costs that request, never the relay (same nursery).
            log.exception("pages request failed")
        finally:
            busy.release()

    task_status.started()
    await trio.serve_listeners(handler, listeners)
