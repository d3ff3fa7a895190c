"""msgpack envelopes with strict limits: every failure becomes one ``DecodeError``.

Decoding happens in three steps, each refusing as early as it can:

1. **Size** is checked before anything is parsed.
2. **Structure** is scanned without building objects (``scan``): a walk over the
   msgpack headers that enforces nesting depth, container lengths, the total number of
   items, no ext types and no trailing bytes. A 64 KiB frame of nested or empty
   containers is refused after at most ``MAX_ITEMS`` header reads, before msgpack
   allocates a single list.
3. **Schema**: msgpack builds the (now small) object, and each field is checked
   against the message class in ``protocol.messages`` (type, length, range, choice).

Wire shape: a map with string keys; ``t`` names the message type; other keys are the
dataclass fields. ``None`` fields are omitted on encode and read as absent. Unknown keys
are ignored so that a newer peer may add optional fields within one protocol version.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any, Final, Union

import msgpack

from .errors import DecodeError, ErrorCode
from .messages import HANDSHAKE, REQUESTS, SERVER_MESSAGES, Error, Message, Request

#: Largest envelope accepted (bytes); equals frames.MAX_ENVELOPE.
MAX_ENVELOPE: Final = 65517
#: Deepest nesting allowed (the top-level map is depth 1).
MAX_DEPTH: Final = 4
#: Most items (map entries count twice: key and value) in one envelope.
MAX_ITEMS: Final = 2048
#: Longest map (entries) and array accepted.
MAX_MAP_LEN: Final = 32
MAX_ARRAY_LEN: Final = 256



# ---------------------------------------------------------------- structural scan

# Fixed byte lengths of scalar payloads after the type byte.
_SCALAR_LEN: Final = {
    0xC0: 0, 0xC2: 0, 0xC3: 0,  # nil, false, true
    0xCA: 4, 0xCB: 8,  # float32, float64
    0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8,  # uint8..64
    0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8,  # int8..64
}  # fmt: skip
# Types whose payload length follows in N bytes: str8/16/32, bin8/16/32.
_SIZED: Final = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4}
_ARRAY_N: Final = {0xDC: 2, 0xDD: 4}
_MAP_N: Final = {0xDE: 2, 0xDF: 4}


def _malformed(why: str) -> DecodeError:
    return DecodeError(f"malformed envelope: {why}", code=ErrorCode.MALFORMED)


def scan(data: bytes) -> None:
    """Check the msgpack structure of ``data`` without building any object.

    Raises ``DecodeError`` on truncation, trailing bytes, ext types, the reserved byte
    0xC1, nesting deeper than ``MAX_DEPTH``, containers longer than the limits, or
    more than ``MAX_ITEMS`` items in total.
    """
    if not _scan_flat(data):
        _scan_nested(data)


def _scan_flat(data: bytes) -> bool:
    """The common envelope, fast: a map of at most 15 entries holding no container.

    Such an envelope is within every limit but truncation and trailing bytes, which
    are checked here. Returns False, having checked nothing, for anything else (a
    container inside, a longer map, any unusual byte), which ``_scan_nested`` walks.
    """
    end = len(data)
    if not end or not 0x80 <= data[0] <= 0x8F:
        return False
    remaining = (data[0] & 0x0F) * 2
    pos = 1
    while remaining:
        if pos >= end:
            raise _malformed("truncated")
        b = data[pos]
        if b <= 0x7F or b >= 0xE0:  # fixint
            pos += 1
        elif 0xA0 <= b <= 0xBF:  # fixstr
            pos += 1 + (b & 0x1F)
        elif b == 0xC4 or b == 0xD9:  # bin8, str8
            if pos + 1 >= end:
                raise _malformed("truncated")
            pos += 2 + data[pos + 1]
        elif b in _SCALAR_LEN:
            pos += 1 + _SCALAR_LEN[b]
        else:
            return False
        remaining -= 1
    if pos > end:
        raise _malformed("truncated")
    if pos != end:
        raise _malformed("trailing bytes")
    return True


def _scan_nested(data: bytes) -> None:
    """``scan`` for any envelope: a walk with a stack of open containers."""
    end = len(data)
    pos = 0
    # Stack of items still expected at each open nesting level; the top level expects 1.
    pending = [1]
    budget = MAX_ITEMS
    while pending:
        if pending[-1] == 0:
            pending.pop()
            continue
        pending[-1] -= 1
        if pos >= end:
            raise _malformed("truncated")
        budget -= 1
        if budget < 0:
            raise _malformed("too many items")
        b = data[pos]
        pos += 1
        if b <= 0x7F or b >= 0xE0:
            continue
        n = -1  # container length, when b opens one
        is_map = False
        if 0x80 <= b <= 0x8F:
            n, is_map = b & 0x0F, True
        elif 0x90 <= b <= 0x9F:
            n = b & 0x0F
        elif 0xA0 <= b <= 0xBF:
            pos += b & 0x1F
        elif b in _SCALAR_LEN:
            pos += _SCALAR_LEN[b]
        elif b in _SIZED:
            w = _SIZED[b]
            if pos + w > end:
                raise _malformed("truncated")
            pos += w + int.from_bytes(data[pos : pos + w], "big")
        elif b in _ARRAY_N or b in _MAP_N:
            is_map = b in _MAP_N
            w = _MAP_N[b] if is_map else _ARRAY_N[b]
            if pos + w > end:
                raise _malformed("truncated")
            n = int.from_bytes(data[pos : pos + w], "big")
            pos += w
        else:  # 0xC1 (never used), ext and fixext types
            raise _malformed("ext types and reserved bytes are not allowed")
        if pos > end:
            raise _malformed("truncated")
        if n >= 0:
            if n > (MAX_MAP_LEN if is_map else MAX_ARRAY_LEN):
                raise _malformed("container too long")
            if len(pending) > MAX_DEPTH:  # ``pending`` also holds the virtual root
                raise _malformed("nested too deeply")
            pending.append(2 * n if is_map else n)
    if pos != end:
        raise _malformed("trailing bytes")


# --------------------------------------------------------------------- schema

Check = Callable[[Any], Any]


class _FieldError(Exception):
    """Internal: a field failed its check (turned into a DecodeError with the name)."""


def _checker(tp: Any, meta: Any) -> Check:
    """Build a function that validates (and converts) one decoded field value."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        inner = _checker(args[0], meta)
        return lambda v: None if v is None else inner(v)
    if tp is bool:

        def check_bool(v: Any) -> bool:
            if type(v) is not bool:
                raise _FieldError("expected a boolean")
            return v

        return check_bool
    if tp is int:
        lo, hi = meta.get("lo", 0), meta.get("hi", 2**53 - 1)

        def check_int(v: Any) -> int:
            if type(v) is not int or not lo <= v <= hi:
                raise _FieldError(f"expected an integer in [{lo}, {hi}]")
            return v

        return check_int
    if tp is str:
        max_len, choices = meta.get("max", 0), meta.get("choices", ())

        def check_str(v: Any) -> str:
            if type(v) is not str or len(v) > max_len:
                raise _FieldError(f"expected a string of at most {max_len} characters")
            if choices and v not in choices:
                raise _FieldError(f"expected one of {', '.join(choices)}")
            return v

        return check_str
    if tp is bytes:
        max_bytes = meta.get("max", 0)

        def check_bytes(v: Any) -> bytes:
            if type(v) is not bytes or len(v) > max_bytes:
                raise _FieldError(f"expected binary of at most {max_bytes} bytes")
            return v

        return check_bytes
    if origin is tuple:
        elem = _checker(typing.get_args(tp)[0], {"max": MAX_ENVELOPE})
        max_items = meta.get("max", MAX_ARRAY_LEN)

        def check_tuple(v: Any) -> tuple[Any, ...]:
            if type(v) is not tuple or len(v) > max_items:
                raise _FieldError(f"expected an array of at most {max_items} items")
            return tuple(elem(x) for x in v)

        return check_tuple
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        fields = _schema(tp)

        def check_nested(v: Any) -> Any:
            if type(v) is not dict:
                raise _FieldError("expected a map")
            return tp(**_fields(fields, v))

        return check_nested
    raise TypeError(f"unsupported field type {tp!r}")  # pragma: no cover - catalogue bug


_SCHEMAS: dict[type[Any], list[tuple[str, Check, bool]]] = {}


def _schema(cls: type[Any]) -> list[tuple[str, Check, bool]]:
    """(name, checker, required) per field of a message class, built once."""
    cached = _SCHEMAS.get(cls)
    if cached is None:
        hints = typing.get_type_hints(cls)
        cached = [
            (
                f.name,
                _checker(hints[f.name], f.metadata),
                f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
            )
            for f in dataclasses.fields(cls)
        ]
        _SCHEMAS[cls] = cached
    return cached


def _fields(schema: list[tuple[str, Check, bool]], raw: dict[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in raw:
        if type(key) is not str:
            raise _FieldError("map keys must be strings")
    for name, check, required in schema:
        value = raw.get(name)
        if value is None:
            if required:
                raise _FieldError(f"missing field {name!r}")
            continue
        try:
            out[name] = check(value)
        except _FieldError as exc:
            raise _FieldError(f"field {name!r}: {exc}") from None
    return out


for _table in (REQUESTS, SERVER_MESSAGES, HANDSHAKE):
    for _cls in _table.values():
        _schema(_cls)


# ---------------------------------------------------------------------- decode


def _unpack(data: bytes) -> dict[Any, Any]:
    if len(data) > MAX_ENVELOPE:
        raise DecodeError("envelope too large", code=ErrorCode.TOO_LARGE)
    scan(data)
    try:
        obj = msgpack.unpackb(data, raw=False, use_list=False, strict_map_key=True)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError) as exc:
        # UnicodeDecodeError is a ValueError; the scan already ruled out the rest.
        raise _malformed(type(exc).__name__) from None
    if type(obj) is not dict:
        raise _malformed("an envelope must be a map")
    return obj


def _decode(data: bytes, tables: tuple[dict[str, type[Any]], ...]) -> Any:
    raw = _unpack(data)
    name = raw.get("t")
    rid = raw.get("id")
    rid = rid if type(rid) is int and 0 < rid <= 2**53 - 1 else 0
    cls = None
    for table in tables:
        cls = table.get(name) if type(name) is str else None
        if cls is not None:
            break
    if cls is None:
        err = DecodeError("unknown message type", code=ErrorCode.UNKNOWN_TYPE)
        err.request_id = rid
        raise err
    try:
        return cls(**_fields(_SCHEMAS[cls], raw))
    except _FieldError as exc:
        err = DecodeError(f"{name}: {exc}", code=ErrorCode.BAD_FIELD)
        err.request_id = rid
        raise err from None


def decode_request(data: bytes) -> Request:
    """Decode a client-to-relay envelope (relay side)."""
    msg: Request = _decode(data, (REQUESTS,))
    return msg


def decode_server(data: bytes) -> Message:
    """Decode a relay-to-client reply or event (client side)."""
    msg: Message = _decode(data, (SERVER_MESSAGES,))
    return msg


def decode_handshake(data: bytes) -> Message:
    """Decode a handshake payload: ``hello``, ``welcome``, or an ``error`` refusal."""
    msg: Message = _decode(data, (HANDSHAKE, {"error": Error}))
    return msg


def decode_any(data: bytes) -> Message:
    """Decode any envelope (tests and tools); direction is not checked."""
    msg: Message = _decode(data, (REQUESTS, SERVER_MESSAGES, HANDSHAKE))
    return msg


# ---------------------------------------------------------------------- encode


#: Per class: (field name, needs conversion) — built once, so encoding a flat message
#: is one attribute read per field instead of a walk over ``dataclasses.fields``.
_LAYOUTS: dict[type[Any], tuple[tuple[str, bool], ...]] = {}


def _layout(cls: type[Any]) -> tuple[tuple[str, bool], ...]:
    layout = _LAYOUTS.get(cls)
    if layout is None:
        hints = typing.get_type_hints(cls)
        layout = tuple(
            (f.name, hints[f.name] not in (int, str, bytes, bool, int | None, str | None,
                                           bytes | None, bool | None))
            for f in dataclasses.fields(cls)
        )  # fmt: skip
        _LAYOUTS[cls] = layout
    return layout


def _plain(value: Any) -> Any:
    """Nested dataclasses become maps and tuples become arrays; scalars pass through."""
    if type(value) is tuple:
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _fields_of(value, {})
    return value


def _fields_of(value: Any, out: dict[str, Any]) -> dict[str, Any]:
    for name, nested in _layout(type(value)):
        v = getattr(value, name)
        if v is not None:
            out[name] = _plain(v) if nested else v
    return out


def to_wire(msg: Message) -> dict[str, Any]:
    """The envelope map for ``msg`` (``t`` first, ``None`` fields omitted)."""
    return _fields_of(msg, {"t": msg.T})


_packer = msgpack.Packer(use_bin_type=True)


def encode(msg: Message) -> bytes:
    """Encode ``msg`` as a msgpack envelope."""
    data: bytes = _packer.pack(to_wire(msg))
    if len(data) > MAX_ENVELOPE:
        raise DecodeError("envelope too large", code=ErrorCode.TOO_LARGE)
    return data
