"""Accessibility checks with axe-core (web/node_modules/axe-core, a dev dependency).

axe runs inside the page through Playwright's ``evaluate`` (devtools, so the page's
Content-Security-Policy does not block it). A violation of impact "serious" or
"critical" fails the test, listed with its rule, help text and the elements concerned.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from .browser import REPO

AXE = REPO / "web" / "node_modules" / "axe-core" / "axe.min.js"
FAILING = {"serious", "critical"}


@cache
def _source() -> str:
    if not AXE.is_file():
        pytest.fail("axe-core is missing: run ./scripts/test (npm ci in web/)")
    return AXE.read_text(encoding="utf-8")


def violations(page: Any) -> list[dict[str, Any]]:
    """axe's violations on the page as it is now (WCAG 2.x A and AA rules, best practice)."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(_source())
    result: dict[str, Any] = page.evaluate(
        """async (tags) => await window.axe.run(document, {
             runOnly: {type: "tag", values: tags}, resultTypes: ["violations"]})""",
        ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"],
    )
    return list(result["violations"])


def assert_accessible(page: Any, name: str) -> None:
    """Fail listing every serious or critical axe finding on ``page`` (called ``name``)."""
    found = [v for v in violations(page) if v.get("impact") in FAILING]
    if found:
        lines = [
            f"{v['id']} ({v['impact']}): {v['help']} at "
            + ", ".join(" ".join(node["target"]) for node in v["nodes"][:5])
            for v in found
        ]
        pytest.fail(f"{name}: accessibility violations:\n" + "\n".join(lines))
