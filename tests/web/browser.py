"""Helpers for the browser tests: a demo relay subprocess and Debian's headless Chromium.

Chromium comes from Debian's ``chromium`` package (``./scripts/test`` installs it when
missing; never a browser download). A missing Chromium or Playwright fails the test
loudly. Runs use a fresh user-data-dir and no network but loopback.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "tests" / "web" / "artifacts"  #: screenshots of the run (git-ignored)
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
BANNER = re.compile(r"haven relay (ws://127\.0\.0\.1:\d+) key=([A-Za-z0-9_-]{43})")


@dataclass
class DemoRelay:
    """A ``haven serve --demo`` child and what it printed."""

    proc: subprocess.Popen[str]
    url: str = ""
    key: str = ""
    pages_url: str = ""
    tokens: dict[str, str] = field(default_factory=dict)


@contextmanager
def demo_relay(
    pages_dir: Path, quick_exit_url: str = "http://127.0.0.1:9/", extra: Sequence[str] = ()
) -> Iterator[DemoRelay]:
    """Run a demo relay serving ``pages_dir`` on free ports until the block ends
    (``extra``: more ``haven serve`` flags)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAVEN_")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.Popen(
        [sys.executable, "-m", "haven", "serve", "--demo", "--port", "0",
         "--pages-port", "0", "--metrics-port", "none", "--pages-dir", str(pages_dir),
         "--quick-exit-url", quick_exit_url, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    relay = DemoRelay(proc)
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline().strip()  # EOF (empty) if the relay died
        match = BANNER.fullmatch(banner)
        assert match, f"no banner: {banner!r}"
        relay.url, relay.key = match[1], match[2]
        for line in proc.stdout:
            if line.startswith("pages "):
                relay.pages_url = line.split()[1].rstrip("/")
            elif line.startswith("token "):
                _, role, text = line.split()
                relay.tokens[role] = text
            elif line.startswith("demo mode:"):
                break
        assert relay.pages_url, "the demo printed no pages URL"
        yield relay
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        if proc.stdout:
            proc.stdout.close()


@contextmanager
def chromium(tmp_path: Path) -> Iterator[object]:
    """A headless Debian Chromium (Playwright sync API) with a fresh profile."""
    if not CHROMIUM.exists():
        pytest.fail("/usr/bin/chromium is missing: run ./scripts/test, which installs it")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: run ./scripts/test, which installs it")
    profile = tmp_path / "profile"
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
        )
        try:
            yield context
        finally:
            context.close()


@contextmanager
def browser() -> Iterator[object]:
    """A headless Debian Chromium (Playwright sync API) for tests that need several
    isolated users at once: each ``new_context()`` is a separate, empty profile."""
    if not CHROMIUM.exists():
        pytest.fail("/usr/bin/chromium is missing: run ./scripts/test, which installs it")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: run ./scripts/test, which installs it")
    with sync_playwright() as p:
        chrome = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chrome
        finally:
            chrome.close()


def build_pages(out: Path) -> Path:
    """Build the real pages (web/, ``npm run build:pages``) into ``out``."""
    subprocess.run(
        ["npm", "run", "--silent", "build:pages", "--", "--out", str(out)],
        cwd=REPO / "web",
        check=True,
        stdout=subprocess.DEVNULL,
    )
    if not (out / "visitor.js").is_file():
        pytest.fail("the pages did not build (web/: npm ci, then npm run build:pages)")
    return out


SELFTEST = REPO / "tests" / "web" / "selftest"
ESBUILD = REPO / "web" / "node_modules" / ".bin" / "esbuild"


def build_selftest(out: Path) -> Path:
    """Bundle the SDK self-test page and the PoW worker (esbuild from web/) into ``out``."""
    if not ESBUILD.exists():
        pytest.fail("esbuild is missing: run ./scripts/test (npm ci in web/)")
    subprocess.run(
        [str(ESBUILD), str(SELFTEST / "selftest.ts"),
         str(REPO / "web" / "sdk" / "src" / "pow-worker.ts"), "--bundle", "--format=esm",
         "--target=es2022", "--minify", "--entry-names=[name]", f"--outdir={out}",
         "--log-level=warning"],
        check=True,
    )  # fmt: skip
    (out / "selftest.html").write_bytes((SELFTEST / "selftest.html").read_bytes())
    return out
