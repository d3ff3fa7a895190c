"""Tests for protocol.codes: room ids, tokens and spoken handoff codes."""

from __future__ import annotations

import itertools
import math
from importlib.resources import files

import pytest
from hypothesis import given
from hypothesis import strategies as st

from haven.protocol import codes
from haven.protocol.codes import (
    PGP_EVEN_WORDS,
    PGP_ODD_WORDS,
    ROOM_CODE_ALPHABET,
    ROOM_CODE_BITS,
    ROOM_CODE_LENGTH,
    SPOKEN_CODE_BITS,
    SPOKEN_CODE_MAX_ATTEMPTS,
    SPOKEN_CODE_TTL_S,
    is_canonical_room_code,
    new_room_code,
    new_spoken_code,
    new_token,
    parse_room_code,
    parse_spoken_code,
    room_code_from_bytes,
    room_code_to_bytes,
)
from haven.protocol.errors import CodeFormatError, ErrorCode

SAMPLE = [new_room_code() for _ in range(50)]


def _symbols(code: str) -> list[str]:
    return list(code.replace("-", ""))


def _group(symbols: list[str]) -> str:
    text = "".join(symbols)
    return "-".join(text[i : i + 4] for i in range(0, len(text), 4))


def _assert_bad_code(exc: CodeFormatError) -> None:
    assert exc.code is ErrorCode.BAD_CODE
    assert "mistyped" in exc.message


def _assert_not_echoed(exc: CodeFormatError, text: str) -> None:
    _assert_bad_code(exc)
    rendered = f"{exc} {exc.message} {exc!r}".lower()
    compact = "".join(c for c in text.lower() if c.isalnum())
    assert text.lower() not in rendered
    assert compact not in rendered
    # No run of 6+ input characters (a code fragment) appears either.
    for i in range(len(compact) - 5):
        assert compact[i : i + 6] not in rendered


# ----------------------------------------------------------------------------- room codes


def test_constants() -> None:
    assert ROOM_CODE_BITS == 128
    assert len(ROOM_CODE_ALPHABET) == 32 == len(set(ROOM_CODE_ALPHABET))
    assert not set("ilou") & set(ROOM_CODE_ALPHABET)
    assert ROOM_CODE_ALPHABET == "0123456789abcdefghjkmnpqrstvwxyz"


@pytest.mark.parametrize("code", SAMPLE[:10])
def test_room_code_shape_and_round_trip(code: str) -> None:
    assert len(code) == ROOM_CODE_LENGTH == 34
    groups = code.split("-")
    assert [len(g) for g in groups] == [4] * 7
    assert set(code) <= set(ROOM_CODE_ALPHABET) | {"-"}
    assert is_canonical_room_code(code)
    assert parse_room_code(code) == code
    raw = room_code_to_bytes(code)
    assert len(raw) == 16
    assert room_code_from_bytes(raw) == code


def test_room_code_bytes_extremes() -> None:
    for raw in (bytes(16), b"\xff" * 16, bytes(range(16))):
        code = room_code_from_bytes(raw)
        assert is_canonical_room_code(code)
        assert room_code_to_bytes(code) == raw
    with pytest.raises(ValueError, match="16 bytes"):
        room_code_from_bytes(bytes(15))


@pytest.mark.parametrize("code", SAMPLE[:10])
def test_room_code_case_and_separators(code: str) -> None:
    plain = code.replace("-", "")
    variants = [
        code.upper(),
        plain,
        plain.upper(),
        " ".join(code.split("-")),
        "-".join(plain[i : i + 5] for i in range(0, len(plain), 5)),
        f"  {code.swapcase()}\n",
        " - ".join(plain),
        code.replace("-", "\u2013"),
    ]
    for variant in variants:
        assert parse_room_code(variant) == code


def test_ambiguous_characters_are_normalised() -> None:
    code = room_code_from_bytes(bytes(16))  # all '0' except the check symbols
    assert code.startswith("0000-")
    assert parse_room_code(code.replace("0", "o")) == code
    assert parse_room_code(code.replace("0", "O")) == code
    # Find codes containing '1' and check 'i', 'I', 'l', 'L' read as '1'.
    ones = [c for c in SAMPLE if "1" in c] or [room_code_from_bytes(b"\x11" * 16)]
    for code in ones:
        for confusion in "iIlL":
            assert parse_room_code(code.replace("1", confusion)) == code
        assert not is_canonical_room_code(code.replace("1", "l"))


@pytest.mark.parametrize("code", SAMPLE)
def test_every_single_substitution_is_detected(code: str) -> None:
    symbols = _symbols(code)
    for position, original in enumerate(symbols):
        for replacement in ROOM_CODE_ALPHABET:
            if replacement == original:
                continue
            mutated = _group([*symbols[:position], replacement, *symbols[position + 1 :]])
            assert not is_canonical_room_code(mutated)
            with pytest.raises(CodeFormatError):
                parse_room_code(mutated)


@pytest.mark.parametrize("code", SAMPLE)
def test_every_adjacent_transposition_is_detected(code: str) -> None:
    symbols = _symbols(code)
    swapped_any = False
    for position in range(len(symbols) - 1):
        a, b = symbols[position], symbols[position + 1]
        if a == b:
            continue
        mutated = [*symbols]
        mutated[position], mutated[position + 1] = b, a
        swapped_any = True
        assert not is_canonical_room_code(_group(mutated))
        with pytest.raises(CodeFormatError):
            parse_room_code(_group(mutated))
    assert swapped_any


def test_checksum_exhaustive_over_symbol_pairs() -> None:
    """Every transposition of every pair of distinct symbols, at every position."""
    base = _symbols(room_code_from_bytes(bytes(16)))
    for position in range(len(base) - 1):
        for a in ROOM_CODE_ALPHABET:
            for b in ROOM_CODE_ALPHABET:
                if a == b:
                    continue
                first = [*base]
                first[position], first[position + 1] = a, b
                second = [*base]
                second[position], second[position + 1] = b, a
                assert not (
                    is_canonical_room_code(_group(first)) and is_canonical_room_code(_group(second))
                )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "-",
        "0000",
        SAMPLE[0] + "0",  # too long
        SAMPLE[0][:-1],  # too short
        SAMPLE[0][:-1] + "u",  # 'u' is not in the alphabet
        SAMPLE[0].replace("-", "_"),
        "x" * 1000,
        "8" + "0" * 27,  # first symbol above 7 does not fit in 128 bits
    ],
)
def test_room_code_rejects(text: str) -> None:
    with pytest.raises(CodeFormatError):
        parse_room_code(text)
    assert not is_canonical_room_code(text)


@pytest.mark.parametrize("code", SAMPLE[:10])
def test_room_code_error_does_not_echo_input(code: str) -> None:
    symbols = _symbols(code)
    symbols[5] = "z" if symbols[5] != "z" else "y"
    for bad in (_group(symbols), _group(symbols).upper(), code + "k", code[:-2] + "uu"):
        with pytest.raises(CodeFormatError) as info:
            parse_room_code(bad)
        _assert_not_echoed(info.value, bad)


def test_is_canonical_rejects_non_canonical_spellings() -> None:
    code = SAMPLE[0]
    for spelling in (code.upper(), code.replace("-", ""), f" {code}", code.replace("-", " ")):
        assert not is_canonical_room_code(spelling)
    for not_str in (None, 5, code.encode(), [code]):
        assert not is_canonical_room_code(not_str)


def test_ten_thousand_room_codes_are_distinct() -> None:
    generated = {new_room_code() for _ in range(10_000)}
    assert len(generated) == 10_000
    # The leading symbol carries the top 3 bits only.
    assert {c[0] for c in generated} <= set("01234567")


def test_new_token() -> None:
    assert len(new_token()) == 32
    assert len(new_token(16)) == 16
    assert new_token() != new_token()
    with pytest.raises(ValueError, match="at least 16"):
        new_token(15)


@given(st.text(max_size=200))
def test_parse_room_code_arbitrary_text(text: str) -> None:
    try:
        result = parse_room_code(text)
    except CodeFormatError as exc:
        _assert_bad_code(exc)
    else:
        assert is_canonical_room_code(result)
        assert parse_room_code(result) == result


@given(
    st.binary(min_size=16, max_size=16),
    st.lists(st.sampled_from(["", "-", " ", "  ", "\t"]), min_size=28, max_size=28),
    st.lists(st.booleans(), min_size=28, max_size=28),
)
def test_room_code_spellings_round_trip(
    raw: bytes, separators: list[str], upper: list[bool]
) -> None:
    code = room_code_from_bytes(raw)
    symbols = _symbols(code)
    typed = "".join(
        (s.upper() if up else s) + sep
        for s, sep, up in zip(symbols, separators, upper, strict=True)
    )
    assert parse_room_code(typed) == code
    assert room_code_to_bytes(typed) == raw


# --------------------------------------------------------------------------- spoken codes


def test_word_list_file() -> None:
    lines = files("protocol").joinpath("data").joinpath("pgp_words.txt").read_text("utf-8")
    rows = [line.split() for line in lines.splitlines()]
    assert len(rows) == 256
    assert all(len(row) == 2 for row in rows)
    even = [row[0] for row in rows]
    odd = [row[1] for row in rows]
    assert (even[0], odd[0]) == ("aardvark", "adroitness")
    assert (even[-1], odd[-1]) == ("Zulu", "Yucatan")
    assert len({w.lower() for w in even + odd}) == 512
    assert [w.lower() for w in even] == sorted(w.lower() for w in even)
    # The original list is alphabetical except that "applicant" precedes "Apollo".
    out_of_order = [(a, b) for a, b in itertools.pairwise(odd) if a.lower() > b.lower()]
    assert out_of_order == [("applicant", "Apollo")]


def test_word_lists_loaded() -> None:
    assert len(PGP_EVEN_WORDS) == len(set(PGP_EVEN_WORDS)) == 256
    assert len(PGP_ODD_WORDS) == len(set(PGP_ODD_WORDS)) == 256
    assert not set(PGP_EVEN_WORDS) & set(PGP_ODD_WORDS)
    assert all(w == w.lower() and w.isalpha() for w in PGP_EVEN_WORDS + PGP_ODD_WORDS)


def test_spoken_code_entropy() -> None:
    bits = math.log2(99) + 2 * math.log2(len(PGP_EVEN_WORDS)) + math.log2(len(PGP_ODD_WORDS))
    assert bits >= 24
    assert pytest.approx(bits) == SPOKEN_CODE_BITS
    assert 30.6 < SPOKEN_CODE_BITS < 30.7
    assert codes.SPOKEN_CODE_SPACE == 99 * 256**3
    assert SPOKEN_CODE_TTL_S == 300
    assert SPOKEN_CODE_MAX_ATTEMPTS == 5
    assert SPOKEN_CODE_MAX_ATTEMPTS / 2**SPOKEN_CODE_BITS < 1e-8


def test_spoken_code_shape_and_round_trip() -> None:
    for _ in range(200):
        code = new_spoken_code()
        number, first, second, third = code.split("-")
        assert 1 <= int(number) <= 99
        assert str(int(number)) == number
        assert first in PGP_EVEN_WORDS
        assert second in PGP_ODD_WORDS
        assert third in PGP_EVEN_WORDS
        assert parse_spoken_code(code) == code


def test_spoken_code_case_and_separators() -> None:
    canonical = "42-bison-molecule-tiger"
    for spelling in (
        "42 bison molecule tiger",
        "42-Bison-MOLECULE-tiger",
        "  42 - bison  molecule-tiger ",
        "42\tbison\nmolecule tiger",
        "42--bison--molecule--tiger",
    ):
        assert parse_spoken_code(spelling) == canonical
    assert parse_spoken_code("07 Zulu yucatan aardvark") == "7-zulu-yucatan-aardvark"
    assert parse_spoken_code("1-aardvark-adroitness-aardvark") == "1-aardvark-adroitness-aardvark"
    assert parse_spoken_code("99 zulu yucatan zulu") == "99-zulu-yucatan-zulu"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "42",
        "42 bison molecule",
        "42 bison molecule tiger tiger",
        "0 bison molecule tiger",
        "00 bison molecule tiger",
        "100 bison molecule tiger",
        "007 bison molecule tiger",
        "4x bison molecule tiger",
        "\u0664\u0662 bison molecule tiger",  # Arabic-Indic digits
        "bison 42 molecule tiger",
        "42 molecule bison tiger",  # odd word in an even slot (adjacent swap)
        "42 bison tiger molecule",
        "42 bisom molecule tiger",
        "42 bison molecule tigers",
        "42 bison molecule " + "tiger " * 40,
    ],
)
def test_spoken_code_rejects(text: str) -> None:
    with pytest.raises(CodeFormatError) as info:
        parse_spoken_code(text)
    assert info.value.code is ErrorCode.BAD_CODE
    assert "mistyped" in info.value.message


def test_spoken_code_error_does_not_echo_input() -> None:
    for bad in ("42 bisonx molecule tiger", "42 bison moleculo tiger", "77 unknownword a b"):
        with pytest.raises(CodeFormatError) as info:
            parse_spoken_code(bad)
        rendered = f"{info.value} {info.value.message}".lower()
        for part in bad.split():
            if len(part) > 2:
                assert part not in rendered


@given(st.text(max_size=200))
def test_parse_spoken_code_arbitrary_text(text: str) -> None:
    try:
        result = parse_spoken_code(text)
    except CodeFormatError as exc:
        _assert_bad_code(exc)
    else:
        assert parse_spoken_code(result) == result
        assert result == result.lower()


@given(
    st.integers(1, 99),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.lists(st.sampled_from([" ", "-", " - ", "  ", "\t"]), min_size=3, max_size=3),
    st.booleans(),
)
def test_spoken_code_spellings_round_trip(
    number: int, a: int, b: int, c: int, seps: list[str], upper: bool
) -> None:
    words = [PGP_EVEN_WORDS[a], PGP_ODD_WORDS[b], PGP_EVEN_WORDS[c]]
    canonical = "-".join([str(number), *words])
    typed = str(number) + "".join(s + w for s, w in zip(seps, words, strict=True))
    assert parse_spoken_code(typed.upper() if upper else typed) == canonical
