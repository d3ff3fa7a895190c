"""The loss ledger on its own: every expected delivery is delivered or lost, exactly."""

from __future__ import annotations

import random

import pytest

from haven.loadtest.accounting import Accountant, Counts, Receipt


def room_of(acct: Accountant, members: int, room: str = "R") -> None:
    """``members`` seats that all joined before anything was sent (join seqs 1..n)."""
    for member in range(members):
        acct.seat(member, room, f"a{member}", member + 1)


def test_every_delivery_received_once() -> None:
    acct = Accountant()
    room_of(acct, 3)  # seqs 1..3 are the joins
    for seq, sender in ((4, 0), (5, 1), (6, 2)):
        acct.expect("R", seq, sender)
        for member in range(3):
            if member != sender:
                assert acct.received(member, "R", seq) is Receipt.FIRST
    assert acct.counts() == Counts(numbered=3, expected=6, delivered=6)


def test_receipts_may_arrive_before_the_sent_reply() -> None:
    acct = Accountant()
    room_of(acct, 2)
    assert acct.received(1, "R", 3) is Receipt.FIRST
    acct.expect("R", 3, 0)
    assert acct.counts() == Counts(numbered=1, expected=1, delivered=1)


def test_lost_duplicated_reordered_and_unexpected() -> None:
    acct = Accountant()
    room_of(acct, 2)
    for seq in (3, 4, 5, 6):
        acct.expect("R", seq, 0)
    assert acct.received(1, "R", 3) is Receipt.FIRST
    assert acct.received(1, "R", 3) is Receipt.DUPLICATE
    assert acct.received(1, "R", 6) is Receipt.FIRST
    assert acct.received(1, "R", 5) is Receipt.REORDERED
    # 4 never arrives; the sender getting its own message back is not owed to it.
    acct.received(0, "R", 3)
    c = acct.counts()
    assert c == Counts(numbered=4, expected=4, delivered=3, lost=1, duplicated=1, reordered=1,
                       unexpected=1)  # fmt: skip
    assert c.expected == c.delivered + c.lost


def test_tenure_ends_at_the_left_presence() -> None:
    acct = Accountant()
    room_of(acct, 3)
    acct.expect("R", 4, 0)
    acct.received(1, "R", 4)
    acct.received(2, "R", 4)
    acct.gone(2, "R")
    acct.ended("R", "a2", 5)  # presence "left" for member 2 was seq 5
    acct.expect("R", 6, 0)  # member 2 is not owed this one
    acct.received(1, "R", 6)
    assert acct.counts() == Counts(numbered=2, expected=3, delivered=3)


def test_a_receipt_after_leaving_is_unexpected() -> None:
    acct = Accountant()
    room_of(acct, 2)
    acct.gone(1, "R")
    acct.expect("R", 3, 0)
    assert acct.received(1, "R", 3) is Receipt.OUTSIDE
    c = acct.counts()
    assert c.unexpected == 1
    assert c.lost == 1  # the ledger did not yet learn the tenure's end: still owed


def test_rejoin_is_a_new_tenure() -> None:
    acct = Accountant()
    room_of(acct, 2)
    acct.gone(1, "R")
    acct.ended("R", "a1", 3)
    acct.expect("R", 4, 0)  # sent while member 1 was out: not owed
    acct.seat(1, "R", "b1", 5)
    acct.expect("R", 6, 0)
    assert acct.received(1, "R", 6) is Receipt.FIRST
    assert acct.counts() == Counts(numbered=2, expected=1, delivered=1)


def test_a_drop_does_not_end_a_tenure() -> None:
    """Messages sent while a seat is away are still owed: resume replays them."""
    acct = Accountant()
    room_of(acct, 2)
    acct.expect("R", 3, 0)
    acct.expect("R", 4, 0)  # member 1 was away for both; it resumes and gets them late
    acct.received(1, "R", 3)
    assert acct.counts().lost == 1
    acct.received(1, "R", 4)
    assert acct.counts().lost == 0


def test_expect_is_idempotent_but_refuses_two_senders() -> None:
    acct = Accountant()
    room_of(acct, 2)
    acct.expect("R", 3, 0)
    acct.expect("R", 3, 0)
    with pytest.raises(ValueError, match="another sender"):
        acct.expect("R", 3, 1)
    with pytest.raises(ValueError, match="start at 1"):
        acct.expect("R", 0, 1)


def test_counts_add() -> None:
    total = Counts(expected=2, delivered=1, lost=1)
    total.add(Counts(expected=3, delivered=3))
    assert total == Counts(expected=5, delivered=4, lost=1)


def test_random_histories_balance() -> None:
    """Whatever arrives, expected == delivered + lost and each class matches a model."""
    rng = random.Random(7)
    for _ in range(50):
        acct = Accountant()
        members = rng.randint(2, 6)
        room_of(acct, members)
        seq = members
        owed: set[tuple[int, int]] = set()
        for _ in range(rng.randint(1, 40)):
            seq += 1
            sender = rng.randrange(members)
            acct.expect("R", seq, sender)
            owed |= {(m, seq) for m in range(members) if m != sender}
        arrivals = [pair for pair in sorted(owed) if rng.random() < 0.8]
        dups = [pair for pair in arrivals if rng.random() < 0.1]
        for member, s in arrivals + dups:
            acct.received(member, "R", s)
        c = acct.counts()
        assert c.expected == len(owed)
        assert c.delivered == len(set(arrivals))
        assert c.lost == len(owed) - len(set(arrivals))
        assert c.duplicated == len(dups)
        assert c.expected == c.delivered + c.lost
