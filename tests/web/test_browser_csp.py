"""The page server's headers as Chromium enforces them, on a real demo relay.

A probe page (tests/web/site/) runs its module script, reads /config.json, opens a
WebSocket to the relay (allowed by connect-src) and tries what the policy forbids: an
inline script, a fetch to another origin, storage writes stay the page's choice (it makes
none). Every request Chromium makes is recorded: only the page origin and the relay.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .browser import ARTIFACTS, chromium, demo_relay

SITE = Path(__file__).resolve().parent / "site"


def test_chromium_enforces_the_pages_policy(tmp_path: Path) -> None:
    pages = tmp_path / "dist"
    shutil.copytree(SITE, pages)
    with demo_relay(pages) as relay, chromium(tmp_path) as context:
        ctx: Any = context
        requests: list[str] = []
        ctx.on("request", lambda request: requests.append(request.url))
        page = ctx.new_page()
        violations: list[str] = []
        page.on("console", lambda msg: violations.append(msg.text))
        page.goto(f"{relay.pages_url}/probe.html")
        page.locator("body[data-done='1']").wait_for(state="attached", timeout=60_000)
        result = page.evaluate("() => ({...document.body.dataset})")
        assert result["module"] == "ran"
        assert result.get("inline") is None  # the inline script was refused by the CSP
        assert result["config"] == relay.key
        assert result["ws"] == "open"  # connect-src lets the page reach the relay
        assert result["foreign"] == "blocked"  # ... and nothing else
        assert any("Content Security Policy" in v for v in violations), violations
        storage = page.evaluate(
            """async () => ({local: localStorage.length, session: sessionStorage.length,
                 cookie: document.cookie, idb: (await indexedDB.databases()).length})"""
        )
        assert storage == {"local": 0, "session": 0, "cookie": "", "idb": 0}
        assert ctx.cookies() == []
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "csp-probe.png"))
        page_origin = urlsplit(relay.pages_url).netloc
        relay_origin = urlsplit(relay.url).netloc
        origins = {urlsplit(url).netloc for url in requests}
        assert origins <= {page_origin, relay_origin}, origins
        assert page_origin in origins
