"""The TypeScript SDK's crypto, codec and proof of work inside Debian's Chromium.

The same checks as web/sdk/test/ under Node, run in the browser the pages run in: every
cacophony Noise_NK_25519_ChaChaPoly_SHA256 vector, the worked example of
docs/protocol.md §16, every golden envelope written by the Python codec (decoded and
re-encoded byte for byte), and proofs of work solved in the SDK's Web Worker that must
find exactly the nonces protocol/pow.py finds. The page is served by a real relay's
page server, so its Content-Security-Policy applies (the worker included).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .browser import REPO, browser, build_selftest, demo_relay

VECTORS = (
    REPO / "tests" / "protocol" / "vectors" / "noise" / "cacophony_25519_ChaChaPoly_SHA256.json"
)


def worked_example() -> dict[str, str]:
    """The hex values of docs/protocol.md §16, by label (as web/sdk/test/noise.test.js)."""
    doc = (REPO / "docs" / "protocol.md").read_text("utf-8")
    block = doc.split("<!-- worked-example:begin -->")[1].split("<!-- worked-example:end -->")[0]
    values: dict[str, str] = {}
    label = None
    for line in block.split("\n"):
        if re.fullmatch(r"\S.*:", line):
            label = re.sub(r" \(\d+ bytes\)$", "", line[:-1])
            values[label] = ""
        elif label and re.match(r"^ {2}\S", line):
            values[label] += line.strip()
    return values


def inputs() -> dict[str, Any]:
    vectors = [
        v
        for v in json.loads(VECTORS.read_text("utf-8"))["vectors"]
        if v["protocol_name"] == "Noise_NK_25519_ChaChaPoly_SHA256"
    ]
    golden = json.loads((REPO / "web" / "sdk" / "test" / "golden.json").read_text("utf-8"))
    return {"vectors": vectors, "worked": worked_example(), "golden": golden}


def test_sdk_self_test_passes_in_chromium(tmp_path: Path) -> None:
    data = inputs()
    assert data["vectors"], "no NK vectors"
    assert len(data["worked"]) >= 10
    site = build_selftest(tmp_path / "site")
    with demo_relay(site) as relay, browser() as chrome:
        ctx: Any = chrome.new_context()
        page = ctx.new_page()
        console: list[str] = []
        page.on("console", lambda msg: console.append(msg.text))
        page.goto(f"{relay.pages_url}/selftest.html")
        page.locator("body[data-ready='1']").wait_for(state="attached", timeout=60_000)
        result = page.evaluate("(inputs) => window.havenSelfTest(inputs)", data)
        assert result["failures"] == []
        assert result["ran"] == {
            "vectors": len(data["vectors"]),
            "worked": 1,
            "golden": len(data["golden"]["envelopes"]),
            "proofs": len(data["golden"]["proofs"]),
        }
        assert not [c for c in console if "Content Security Policy" in c], console
        ctx.close()
