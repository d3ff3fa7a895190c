"""Room codes made by protocol/codes.py, for the TypeScript parser's tests.

PYTHONPATH=. python web/sdk/scripts/gen_roomcodes.py > web/sdk/test/roomcodes.json
(tests/web/test_sdk_generated.py checks the file is current). The ids are fixed
(SHA-256 of a counter, plus the all-zero and all-ones edges), so the output is stable.
"""

from __future__ import annotations

import hashlib
import json

from haven.protocol import codes


def vectors() -> list[dict[str, str]]:
    ids = [bytes(16), b"\xff" * 16]
    ids += [hashlib.sha256(i.to_bytes(4, "big")).digest()[:16] for i in range(38)]
    return [{"hex": raw.hex(), "code": codes.room_code_from_bytes(raw)} for raw in ids]


def main() -> None:
    print(json.dumps(vectors(), indent=1))


if __name__ == "__main__":
    main()
