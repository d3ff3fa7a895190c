"""The normative documents cover the whole code: every message, error and setting.

* docs/protocol.md has a heading for every registered message (and nested map), with a
  field-table row for each of its fields, whose type column states the field's real
  constraint, and a row in the error table for every ``ErrorCode`` with its number.
* docs/operations.md has a row for every scalar ``Config`` setting with its real default.

The checks read the catalogue from the code, so a new message, field, error code or
setting that is not documented fails the suite.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any

import pytest

from haven.protocol import messages as m
from haven.protocol.errors import ErrorCode
from haven.relay.config import Config, scalar_fields

DOCS = Path(__file__).resolve().parents[2] / "docs"
PROTOCOL = (DOCS / "protocol.md").read_text("utf-8")
OPERATIONS = (DOCS / "operations.md").read_text("utf-8")

MESSAGES: dict[str, type[Any]] = {**m.HANDSHAKE, **m.REQUESTS, **m.SERVER_MESSAGES}
NESTED: dict[str, type[Any]] = {
    cls.__name__: cls for cls in (m.Limits, m.Challenge, m.Seat, m.RoomInfo, m.PendingItem)
}


def section(doc: str, name: str) -> str:
    """The text under the heading that starts with `` `name` `` up to the next heading."""
    pattern = re.compile(rf"^#{{2,6}} `{re.escape(name)}`(?: |$)", re.M)
    found = list(pattern.finditer(doc))
    assert len(found) == 1, f"expected one heading for `{name}`, found {len(found)}"
    rest = doc[found[0].end() :]
    following = re.search(r"^#", rest, re.M)
    return rest[: following.start()] if following else rest


def field_rows(text: str) -> dict[str, list[str]]:
    """``| `name` | type | required | ...`` rows of the field table, by field name."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        match = re.match(r"^\| `([a-z_]+)` \|(.*)\|\s*$", line)
        if match:
            rows[match[1]] = [cell.strip() for cell in match[2].split("|")]
    return rows


def expected_type(tp: Any, meta: typing.Mapping[str, Any]) -> str:
    """How a field's type and constraint are written in the tables (section 5)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return expected_type(inner, meta)
    if tp is bool:
        return "bool"
    if tp is int:
        lo, hi = meta.get("lo", 0), meta.get("hi", m.MAX_INT)
        return f"int ≥ {lo}" if hi == m.MAX_INT else f"int {lo}..{hi}"
    if tp is str:
        text = f"str ≤ {meta['max']}"
        if meta.get("choices"):
            text += ": " + ", ".join(f'`"{c}"`' for c in meta["choices"])
        return text
    if tp is bytes:
        return f"bin ≤ {meta['max']}"
    if typing.get_origin(tp) is tuple:
        elem: type[Any] = typing.get_args(tp)[0]
        name = f"`{elem.__name__}`" if dataclasses.is_dataclass(elem) else elem.__name__
        return f"array ≤ {meta['max']} of {name}"
    assert isinstance(tp, type), tp
    assert dataclasses.is_dataclass(tp), tp
    return f"map `{tp.__name__}`"


def expected_required(f: dataclasses.Field[Any]) -> str:
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
        return "yes"
    words: dict[object, str] = {
        None: "no",
        False: "no (false)",
        True: "no (true)",
        (): "no (empty)",
    }
    return words[f.default]


@pytest.mark.parametrize("name", sorted({**MESSAGES, **NESTED}))
def test_every_message_is_documented_with_its_fields(name: str) -> None:
    cls = MESSAGES.get(name) or NESTED[name]
    rows = field_rows(section(PROTOCOL, name))
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    assert fields, name
    for f in fields:
        assert f.name in rows, f"`{name}`: field `{f.name}` missing from its table"
        cells = rows[f.name]
        assert cells[0] == expected_type(hints[f.name], f.metadata), (
            f"`{name}`.`{f.name}`: documented type {cells[0]!r} is not the code's"
        )
        assert cells[1] == expected_required(f), f"`{name}`.`{f.name}`: required column"
    extra = set(rows) - {f.name for f in fields}
    assert not extra, f"`{name}` documents fields the code does not have: {sorted(extra)}"


def test_catalogue_is_not_empty() -> None:
    # Guard against a registry that silently stopped registering.
    assert len(m.REQUESTS) >= 20
    assert len(m.SERVER_MESSAGES) >= 20
    assert set(m.HANDSHAKE) == {"hello", "welcome"}


def error_rows() -> dict[int, list[str]]:
    rows: dict[int, list[str]] = {}
    for line in PROTOCOL.splitlines():
        match = re.match(r"^\| (\d{3}) \| `([A-Z_]+)` \|(.*)\|\s*$", line)
        if match:
            assert int(match[1]) not in rows, f"error {match[1]} listed twice"
            rows[int(match[1])] = [match[2], *(c.strip() for c in match[3].split("|"))]
    return rows


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.name)
def test_every_error_code_is_in_the_error_table(code: ErrorCode) -> None:
    rows = error_rows()
    assert int(code) in rows, f"{code.name} ({int(code)}) missing from the error table"
    name, meaning, connection = rows[int(code)]
    assert name == code.name
    assert meaning, f"{code.name}: no meaning"
    assert connection.startswith(("open", "closed")), f"{code.name}: say open or closed"


def test_error_table_has_no_unknown_codes() -> None:
    assert set(error_rows()) == {int(c) for c in ErrorCode}


def format_default(value: Any) -> str:
    """How operations.md writes a default: plain numbers, ``true``/``false``, ``none``."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def setting_rows() -> dict[str, list[str]]:
    """Rows of the settings table: the ``## Settings`` section of operations.md."""
    match = re.search(r"^## Settings$(.*?)(?=^## )", OPERATIONS, re.M | re.S)
    assert match, "docs/operations.md needs a '## Settings' section"
    rows: dict[str, list[str]] = {}
    for line in match[1].splitlines():
        match = re.match(r"^\| `([a-z_]+)` \|(.*)\|\s*$", line)
        if match:
            rows[match[1]] = [cell.strip() for cell in match[2].split("|")]
    return rows


@pytest.mark.parametrize("name", [f.name for f in scalar_fields()])
def test_every_setting_is_in_operations_with_its_default(name: str) -> None:
    rows = setting_rows()
    assert name in rows, f"setting {name!r} missing from docs/operations.md"
    default = getattr(Config(), name)
    assert rows[name][0] == f"`{format_default(default)}`", (
        f"{name}: documented default {rows[name][0]!r}, code has {format_default(default)!r}"
    )
    assert all(rows[name][1:3]), f"{name}: unit and what it bounds must be filled in"


def test_operations_documents_no_unknown_setting() -> None:
    known = {f.name for f in scalar_fields()}
    assert set(setting_rows()) <= known, "operations.md lists settings the code lacks"


def test_placeholders_for_merged_sections_exist() -> None:
    assert re.search(r"^## Deployment$", OPERATIONS, re.M)
    assert re.search(r"^## Flows configuration$", OPERATIONS, re.M)
    threat = (DOCS / "threat-model.md").read_text("utf-8")
    assert re.search(r"^## CPython memory limits$", threat, re.M)
    assert "docs/flows.md" in PROTOCOL


def test_command_line_help_says_what_the_settings_table_says() -> None:
    from haven.relay.settings_help import SETTINGS_HELP, plain

    rows = setting_rows()
    assert set(SETTINGS_HELP) == set(rows) == {f.name for f in scalar_fields()}
    for name, cells in rows.items():
        assert SETTINGS_HELP[name] == (plain(cells[1]), plain(cells[2])), name
