"""Close every raw client socket the operations tests opened (ResourceWarnings are errors)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .helpers import OPENED


@pytest.fixture(autouse=True)
def _close_raw_clients() -> Iterator[None]:
    yield
    while OPENED:
        OPENED.pop().close()
