"""The SDK's exceptions: one class per wire ``ErrorCode``, plus connection failures.

Why one class per code: applications want ``except RoomFull:`` rather than comparing
integers, and a relay error must never surface as a bare string. The classes are grouped
by the code's family (the hundreds digit) so that ``except RoomError:`` catches every
room problem. Every request error also subclasses ``protocol.errors.HavenError``, so
code that already handles the protocol's exceptions keeps working.

Connection-level failures (``ConnectionLost``, ``RelayClosed``, ``HandshakeFailed``,
``ConnectFailed``) are not relay replies and carry no ``ErrorCode`` of their own.
"""

from __future__ import annotations

from haven.protocol.errors import HINTS, ErrorCode, HavenError


class HavenClientError(Exception):
    """Root of every exception the SDK raises."""


# ------------------------------------------------------------------ request errors


class HavenRequestError(HavenClientError, HavenError):
    """The relay refused a request (or a connection-level ``error``) with a typed code.

    ``raw_code`` is the integer from the wire; it differs from ``code`` only when a newer
    relay sends a code this SDK does not know (``code`` is then the family's fallback).
    """

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(
        self,
        code: ErrorCode | int | None = None,
        message: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        raw = int(code) if code is not None else int(type(self).code)
        known = _known_code(raw)
        HavenError.__init__(
            self,
            message,
            code=known if known is not None else type(self).code,
            retry_after=retry_after,
        )
        self.raw_code = raw


def _known_code(raw: int) -> ErrorCode | None:
    try:
        return ErrorCode(raw)
    except ValueError:
        return None


class ProtocolViolation(HavenRequestError):
    """1xx: a frame or envelope was broken; usually a bug in the client or the SDK."""

    code = ErrorCode.MALFORMED


class RoomError(HavenRequestError):
    """2xx: rooms, seats, queues and codes."""

    code = ErrorCode.ROOM_NOT_FOUND


class AuthError(HavenRequestError):
    """3xx: the operation needs (another) staff, moderator or responder token."""

    code = ErrorCode.UNAUTHORIZED


class LimitError(HavenRequestError):
    """4xx: limits and admission control; ``retry_after`` says when to try again."""

    code = ErrorCode.RATE_LIMITED


class RelayError(HavenRequestError):
    """5xx: the relay's own state (draining, internal failure)."""

    code = ErrorCode.INTERNAL


# 1xx
class Malformed(ProtocolViolation):
    code = ErrorCode.MALFORMED


class UnknownType(ProtocolViolation):
    code = ErrorCode.UNKNOWN_TYPE


class BadField(ProtocolViolation):
    code = ErrorCode.BAD_FIELD


class TooLarge(ProtocolViolation):
    code = ErrorCode.TOO_LARGE


class BadPadding(ProtocolViolation):
    code = ErrorCode.BAD_PADDING


class DecryptFailed(ProtocolViolation):
    code = ErrorCode.DECRYPT_FAILED


class HandshakeRefused(ProtocolViolation):
    code = ErrorCode.HANDSHAKE_FAILED


class BadKey(ProtocolViolation):
    code = ErrorCode.BAD_KEY


class NonceExhausted(ProtocolViolation):
    code = ErrorCode.NONCE_EXHAUSTED


class UnsupportedVersion(ProtocolViolation):
    code = ErrorCode.UNSUPPORTED_VERSION


class BadRequestId(ProtocolViolation):
    code = ErrorCode.BAD_REQUEST_ID


class BadCode(ProtocolViolation):
    code = ErrorCode.BAD_CODE


class UnexpectedMessage(ProtocolViolation):
    code = ErrorCode.UNEXPECTED_MESSAGE


# 2xx
class RoomNotFound(RoomError):
    code = ErrorCode.ROOM_NOT_FOUND


class RoomFull(RoomError):
    code = ErrorCode.ROOM_FULL


class NotAMember(RoomError):
    code = ErrorCode.NOT_A_MEMBER


class AlreadyMember(RoomError):
    code = ErrorCode.ALREADY_MEMBER


class RoomLocked(RoomError):
    code = ErrorCode.ROOM_LOCKED


class RoomClosedError(RoomError):
    code = ErrorCode.ROOM_CLOSED


class NotOpenYet(RoomError):
    code = ErrorCode.NOT_OPEN_YET


class Muted(RoomError):
    code = ErrorCode.MUTED


class RemovedError(RoomError):
    code = ErrorCode.REMOVED


class ResumeFailed(RoomError):
    code = ErrorCode.RESUME_FAILED


class HandoffCodeInvalid(RoomError):
    code = ErrorCode.HANDOFF_CODE_INVALID


class HandoffCodeLocked(RoomError):
    code = ErrorCode.HANDOFF_CODE_LOCKED


class ItemNotFound(RoomError):
    code = ErrorCode.ITEM_NOT_FOUND


class QueueNotFound(RoomError):
    code = ErrorCode.QUEUE_NOT_FOUND


class NotQueued(RoomError):
    code = ErrorCode.NOT_QUEUED


class QueueEmpty(RoomError):
    code = ErrorCode.QUEUE_EMPTY


class MemberNotFound(RoomError):
    code = ErrorCode.MEMBER_NOT_FOUND


# 3xx
class Unauthorized(AuthError):
    code = ErrorCode.UNAUTHORIZED


class Forbidden(AuthError):
    code = ErrorCode.FORBIDDEN


class TokenExpired(AuthError):
    code = ErrorCode.TOKEN_EXPIRED


class TokenInvalid(AuthError):
    code = ErrorCode.TOKEN_INVALID


class TokenUntrusted(AuthError):
    code = ErrorCode.TOKEN_UNTRUSTED


# 4xx
class RateLimited(LimitError):
    code = ErrorCode.RATE_LIMITED


class TooManyRooms(LimitError):
    code = ErrorCode.TOO_MANY_ROOMS


class ServerFull(LimitError):
    code = ErrorCode.SERVER_FULL


class QueueFull(LimitError):
    code = ErrorCode.QUEUE_FULL


class PowRequired(LimitError):
    code = ErrorCode.POW_REQUIRED


class PowInvalid(LimitError):
    code = ErrorCode.POW_INVALID


class SlowConsumer(LimitError):
    code = ErrorCode.SLOW_CONSUMER


class PendingFull(LimitError):
    code = ErrorCode.PENDING_FULL


class IdleTimeout(LimitError):
    code = ErrorCode.IDLE_TIMEOUT


# 5xx
class RelayDraining(RelayError):
    code = ErrorCode.DRAINING


class InternalError(RelayError):
    code = ErrorCode.INTERNAL


class RelayBusy(RelayError):
    code = ErrorCode.RELAY_BUSY


_FAMILIES: dict[int, type[HavenRequestError]] = {
    1: ProtocolViolation,
    2: RoomError,
    3: AuthError,
    4: LimitError,
    5: RelayError,
}


def _collect() -> dict[ErrorCode, type[HavenRequestError]]:
    table: dict[ErrorCode, type[HavenRequestError]] = {}
    for family in _FAMILIES.values():
        for cls in family.__subclasses__():
            if cls.code in table:  # pragma: no cover - catalogue bug
                raise RuntimeError(f"two classes for {cls.code.name}")
            table[cls.code] = cls
    return table


#: ErrorCode -> the exception class raised for it (every code has exactly one).
ERROR_CLASSES: dict[ErrorCode, type[HavenRequestError]] = _collect()


def error_class(code: ErrorCode | int) -> type[HavenRequestError]:
    """The exception class for a wire code; unknown codes map to their family's base."""
    known = _known_code(int(code))
    if known is not None:
        return ERROR_CLASSES[known]
    return _FAMILIES.get(int(code) // 100, HavenRequestError)


def request_error(
    code: ErrorCode | int, message: str | None, retry_after: float | None = None
) -> HavenRequestError:
    """Build the typed exception for a relay ``error`` (message falls back to the hint)."""
    known = _known_code(int(code))
    if not message and known is not None:
        message = HINTS[known]
    return error_class(code)(code, message or None, retry_after)


# --------------------------------------------------------------- connection errors


class ConnectionLost(HavenClientError):
    """The connection ended while a request was in flight, or before it could be sent.

    A request that failed this way may or may not have reached the relay (a ``send``
    that was not acknowledged may still have been delivered); the application decides
    whether to retry. ``close_code`` is the WebSocket close code when one was received.
    """

    def __init__(self, reason: str = "connection lost", close_code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.close_code = close_code

    def clone(self) -> ConnectionLost:
        """A fresh copy, so one cause can be raised in many tasks without sharing tracebacks."""
        copy = type(self)(self.reason, self.close_code)
        copy.__cause__ = self.__cause__
        return copy


class RelayClosed(ConnectionLost):
    """The relay closed the WebSocket with ``code`` (4000 + ErrorCode for typed closes).

    ``error_code`` is the ``ErrorCode`` behind a 4xxx close, or ``None`` for standard
    codes such as 1001 (going away, the relay is draining).
    """

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(reason or f"relay closed the connection ({code})", close_code=code)
        self.code = code
        self.error_code = _known_code(code - 4000) if 4000 <= code < 5000 else None

    def clone(self) -> RelayClosed:
        copy = RelayClosed(self.code, self.reason)
        copy.__cause__ = self.__cause__
        return copy


class ConnectFailed(ConnectionLost):
    """The WebSocket could not be opened (DNS, TCP, TLS, HTTP upgrade or timeout)."""


class TLSFailed(ConnectFailed):
    """The TLS handshake failed: the certificate is untrusted, expired or for another
    name. Retrying does not help; pass an ``ssl_context`` that trusts the relay's CA."""


class UpgradeRefused(ConnectFailed):
    """The server answered the WebSocket upgrade with HTTP ``status`` (a proxy's 502
    while the relay restarts, a 404 on a wrong path) instead of switching protocols."""

    def __init__(self, status: int, reason: str = "") -> None:
        super().__init__(reason or f"the WebSocket upgrade was refused with HTTP {status}")
        self.status = status

    def clone(self) -> UpgradeRefused:
        copy = UpgradeRefused(self.status, self.reason)
        copy.__cause__ = self.__cause__
        return copy


class HandshakeFailed(HavenClientError):
    """The Noise handshake failed: the pinned relay key is wrong, or the reply is broken.

    Retrying does not help: check the relay key the application pinned.
    """


class UnexpectedReply(HavenClientError):
    """The relay answered a request with a reply of the wrong type (an SDK/relay mismatch)."""


__all__ = [
    "ERROR_CLASSES",
    "AlreadyMember",
    "AuthError",
    "BadCode",
    "BadField",
    "BadKey",
    "BadPadding",
    "BadRequestId",
    "ConnectFailed",
    "ConnectionLost",
    "DecryptFailed",
    "Forbidden",
    "HandoffCodeInvalid",
    "HandoffCodeLocked",
    "HandshakeFailed",
    "HandshakeRefused",
    "HavenClientError",
    "HavenRequestError",
    "IdleTimeout",
    "InternalError",
    "ItemNotFound",
    "LimitError",
    "Malformed",
    "MemberNotFound",
    "Muted",
    "NonceExhausted",
    "NotAMember",
    "NotOpenYet",
    "NotQueued",
    "PendingFull",
    "PowInvalid",
    "PowRequired",
    "ProtocolViolation",
    "QueueEmpty",
    "QueueFull",
    "QueueNotFound",
    "RateLimited",
    "RelayBusy",
    "RelayClosed",
    "RelayDraining",
    "RelayError",
    "RemovedError",
    "ResumeFailed",
    "RoomClosedError",
    "RoomError",
    "RoomFull",
    "RoomLocked",
    "RoomNotFound",
    "ServerFull",
    "SlowConsumer",
    "TLSFailed",
    "TokenExpired",
    "TokenInvalid",
    "TokenUntrusted",
    "TooLarge",
    "TooManyRooms",
    "Unauthorized",
    "UnexpectedMessage",
    "UnexpectedReply",
    "UnknownType",
    "UnsupportedVersion",
    "UpgradeRefused",
    "error_class",
    "request_error",
]
