"""The flows' configuration: TOML tables outside ``[relay]``, checked at start-up.

``relay.config.load`` keeps every top-level table other than ``[relay]`` in
``Config.extra``; this module turns the ones the flows own into typed, immutable
settings and refuses anything that cannot work with a ``ConfigError`` naming the entry:

* ``[[issuers]]`` — trusted token issuers (``name``, ``public_key``, optional ``roles``,
  ``revoked`` token ids);
* ``[[queues]]`` — intake queues (``name``, ``max_length``, ``retry_after``);
* ``[[rooms]]`` — scheduled group rooms (``name``, ``topic``, ``days``, ``start``,
  ``end``, ``timezone``, ``listed``, ``premoderated``, ``rules``, ``code``,
  ``max_members``);
* ``[moderation]`` — pre-moderation and crisis bounds.

See ``docs/examples/haven.toml`` for a complete example.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from haven.protocol import codes
from haven.protocol import messages as m
from haven.protocol.errors import CodeFormatError

from ..config import Config, ConfigError
from ..tokens import ROLES, Issuer, parse_public_key

NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True, slots=True)
class QueueDef:
    """One intake queue."""

    name: str
    max_length: int = 100  #: visitors waiting (normal lane); the priority lane too
    retry_after: int = 60  #: seconds suggested in ``QUEUE_FULL``


@dataclass(frozen=True, slots=True)
class RoomDef:
    """One scheduled group room (its weekly window and what the room is like)."""

    name: str
    topic: str
    days: tuple[int, ...]  #: weekdays, Monday = 0
    start: dt.time
    end: dt.time  #: at or before ``start`` means the window ends the next day
    timezone: str
    listed: bool = True  #: in the directory (open); False = link-only
    premoderated: bool = False
    rules: str | None = None
    code: str | None = None  #: fixed room code; None = random at start-up
    max_members: int | None = None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True)
class ModerationDef:
    """Bounds for pre-moderation and crisis flags."""

    max_pending: int = 50  #: pending items per room
    max_pending_per_author: int = 5  #: pending items per seat
    pending_ttl: float = 600.0  #: seconds a pending item waits before it expires
    crisis_interval: float = 30.0  #: at most one crisis alert per seat per interval


@dataclass(frozen=True, slots=True)
class FlowSettings:
    """Everything the flows read from the config file."""

    issuers: Mapping[bytes, Issuer] = field(default_factory=dict)  #: key id -> issuer
    queues: Mapping[str, QueueDef] = field(default_factory=dict)
    rooms: tuple[RoomDef, ...] = ()
    moderation: ModerationDef = field(default_factory=ModerationDef)


# ---------------------------------------------------------------------- helpers


def _entry(section: str, index: int, raw: Mapping[str, Any]) -> str:
    name = raw.get("name")
    label = f" ({name!r})" if isinstance(name, str) else ""
    return f"[[{section}]] entry {index + 1}{label}"


def _table_list(extra: Mapping[str, Any], section: str) -> list[Mapping[str, Any]]:
    value = extra.get(section, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"[[{section}]] must be an array of tables")
    return value


def _check_keys(where: str, raw: Mapping[str, Any], allowed: set[str], required: set[str]) -> None:
    unknown = set(raw) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    missing = required - set(raw)
    if missing:
        raise ConfigError(f"{where}: missing {', '.join(sorted(missing))}")


def _name(where: str, raw: Mapping[str, Any], seen: set[str]) -> str:
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ConfigError(f"{where}: 'name' must be 1-64 of a-z, 0-9, '-', '_'")
    if name in seen:
        raise ConfigError(f"{where}: duplicate name {name!r}")
    seen.add(name)
    return name


def _int(where: str, raw: Mapping[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ConfigError(f"{where}: {key!r} must be an integer in {lo}..{hi}")
    return value


def _bool(where: str, raw: Mapping[str, Any], key: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: {key!r} must be true or false")
    return value


def _text(where: str, raw: Mapping[str, Any], key: str, max_len: int) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= max_len:
        raise ConfigError(f"{where}: {key!r} must be text of 1..{max_len} characters")
    return value


def _time(where: str, raw: Mapping[str, Any], key: str) -> dt.time:
    value = raw.get(key)
    if isinstance(value, dt.time):
        return value.replace(tzinfo=None)
    if isinstance(value, str):
        try:
            return dt.time.fromisoformat(value)
        except ValueError:
            pass
    raise ConfigError(f"{where}: {key!r} must be a time of day like \"13:00\"")


# ---------------------------------------------------------------------- sections


def _issuers(extra: Mapping[str, Any]) -> dict[bytes, Issuer]:
    out: dict[bytes, Issuer] = {}
    seen: set[str] = set()
    for i, raw in enumerate(_table_list(extra, "issuers")):
        where = _entry("issuers", i, raw)
        _check_keys(where, raw, {"name", "public_key", "roles", "revoked"}, {"name", "public_key"})
        name = _name(where, raw, seen)
        try:
            key = parse_public_key(str(raw["public_key"]))
        except ValueError as exc:
            raise ConfigError(f"{where}: 'public_key': {exc}") from None
        roles = raw.get("roles", list(ROLES))
        if not isinstance(roles, list) or not roles or any(r not in ROLES for r in roles):
            raise ConfigError(f"{where}: 'roles' must list some of {', '.join(ROLES)}")
        revoked_raw = raw.get("revoked", [])
        if not isinstance(revoked_raw, list):
            raise ConfigError(f"{where}: 'revoked' must be a list of token ids")
        revoked: set[bytes] = set()
        for token_id in revoked_raw:
            try:
                value = bytes.fromhex(token_id) if isinstance(token_id, str) else b""
            except ValueError:
                value = b""
            if len(value) != 16:
                raise ConfigError(f"{where}: 'revoked' entries are 32 hex digits (token ids)")
            revoked.add(value)
        issuer = Issuer(name, key, tuple(roles), frozenset(revoked))
        if issuer.kid in out:
            raise ConfigError(f"{where}: the same public key is listed twice")
        out[issuer.kid] = issuer
    return out


def _queues(extra: Mapping[str, Any]) -> dict[str, QueueDef]:
    out: dict[str, QueueDef] = {}
    seen: set[str] = set()
    for i, raw in enumerate(_table_list(extra, "queues")):
        where = _entry("queues", i, raw)
        _check_keys(where, raw, {"name", "max_length", "retry_after"}, {"name"})
        name = _name(where, raw, seen)
        out[name] = QueueDef(
            name=name,
            max_length=_int(where, raw, "max_length", 100, 1, 100_000),
            retry_after=_int(where, raw, "retry_after", 60, 1, 86400),
        )
    return out


def _days(where: str, raw: Mapping[str, Any]) -> tuple[int, ...]:
    value = raw.get("days")
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names:
        raise ConfigError(f"{where}: 'days' must list weekdays such as [\"sunday\"]")
    days: set[int] = set()
    for day in names:
        key = str(day).lower()
        matches = [i for i, w in enumerate(WEEKDAYS) if len(key) >= 3 and w.startswith(key)]
        if len(matches) != 1:
            raise ConfigError(f"{where}: {day!r} is not a weekday")
        days.add(matches[0])
    return tuple(sorted(days))


def _rooms(extra: Mapping[str, Any], config: Config) -> tuple[RoomDef, ...]:
    out: list[RoomDef] = []
    seen: set[str] = set()
    codes_seen: set[str] = set()
    allowed = {
        "name", "topic", "days", "start", "end", "timezone", "listed", "premoderated",
        "rules", "code", "max_members",
    }  # fmt: skip
    for i, raw in enumerate(_table_list(extra, "rooms")):
        where = _entry("rooms", i, raw)
        _check_keys(where, raw, allowed, {"name", "topic", "days", "start", "end", "timezone"})
        name = _name(where, raw, seen)
        topic = _text(where, raw, "topic", m.MAX_TOPIC_LEN)
        assert topic is not None
        tz_name = raw["timezone"]
        try:
            ZoneInfo(str(tz_name))
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"{where}: unknown time zone {tz_name!r}") from None
        start, end = _time(where, raw, "start"), _time(where, raw, "end")
        listed = _bool(where, raw, "listed", True)
        code = raw.get("code")
        if code is not None:
            try:
                code = codes.parse_room_code(str(code))
            except CodeFormatError:
                raise ConfigError(f"{where}: 'code' is not a valid room code") from None
            if code in codes_seen:
                raise ConfigError(f"{where}: 'code' is used by another room")
            codes_seen.add(code)
        elif not listed:
            raise ConfigError(
                f"{where}: a link-only room needs a fixed 'code' (haven token room-code)"
            )
        max_members = raw.get("max_members")
        if max_members is not None:
            max_members = _int(where, raw, "max_members", 0, 2, config.max_members_limit)
        out.append(
            RoomDef(
                name=name,
                topic=topic,
                days=_days(where, raw),
                start=start,
                end=end,
                timezone=str(tz_name),
                listed=listed,
                premoderated=_bool(where, raw, "premoderated", False),
                rules=_text(where, raw, "rules", m.MAX_RULES_LEN),
                code=code,
                max_members=max_members,
            )
        )
    return tuple(out)


def _moderation(extra: Mapping[str, Any]) -> ModerationDef:
    raw = extra.get("moderation", {})
    if not isinstance(raw, dict):
        raise ConfigError("[moderation] must be a table")
    where = "[moderation]"
    allowed = {"max_pending", "max_pending_per_author", "pending_ttl", "crisis_interval"}
    _check_keys(where, raw, allowed, set())
    max_pending = _int(where, raw, "max_pending", 50, 1, 10_000)
    return ModerationDef(
        max_pending=max_pending,
        max_pending_per_author=_int(where, raw, "max_pending_per_author", 5, 1, max_pending),
        pending_ttl=float(_int(where, raw, "pending_ttl", 600, 1, 86400)),
        crisis_interval=float(_int(where, raw, "crisis_interval", 30, 0, 3600)),
    )


def parse(config: Config) -> FlowSettings:
    """Read and check the flows' sections of ``config.extra``."""
    extra = config.extra
    return FlowSettings(
        issuers=_issuers(extra),
        queues=_queues(extra),
        rooms=_rooms(extra, config),
        moderation=_moderation(extra),
    )


__all__ = [
    "FlowSettings",
    "ModerationDef",
    "QueueDef",
    "RoomDef",
    "parse",
]
