"""Write web/sdk/src/errorcodes.ts from protocol/errors.py (the one source of codes).

Run from the repository root: PYTHONPATH=. python web/sdk/scripts/gen_errorcodes.py
tests/web/test_sdk_generated.py fails when the committed file is stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from haven.protocol.errors import HINTS, ErrorCode

OUT = Path(__file__).resolve().parents[1] / "src" / "errorcodes.ts"


def render() -> str:
    lines = [
        "// Generated from protocol/errors.py by web/sdk/scripts/gen_errorcodes.py: do not edit.",
        "",
        "/** Every error a Haven relay can report on the wire (`error.code`). */",
        "export enum ErrorCode {",
    ]
    lines += [f"  {code.name} = {int(code)}," for code in ErrorCode]
    lines += ["}", "", "/** What a client should do about each error (never contains a secret). */",
              "export const HINTS: Readonly<Record<number, string>> = {"]
    lines += [f"  {int(code)}: {json.dumps(HINTS[code])}," for code in ErrorCode]
    lines += ["};", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    OUT.write_text(render(), "utf-8")
    sys.stdout.write(f"wrote {OUT}\n")
