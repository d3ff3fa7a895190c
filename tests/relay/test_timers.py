"""``relay.timers.Deadlines``: the relay's timers, checked against a plain model."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from haven.relay.timers import Deadlines


def test_earliest_first_and_only_what_is_due() -> None:
    d: Deadlines[str] = Deadlines()
    assert d.next() is None
    d.set("b", 20.0)
    d.set("a", 10.0)
    d.set("c", 30.0)
    assert d.next() == 10.0
    assert d.pop_due(9.9) == []
    assert d.pop_due(20.0) == ["a", "b"]
    assert d.next() == 30.0
    assert len(d) == 1


def test_moving_and_cancelling() -> None:
    d: Deadlines[str] = Deadlines()
    d.set("a", 10.0)
    d.set("a", 50.0)  # moved later: the old entry is stale
    d.set("b", 20.0)
    d.cancel("b")
    d.cancel("never set")
    assert d.next() == 50.0
    assert d.pop_due(40.0) == []
    assert d.get("a") == 50.0
    assert "a" in d
    assert d.pop_due(50.0) == ["a"]
    assert "a" not in d


def test_equal_deadlines_all_pop() -> None:
    d: Deadlines[int] = Deadlines()
    for key in range(5):
        d.set(key, 1.0)
    assert sorted(d.pop_due(1.0)) == [0, 1, 2, 3, 4]


def test_stale_entries_do_not_pile_up() -> None:
    d: Deadlines[int] = Deadlines()
    for step in range(10_000):
        d.set(step % 10, float(step))  # ten keys, moved again and again
    assert len(d) == 10
    assert len(d._heap) <= 2 * 64  # compacted, not 10,000 stale entries


@given(st.lists(st.tuples(st.sampled_from(["set", "cancel", "pop"]), st.integers(0, 8),
                          st.integers(0, 100))))  # fmt: skip
def test_matches_a_dictionary_model(ops: list[tuple[str, int, int]]) -> None:
    d: Deadlines[int] = Deadlines()
    model: dict[int, float] = {}
    for op, key, when in ops:
        if op == "set":
            d.set(key, float(when))
            model[key] = float(when)
        elif op == "cancel":
            d.cancel(key)
            model.pop(key, None)
        else:
            due = d.pop_due(float(when))
            expected = {k for k, t in model.items() if t <= when}
            assert set(due) == expected
            assert [model[k] for k in due] == sorted(model[k] for k in due)
            for k in due:
                del model[k]
        assert d.next() == (min(model.values()) if model else None)
