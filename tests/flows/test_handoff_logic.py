"""Spoken-code attempt bound and authorization sweep, on the synchronous hub."""

from __future__ import annotations

from typing import Any

import pytest

from haven.protocol import codes
from haven.protocol import messages as m
from haven.protocol.errors import ErrorCode
from haven.relay.hub import Peer

from .helpers import Operator
from .hubkit import Kit, error_code


def direct_room(kit: Kit) -> tuple[Peer, str]:
    staff = kit.peer("staff", queues=("helpline",))
    visitor = kit.peer()
    kit.call(visitor, m.RequestHelp, queue="helpline")
    return staff, kit.call(staff, m.TakeNext, queue="helpline").seat.room


def wrong_in_bucket(code: str) -> str:
    """A different valid code with the same number part (it could have matched)."""
    while True:
        guess = "-".join([code.split("-")[0], *codes.new_spoken_code().split("-")[1:]])
        if guess != code:
            return guess


@pytest.mark.parametrize(("wrong", "outcome"), [(0, None), (4, None), (5, "locked"), (9, "locked")])
def test_the_code_survives_exactly_four_wrong_guesses(
    operator: Operator, wrong: int, outcome: str | None
) -> None:
    kit = Kit(operator)
    staff, room = direct_room(kit)
    code = kit.call(staff, m.HandoffInvite, room=room).code
    guessers = [kit.peer("responder") for _ in range(wrong)]  # many callers, one guess each
    for g in guessers:
        assert error_code(kit.call(g, m.HandoffAccept, code=wrong_in_bucket(code))) == (
            ErrorCode.HANDOFF_CODE_INVALID
        )
    reply = kit.call(kit.peer("responder"), m.HandoffAccept, code=code)
    if outcome is None:
        assert isinstance(reply, m.Joined)
        assert reply.seat.room == room
    else:
        assert error_code(reply) == ErrorCode.HANDOFF_CODE_LOCKED


def test_guesses_varying_the_number_part_count_too(operator: Operator) -> None:
    """Issue 9 item 11: spreading guesses over other numbers does not buy more tries."""
    kit = Kit(operator)
    staff, room = direct_room(kit)
    code = kit.call(staff, m.HandoffInvite, room=room).code
    number = int(code.split("-")[0])
    guesser = kit.peer("responder")
    for i in range(codes.SPOKEN_CODE_MAX_ATTEMPTS):
        other = 1 + (number + i) % codes.SPOKEN_CODE_MAX_NUMBER  # never the code's number
        guess = "-".join([str(other), *codes.new_spoken_code().split("-")[1:]])
        kit.call(guesser, m.HandoffAccept, code=guess)
    assert error_code(kit.call(kit.peer("responder"), m.HandoffAccept, code=code)) == (
        ErrorCode.HANDOFF_CODE_LOCKED
    )


def test_malformed_codes_are_not_guesses(operator: Operator) -> None:
    kit = Kit(operator)
    staff, room = direct_room(kit)
    code = kit.call(staff, m.HandoffInvite, room=room).code
    guesser = kit.peer("responder")
    for _ in range(20):
        assert error_code(kit.call(guesser, m.HandoffAccept, code="not a code")) == (
            ErrorCode.BAD_CODE
        )
    assert isinstance(kit.call(kit.peer("responder"), m.HandoffAccept, code=code), m.Joined)


def test_every_wrong_guess_is_charged_to_every_live_code(operator: Operator) -> None:
    """The bound holds per code: each of 30 codes locks after 5 wrong guesses in all."""
    kit = Kit(operator)
    invites = []
    for _ in range(30):
        staff, room = direct_room(kit)
        invites.append(kit.call(staff, m.HandoffInvite, room=room).code)
    guesser = kit.peer("responder")
    for _ in range(codes.SPOKEN_CODE_MAX_ATTEMPTS):
        guess = codes.new_spoken_code()
        while guess in invites:
            guess = codes.new_spoken_code()
        kit.call(guesser, m.HandoffAccept, code=guess)
    for code in invites:
        assert error_code(kit.call(guesser, m.HandoffAccept, code=code)) == (
            ErrorCode.HANDOFF_CODE_LOCKED
        )


def test_codes_expire_and_are_one_per_room(operator: Operator) -> None:
    kit = Kit(operator)
    staff, room = direct_room(kit)
    first = kit.call(staff, m.HandoffInvite, room=room).code
    second = kit.call(staff, m.HandoffInvite, room=room).code
    responder = kit.peer("responder")
    assert error_code(kit.call(responder, m.HandoffAccept, code=first)) == (
        ErrorCode.HANDOFF_CODE_INVALID
    )
    kit.tick(codes.SPOKEN_CODE_TTL_S)
    assert error_code(kit.call(responder, m.HandoffAccept, code=second)) == (
        ErrorCode.HANDOFF_CODE_INVALID
    )


PRIVILEGED: list[tuple[type[Any], dict[str, Any]]] = [
    (m.Duty, {"queue": "helpline"}),
    (m.TakeNext, {"queue": "helpline"}),
    (m.HandoffInvite, {"room": "ROOM"}),
    (m.HandoffAccept, {"code": "1-aardvark-adroitness-baboon"}),
    (m.PendingList, {"room": "ROOM"}),
    (m.Approve, {"room": "ROOM", "item": 1}),
    (m.Edit, {"room": "ROOM", "item": 1, "body": b"x"}),
    (m.Deny, {"room": "ROOM", "item": 1}),
    (m.Mute, {"room": "ROOM", "alias": "ALIAS"}),
    (m.Remove, {"room": "ROOM", "alias": "ALIAS"}),
    (m.Lock, {"room": "ROOM"}),
    (m.CloseRoom, {"room": "ROOM"}),
    (m.Announce, {"room": "ROOM", "body": b"x"}),
    (m.Escalate, {"room": "ROOM", "alias": "ALIAS", "queue": "helpline"}),
]


@pytest.mark.parametrize(("cls", "fields"), PRIVILEGED, ids=[c.T for c, _ in PRIVILEGED])
def test_every_privileged_request_needs_a_token(
    operator: Operator, cls: type[Any], fields: dict[str, Any]
) -> None:
    """Even a member of the room (here: the visitor of a direct room, a peer of a
    pre-moderated group room with a waiting item) gets UNAUTHORIZED without a token."""
    kit = Kit(operator)
    _, direct = direct_room(kit)
    visitor = next(p for p in [s.peer for s in kit.hub.rooms[direct].seats.values()]
                   if p is not None and not p.claims)  # fmt: skip
    moderator = kit.peer("moderator", rooms=("*",))
    group = kit.call(moderator, m.CreateRoom, kind="group", premoderated=True).seat.room
    peer = kit.peer()
    alias = kit.call(peer, m.Join, room=group).seat.alias
    kit.call(peer, m.Send, room=group, body=b"waiting")
    room = direct if cls in (m.HandoffInvite, m.CloseRoom) else group
    who = visitor if room == direct else peer
    values = {k: (room if v == "ROOM" else alias if v == "ALIAS" else v) for k, v in fields.items()}
    assert error_code(kit.call(who, cls, **values)) == ErrorCode.UNAUTHORIZED
    assert len(kit.hub.rooms[group].pending) == 1
    assert len(kit.hub.rooms[direct].seats) == 2
