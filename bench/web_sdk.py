"""The TypeScript SDK: bundle sizes, and connect and proof-of-work times in Chromium.

Sizes: the SDK alone (web/sdk/src/index.ts bundled and minified by esbuild, as an
application would ship it), each built page (SDK and page code together), and the PoW
worker, raw and gzipped (level 9). Timings, in Debian's headless Chromium against a real
relay on loopback: a full connect (WebSocket open + Noise NK handshake + welcome) N
times, and proofs of work at difficulty 16 solved in the SDK's Web Worker.

    PYTHONPATH=. .venv/bin/python -m bench.web_sdk [--connects 50] [--proofs 20]

Needs web/node_modules (npm ci in web/) and /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import gzip
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tests.web.browser import ESBUILD, REPO, browser, build_pages, build_selftest, demo_relay

GOAL_GZIP = 40 * 1024  #: the issue's goal for the SDK, gzipped


def sizes(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    return len(data), len(gzip.compress(data, 9))


def sdk_bundle(out: Path) -> Path:
    target = out / "haven-sdk.js"
    subprocess.run(
        [str(ESBUILD), str(REPO / "web" / "sdk" / "src" / "index.ts"), "--bundle",
         "--format=esm", "--target=es2022", "--minify", f"--outfile={target}",
         "--log-level=warning"],
        check=True,
    )  # fmt: skip
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connects", type=int, default=50)
    parser.add_argument("--proofs", type=int, default=20)
    parser.add_argument("--difficulty", type=int, default=16)
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        table = Table(title="bundle sizes (esbuild --minify, gzip -9)")
        for col in ("file", "bytes", "gzipped"):
            table.add_column(col, justify="right" if col != "file" else "left")
        raw, gz = sizes(sdk_bundle(root))
        table.add_row("SDK alone (index.ts)", f"{raw:,}", f"{gz:,}")
        pages = build_pages(root / "pages")
        for js in sorted(pages.glob("*.js")):
            raw_p, gz_p = sizes(js)
            table.add_row(js.name, f"{raw_p:,}", f"{gz_p:,}")
        console.print(table)
        verdict = "meets" if gz <= GOAL_GZIP else "misses"
        console.print(f"SDK gzipped: {gz:,} bytes ({gz / 1024:.1f} KiB): {verdict} the 40 KiB goal")

        site = build_selftest(root / "site")
        with demo_relay(site) as relay, browser() as chrome_:
            chrome: Any = chrome_
            ctx: Any = chrome.new_context()
            page = ctx.new_page()
            page.goto(f"{relay.pages_url}/selftest.html")
            page.locator("body[data-ready='1']").wait_for(state="attached", timeout=60_000)
            result = page.evaluate(
                "(c) => window.havenBench(c)",
                {"url": relay.url, "key": relay.key, "connects": args.connects,
                 "proofs": args.proofs, "difficulty": args.difficulty},
            )  # fmt: skip
            ctx.close()
    timing = Table(title="Chromium (headless, Debian package), relay on 127.0.0.1")
    for col in ("measure", "n", "median", "p95"):
        timing.add_column(col, justify="left" if col == "measure" else "right")
    c, p = result["connect_ms"], result["pow_ms"]
    timing.add_row("connect: WebSocket + NK handshake + welcome", str(c["n"]),
                   f"{c['median']:.1f} ms", f"{c['p95']:.1f} ms")  # fmt: skip
    timing.add_row(f"proof of work, difficulty {args.difficulty}, Web Worker", str(p["n"]),
                   f"{p['median']:.0f} ms", f"{p['p95']:.0f} ms")  # fmt: skip
    console.print(timing)
    console.print(f"worker hash rate: {result['hashes_per_s']:,.0f} SHA-256/s")
    console.print(f"browser: {result['user_agent']}")


if __name__ == "__main__":
    main()
