"""Haven's error vocabulary: one ``ErrorCode`` per thing that can go wrong.

Errors are classes that carry a wire code, never bare strings, so that the relay, the
SDK and clients in other languages agree on what happened. The human-readable text of
an error names what was wrong and what to do about it; it never echoes a secret (a
code, a token, a body) back, because error text may end up in a browser console or a
log on the client's side.

Code ranges:

* ``1xx`` — the frame or envelope itself was broken (the connection usually ends);
* ``2xx`` — rooms, seats, queues and codes;
* ``3xx`` — authorisation (staff, moderator and responder tokens);
* ``4xx`` — limits and admission control (retry later, or with proof of work);
* ``5xx`` — the relay's own state (draining, internal failure).
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """Every error a Haven relay can report on the wire (``error.code``)."""

    #: The envelope is not valid msgpack, breaks a codec limit, or has the wrong shape.
    MALFORMED = 100
    #: The envelope's ``t`` names no known message type.
    UNKNOWN_TYPE = 101
    #: A field is missing, has the wrong type, or is out of range.
    BAD_FIELD = 102
    #: The frame or envelope is larger than the negotiated limit.
    TOO_LARGE = 103
    #: The decrypted plaintext does not carry valid padding.
    BAD_PADDING = 104
    #: A transport message failed authentication; the connection is closed.
    DECRYPT_FAILED = 105
    #: The Noise handshake failed (wrong relay key, corrupted or replayed message).
    HANDSHAKE_FAILED = 106
    #: A public key is malformed or of low order.
    BAD_KEY = 107
    #: A cipher state used all 2**64-1 nonces; the session must be re-established.
    NONCE_EXHAUSTED = 108
    #: The client speaks a protocol version this relay does not support; upgrade.
    UNSUPPORTED_VERSION = 109
    #: A request id was reused or did not increase; request ids must strictly increase.
    BAD_REQUEST_ID = 110
    #: A room code, link code or spoken code failed its checksum or format check.
    BAD_CODE = 111
    #: The message is valid but not allowed in this direction or state.
    UNEXPECTED_MESSAGE = 112

    #: No room with this code exists (or it has ended).
    ROOM_NOT_FOUND = 200
    #: The room has reached its member cap.
    ROOM_FULL = 201
    #: The request names a room this connection holds no seat in.
    NOT_A_MEMBER = 202
    #: This connection already holds a seat in that room.
    ALREADY_MEMBER = 203
    #: A moderator locked the room against new joins.
    ROOM_LOCKED = 204
    #: The room was closed.
    ROOM_CLOSED = 205
    #: A scheduled room is not open yet; ``retry_after`` says when it opens.
    NOT_OPEN_YET = 206
    #: A moderator muted this seat; it may read but not send.
    MUTED = 207
    #: A moderator removed this seat from the room; it cannot come back.
    REMOVED = 208
    #: The resume token is unknown, expired, or its missed events no longer fit.
    RESUME_FAILED = 209
    #: The spoken handoff code is wrong or expired.
    HANDOFF_CODE_INVALID = 210
    #: Too many wrong attempts: the spoken handoff code was invalidated.
    HANDOFF_CODE_LOCKED = 211
    #: The moderation item does not exist (already decided, or expired).
    ITEM_NOT_FOUND = 212
    #: No intake queue with that name is configured.
    QUEUE_NOT_FOUND = 213
    #: This connection is not waiting in that queue.
    NOT_QUEUED = 214
    #: No visitor is waiting in the queue.
    QUEUE_EMPTY = 215
    #: No seat with that alias is in the room.
    MEMBER_NOT_FOUND = 216

    #: The operation needs a staff, moderator or responder token; present one.
    UNAUTHORIZED = 300
    #: The presented token does not cover this operation, queue or room.
    FORBIDDEN = 301
    #: The token has expired; ask the operator for a fresh one.
    TOKEN_EXPIRED = 302
    #: The token is malformed or its signature does not verify.
    TOKEN_INVALID = 303
    #: The token is signed by a key this relay does not trust.
    TOKEN_UNTRUSTED = 304

    #: Too many requests; ``retry_after`` says when to try again.
    RATE_LIMITED = 400
    #: This connection, or the relay, holds as many rooms as it may.
    TOO_MANY_ROOMS = 401
    #: The relay is at its connection cap; retry later.
    SERVER_FULL = 402
    #: The intake queue is full; ``retry_after`` suggests when to retry.
    QUEUE_FULL = 403
    #: The operation needs a proof of work at the current difficulty.
    POW_REQUIRED = 404
    #: The proof of work did not verify.
    POW_INVALID = 405
    #: The connection could not keep up with its room and was dropped.
    SLOW_CONSUMER = 406
    #: The room's pre-moderation queue is full; retry later.
    PENDING_FULL = 407
    #: The connection sat idle longer than the idle timeout.
    IDLE_TIMEOUT = 408

    #: The relay is shutting down; reconnect after ``retry_after`` seconds.
    DRAINING = 500
    #: The relay failed internally; nothing about the request was kept.
    INTERNAL = 501
    #: The relay is at its memory budget; retry after ``retry_after`` seconds.
    RELAY_BUSY = 502


#: What a client should do about each error, in words that never include a secret.
HINTS: dict[ErrorCode, str] = {
    ErrorCode.MALFORMED: "the message could not be decoded; check the client's encoder",
    ErrorCode.UNKNOWN_TYPE: "unknown message type; upgrade the client or check 't'",
    ErrorCode.BAD_FIELD: "a field is missing or invalid; see docs/protocol.md",
    ErrorCode.TOO_LARGE: "message too large; send less than the limit from 'welcome'",
    ErrorCode.BAD_PADDING: "invalid padding; see 'Framing' in docs/protocol.md",
    ErrorCode.DECRYPT_FAILED: "frame failed authentication; reconnect",
    ErrorCode.HANDSHAKE_FAILED: "handshake failed; check the pinned relay key",
    ErrorCode.BAD_KEY: "invalid public key",
    ErrorCode.NONCE_EXHAUSTED: "session exhausted its nonces; reconnect",
    ErrorCode.UNSUPPORTED_VERSION: "protocol version not supported; upgrade the client",
    ErrorCode.BAD_REQUEST_ID: "request ids must be positive and strictly increasing",
    ErrorCode.BAD_CODE: "that code is mistyped (checksum failed); check it and retry",
    ErrorCode.UNEXPECTED_MESSAGE: "that message is not allowed here",
    ErrorCode.ROOM_NOT_FOUND: "no such room; it may have ended",
    ErrorCode.ROOM_FULL: "the room is full",
    ErrorCode.NOT_A_MEMBER: "join the room first",
    ErrorCode.ALREADY_MEMBER: "already in that room",
    ErrorCode.ROOM_LOCKED: "the room is locked to new members",
    ErrorCode.ROOM_CLOSED: "the room was closed",
    ErrorCode.NOT_OPEN_YET: "the room is not open yet; retry when it opens",
    ErrorCode.MUTED: "a moderator muted you in this room",
    ErrorCode.REMOVED: "a moderator removed you from this room",
    ErrorCode.RESUME_FAILED: "the seat could not be resumed; join again",
    ErrorCode.HANDOFF_CODE_INVALID: "that code is wrong or expired; ask for a new one",
    ErrorCode.HANDOFF_CODE_LOCKED: "too many wrong attempts; ask for a new code",
    ErrorCode.ITEM_NOT_FOUND: "that pending item no longer exists",
    ErrorCode.QUEUE_NOT_FOUND: "no such queue",
    ErrorCode.NOT_QUEUED: "not waiting in that queue",
    ErrorCode.QUEUE_EMPTY: "nobody is waiting",
    ErrorCode.MEMBER_NOT_FOUND: "no member with that alias",
    ErrorCode.UNAUTHORIZED: "this needs a staff, moderator or responder token",
    ErrorCode.FORBIDDEN: "your token does not cover this",
    ErrorCode.TOKEN_EXPIRED: "your token expired; get a fresh one",
    ErrorCode.TOKEN_INVALID: "the token is malformed or its signature is wrong",
    ErrorCode.TOKEN_UNTRUSTED: "the token's issuer is not trusted by this relay",
    ErrorCode.RATE_LIMITED: "too many requests; slow down",
    ErrorCode.TOO_MANY_ROOMS: "room limit reached; leave a room or retry later",
    ErrorCode.SERVER_FULL: "the relay is full; retry later",
    ErrorCode.QUEUE_FULL: "the queue is full; retry later",
    ErrorCode.POW_REQUIRED: "solve the proof-of-work challenge and retry",
    ErrorCode.POW_INVALID: "the proof of work is wrong; solve the current challenge",
    ErrorCode.SLOW_CONSUMER: "the connection fell behind and was dropped; reconnect",
    ErrorCode.PENDING_FULL: "too many messages await moderation; retry later",
    ErrorCode.IDLE_TIMEOUT: "idle too long; reconnect",
    ErrorCode.DRAINING: "the relay is restarting; reconnect shortly",
    ErrorCode.INTERNAL: "internal error; retry",
    ErrorCode.RELAY_BUSY: "the relay is at its memory budget; retry later",
}


class HavenError(Exception):
    """Base of every Haven exception: carries an ``ErrorCode`` and a safe message.

    ``message`` must never contain a secret or a client address; it defaults to the
    code's hint. ``retry_after`` (seconds) tells the client when retrying makes sense.
    """

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(
        self,
        message: str | None = None,
        *,
        code: ErrorCode | None = None,
        retry_after: float | None = None,
    ) -> None:
        if code is not None:
            self.code = code
        self.message = message if message is not None else HINTS[self.code]
        self.retry_after = retry_after
        super().__init__(f"{self.code.name}: {self.message}")


class ProtocolError(HavenError):
    """The peer broke the wire protocol; the connection cannot continue safely."""

    code = ErrorCode.MALFORMED


class DecodeError(ProtocolError):
    """An envelope could not be decoded into a known, well-formed message.

    ``request_id`` is the envelope's ``id`` when it could be read (0 otherwise), so a
    relay can answer a request with a bad field by a typed error instead of hanging up.
    """

    code = ErrorCode.MALFORMED
    request_id: int = 0


class FrameError(ProtocolError):
    """A transport frame is oversize, failed authentication, or has bad padding."""

    code = ErrorCode.DECRYPT_FAILED


class NoiseError(ProtocolError):
    """The Noise layer refused a message, key or state transition."""

    code = ErrorCode.HANDSHAKE_FAILED


class CodeFormatError(HavenError):
    """A human-facing code (room, link or spoken) is malformed or fails its checksum."""

    code = ErrorCode.BAD_CODE


class RequestError(HavenError):
    """A well-formed request that the relay refused; the connection stays open."""

    code = ErrorCode.INTERNAL
