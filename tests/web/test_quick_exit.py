"""Quick Exit (web/pages/quick-exit.js) in Chromium against a demo relay.

Button and Esc-twice: the page is emptied, the relay connection dropped, the browser is
at the neutral address, Back does not return to the page, and all storage is empty. The
neutral address is a local page (a tiny loopback HTTP server), never the Internet.
"""

from __future__ import annotations

import http.server
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from .browser import ARTIFACTS, REPO, chromium, demo_relay

SITE = Path(__file__).resolve().parent / "site"


class _Neutral(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>Weather</title><p>Sunny.</p>"
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def neutral_site() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Neutral)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/weather"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)


@pytest.mark.parametrize("how", ["button", "escape-twice"])
def test_quick_exit_leaves_nothing_behind(tmp_path: Path, how: str) -> None:
    pages = tmp_path / "dist"
    shutil.copytree(SITE, pages)
    shutil.copy(REPO / "web" / "pages" / "quick-exit.js", pages / "quick-exit.js")
    with neutral_site() as neutral, demo_relay(pages, neutral) as relay, chromium(tmp_path) as c:
        context: Any = c
        page = context.new_page()
        page.goto(f"{relay.pages_url}/exit-probe.html")
        page.locator("body[data-ready='1']").wait_for(state="attached", timeout=60_000)
        assert page.locator("#secret").is_visible()
        with page.expect_navigation(url=neutral, timeout=60_000):
            if how == "button":
                page.get_by_role("button", name="Quick Exit").click()
            else:
                page.keyboard.press("Escape")
                page.keyboard.press("Escape")
        assert page.url == neutral
        assert "A private conversation" not in page.content()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"quick-exit-{how}.png"))
        page.go_back(timeout=60_000)
        assert not page.url.startswith(relay.pages_url), page.url  # Back does not return
        page.goto(neutral)
        storage = page.evaluate(
            """async () => ({local: localStorage.length, session: sessionStorage.length,
                 cookie: document.cookie, idb: (await indexedDB.databases()).length})"""
        )
        assert storage == {"local": 0, "session": 0, "cookie": "", "idb": 0}
        assert context.cookies() == []


def test_one_escape_does_not_leave(tmp_path: Path) -> None:
    pages = tmp_path / "dist"
    shutil.copytree(SITE, pages)
    shutil.copy(REPO / "web" / "pages" / "quick-exit.js", pages / "quick-exit.js")
    with neutral_site() as neutral, demo_relay(pages, neutral) as relay, chromium(tmp_path) as c:
        context: Any = c
        page = context.new_page()
        page.goto(f"{relay.pages_url}/exit-probe.html")
        page.locator("body[data-ready='1']").wait_for(state="attached", timeout=60_000)
        page.keyboard.press("Escape")
        assert page.url.startswith(relay.pages_url)
        assert page.locator("#secret").is_visible()
