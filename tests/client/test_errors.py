"""Every wire ErrorCode has exactly one exception class, in the right family."""

from __future__ import annotations

import pytest

from haven.client import errors
from haven.client.errors import (
    ERROR_CLASSES,
    AuthError,
    ConnectionLost,
    HavenClientError,
    HavenRequestError,
    LimitError,
    ProtocolViolation,
    RelayClosed,
    RelayError,
    RoomError,
    error_class,
    request_error,
)
from haven.protocol.errors import HINTS, ErrorCode, HavenError

FAMILIES = {1: ProtocolViolation, 2: RoomError, 3: AuthError, 4: LimitError, 5: RelayError}


@pytest.mark.parametrize("code", list(ErrorCode))
def test_every_code_has_its_own_class(code: ErrorCode) -> None:
    cls = error_class(code)
    assert cls is ERROR_CLASSES[code]
    assert cls.code is code
    assert issubclass(cls, FAMILIES[code // 100])
    assert cls not in FAMILIES.values()
    exc = request_error(int(code), "", 3)
    assert type(exc) is cls
    assert exc.code is code
    assert exc.raw_code == int(code)
    assert exc.message == HINTS[code]  # empty wire text falls back to the hint
    assert exc.retry_after == 3
    assert isinstance(exc, HavenRequestError | HavenError | HavenClientError)
    assert getattr(errors, cls.__name__) is cls  # importable as client.errors.<Name>
    assert cls.__name__ in errors.__all__


def test_classes_are_distinct() -> None:
    assert len(set(ERROR_CLASSES.values())) == len(ErrorCode) == len(ERROR_CLASSES)


def test_named_examples() -> None:
    assert error_class(ErrorCode.ROOM_NOT_FOUND) is errors.RoomNotFound
    assert error_class(ErrorCode.ROOM_FULL) is errors.RoomFull
    assert error_class(ErrorCode.RATE_LIMITED) is errors.RateLimited
    assert error_class(ErrorCode.FORBIDDEN) is errors.Forbidden
    assert error_class(ErrorCode.RESUME_FAILED) is errors.ResumeFailed


def test_message_is_kept() -> None:
    exc = request_error(ErrorCode.ROOM_FULL, "the room is full (50)")
    assert exc.message == "the room is full (50)"
    assert "ROOM_FULL" in str(exc)


@pytest.mark.parametrize(("raw", "family"), [(199, ProtocolViolation), (299, RoomError),
                                             (350, AuthError), (499, LimitError),
                                             (599, RelayError)])
def test_unknown_code_falls_back_to_family(raw: int, family: type[HavenRequestError]) -> None:
    exc = request_error(raw, "from a newer relay")
    assert type(exc) is family
    assert exc.raw_code == raw
    assert exc.code is family.code


def test_unknown_family() -> None:
    exc = request_error(901, "odd")
    assert type(exc) is HavenRequestError
    assert exc.raw_code == 901


@pytest.mark.parametrize(
    ("close", "code"),
    [(4105, ErrorCode.DECRYPT_FAILED), (4406, ErrorCode.SLOW_CONSUMER),
     (4408, ErrorCode.IDLE_TIMEOUT), (4109, ErrorCode.UNSUPPORTED_VERSION),
     (4402, ErrorCode.SERVER_FULL), (1001, None), (4999, None)],
)
def test_relay_closed(close: int, code: ErrorCode | None) -> None:
    exc = RelayClosed(close, "why")
    assert isinstance(exc, ConnectionLost)
    assert exc.code == exc.close_code == close
    assert exc.error_code is code
    copy = exc.clone()
    assert type(copy) is RelayClosed
    assert copy is not exc
    assert copy.error_code is code


def test_connection_lost_clone_keeps_type() -> None:
    exc = errors.ConnectFailed("no route", close_code=None)
    copy = exc.clone()
    assert type(copy) is errors.ConnectFailed
    assert copy.reason == "no route"
