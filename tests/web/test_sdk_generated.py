"""The TypeScript SDK's generated files match the Python protocol they come from."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_errorcodes_ts_is_current() -> None:
    """Every ErrorCode (and hint) of protocol/errors.py is in web/sdk/src/errorcodes.ts,
    exactly as the generator writes it: a new code cannot be forgotten in the SDK."""
    spec = importlib.util.spec_from_file_location(
        "gen_errorcodes", REPO / "web" / "sdk" / "scripts" / "gen_errorcodes.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = (REPO / "web" / "sdk" / "src" / "errorcodes.ts").read_text("utf-8")
    assert committed == module.render(), (
        "stale: run PYTHONPATH=. python web/sdk/scripts/gen_errorcodes.py"
    )


def test_golden_envelopes_are_current() -> None:
    """web/sdk/test/golden.json is what the Python codec writes today."""
    spec = importlib.util.spec_from_file_location(
        "gen_golden", REPO / "web" / "sdk" / "scripts" / "gen_golden.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = (REPO / "web" / "sdk" / "test" / "golden.json").read_text("utf-8")
    assert committed == module.render(), (
        "stale: run PYTHONPATH=. python web/sdk/scripts/gen_golden.py"
    )


def test_room_code_vectors_are_current() -> None:
    """web/sdk/test/roomcodes.json holds codes protocol/codes.py makes today."""
    spec = importlib.util.spec_from_file_location(
        "gen_roomcodes", REPO / "web" / "sdk" / "scripts" / "gen_roomcodes.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = json.loads((REPO / "web" / "sdk" / "test" / "roomcodes.json").read_text("utf-8"))
    assert committed == module.vectors(), (
        "stale: regenerate with web/sdk/scripts/gen_roomcodes.py (see its docstring)"
    )
