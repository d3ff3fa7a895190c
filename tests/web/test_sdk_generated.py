"""The TypeScript SDK's generated files match the Python protocol they come from."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
SDK = REPO / "web" / "sdk"


def generator(name: str) -> ModuleType:
    """web/sdk/scripts/<name>.py, loaded as a module."""
    spec = importlib.util.spec_from_file_location(name, SDK / "scripts" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_errorcodes_ts_is_current() -> None:
    """Every ErrorCode (and hint) of protocol/errors.py is in web/sdk/src/errorcodes.ts,
    exactly as the generator writes it: a new code cannot be forgotten in the SDK."""
    committed = (SDK / "src" / "errorcodes.ts").read_text("utf-8")
    assert committed == generator("gen_errorcodes").render(), (
        "stale: run PYTHONPATH=. python web/sdk/scripts/gen_errorcodes.py"
    )


def test_golden_envelopes_are_current() -> None:
    """web/sdk/test/golden.json is what the Python codec writes today."""
    committed = (SDK / "test" / "golden.json").read_text("utf-8")
    assert committed == generator("gen_golden").render(), (
        "stale: run PYTHONPATH=. python web/sdk/scripts/gen_golden.py"
    )


def test_room_code_vectors_are_current() -> None:
    """web/sdk/test/roomcodes.json holds codes protocol/codes.py makes today."""
    committed = json.loads((SDK / "test" / "roomcodes.json").read_text("utf-8"))
    assert committed == generator("gen_roomcodes").vectors(), (
        "stale: regenerate with web/sdk/scripts/gen_roomcodes.py (see its docstring)"
    )
