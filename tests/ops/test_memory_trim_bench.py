"""``bench/memory_trim.py`` drives the hub directly, so it must follow the hub's API.

It went stale once (it still called ``flows.install`` and ``hub.tick`` after the hub
took its flows at construction and its timers by deadline); this runs it small.
"""

from __future__ import annotations

import pytest

from bench import memory_trim


def test_memory_trim_bench_runs_and_every_room_expires(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.argv", ["memory_trim", "--rooms", "20", "--messages", "2"])
    memory_trim.main()  # asserts itself that one timer pass ends every room
    out = capsys.readouterr().out
    assert "cycle 1: 20 rooms" in out
    assert "cycle 2: malloc_trim" in out
