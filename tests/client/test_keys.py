"""The relay key parser accepts exactly the relay's spellings of a 32-byte key."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from haven.client.keys import RelayKeyError, format_relay_key, parse_relay_key

RAW = bytes(range(32))
TEXT = base64.urlsafe_b64encode(RAW).rstrip(b"=").decode()


def test_text_form_is_43_characters() -> None:
    assert len(TEXT) == 43
    assert parse_relay_key(TEXT) == RAW


@given(st.binary(min_size=32, max_size=32))
def test_round_trip(raw: bytes) -> None:
    text = format_relay_key(raw)
    assert parse_relay_key(text) == raw
    assert parse_relay_key(raw) == raw
    assert parse_relay_key(bytearray(raw)) == raw


@pytest.mark.parametrize("spelling", [TEXT + "=", f"  {TEXT}\n"])
def test_tolerated_spellings(spelling: str) -> None:
    assert parse_relay_key(spelling) == RAW


@pytest.mark.parametrize(
    "bad",
    [
        "",
        TEXT[:-1],  # 42 characters
        TEXT + "A",  # 44 characters
        TEXT[:-1] + "+",  # standard base64 alphabet, not url-safe
        TEXT[:-1] + "/",
        TEXT[:10] + " " + TEXT[11:],
        base64.b64encode(b"\xfb\xff" * 16).decode(),  # standard alphabet: + and /
    ],
)
def test_bad_text(bad: str) -> None:
    with pytest.raises(RelayKeyError):
        parse_relay_key(bad)


def test_non_canonical_last_character() -> None:
    # The last character carries 2 unused bits: a nonzero one is another spelling.
    last = TEXT[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = alphabet[alphabet.index(last) ^ 1]
    with pytest.raises(RelayKeyError, match="canonical"):
        parse_relay_key(TEXT[:-1] + twin)


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_bad_raw_length(size: int) -> None:
    with pytest.raises(RelayKeyError, match="32 bytes"):
        parse_relay_key(bytes(size))


def test_wrong_type() -> None:
    with pytest.raises(TypeError):
        parse_relay_key(42)  # type: ignore[arg-type]
