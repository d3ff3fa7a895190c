"""Human-facing codes: room / link / session ids, resume tokens and spoken handoff codes.

Room, link and session ids
==========================

An id is ``ROOM_CODE_BITS`` (128) random bits from :mod:`secrets`, written in a
Crockford-style base-32 alphabet without the ambiguous letters i, l, o and u::

    0123456789abcdefghjkmnpqrstvwxyz

The 128 bits are 26 symbols (the first symbol carries only 3 bits, so it is 0-7),
followed by two check symbols, 28 symbols in all, shown in seven groups of four::

    59wg-2865-qxpv-r958-qk9x-mm18-jpaf

On input, case is ignored, '-' and whitespace are ignored, and the common confusions
'o' -> '0' and 'i' / 'l' -> '1' are corrected before the checksum is verified.

Checksum (ISO 7064 pure-system style, radix 32, modulus 1021): the 28 symbols read as
one base-32 integer must be divisible by the prime 1021. See ``_check_value`` for why
this detects every single-symbol substitution and every adjacent transposition.

Spoken one-time codes
=====================

For handing a conversation over by phone, a spoken code is a number and three words
from the PGP word list (``protocol/data/pgp_words.txt``)::

    <n>-<even word>-<odd word>-<even word>      e.g. ``42-bison-molecule-tiger``

``n`` is 1..99 and each word is one of 256, so there are ``99 * 256**3`` codes:
``log2(99) + 24 ≈ 30.63`` bits (``SPOKEN_CODE_BITS``). As in PGP, the even list holds
two-syllable words and the odd list three-syllable words, and the two lists are
disjoint, so swapping two adjacent words is always noticed.

A spoken code is short on purpose, so the relay bounds guessing: it lives for
``SPOKEN_CODE_TTL_S`` (300 s) and is invalidated after ``SPOKEN_CODE_MAX_ATTEMPTS``
(5) wrong attempts counted across all callers. A guesser therefore succeeds with
probability at most ``5 / (99 * 256**3) = 5 / 2**30.63 ≈ 3.0e-9`` per issued code.

Errors
======

Malformed codes raise :class:`~protocol.errors.CodeFormatError` (``BAD_CODE``). Its
message says the code is mistyped and never repeats any part of the input.
"""

from __future__ import annotations

import math
import re
import secrets
from importlib.resources import files
from typing import Final

from haven.protocol.errors import CodeFormatError

__all__ = [
    "PGP_EVEN_WORDS",
    "PGP_ODD_WORDS",
    "ROOM_CODE_ALPHABET",
    "ROOM_CODE_BITS",
    "ROOM_CODE_LENGTH",
    "SPOKEN_CODE_BITS",
    "SPOKEN_CODE_MAX_ATTEMPTS",
    "SPOKEN_CODE_MAX_NUMBER",
    "SPOKEN_CODE_SPACE",
    "SPOKEN_CODE_TTL_S",
    "is_canonical_room_code",
    "new_room_code",
    "new_spoken_code",
    "new_token",
    "parse_room_code",
    "parse_spoken_code",
    "room_code_from_bytes",
    "room_code_to_bytes",
]

# --------------------------------------------------------------------------------------
# Room / link / session ids
# --------------------------------------------------------------------------------------

#: Random bits in a room, link or session id.
ROOM_CODE_BITS: Final = 128
#: The 32 symbols, in value order: digits, then letters without i, l, o, u.
ROOM_CODE_ALPHABET: Final = "0123456789abcdefghjkmnpqrstvwxyz"

_RADIX: Final = 32
_BITS_PER_SYMBOL: Final = 5
_DATA_SYMBOLS: Final = -(-ROOM_CODE_BITS // _BITS_PER_SYMBOL)  # 26
_CHECK_SYMBOLS: Final = 2
_SYMBOLS: Final = _DATA_SYMBOLS + _CHECK_SYMBOLS  # 28
_CHECK_MODULUS: Final = 1021  # prime, 31 < 1021 <= 32**2, and 32 % 1021 != 1
_GROUP: Final = 4
#: Length of a canonical code: 28 symbols in groups of four joined by '-'.
ROOM_CODE_LENGTH: Final = _SYMBOLS + _SYMBOLS // _GROUP - 1  # 34

#: Longest text ``parse_room_code`` looks at; anything longer is refused outright.
_MAX_ROOM_INPUT: Final = 128

_SEPARATORS: Final = frozenset("-\u2010\u2011\u2012\u2013\u2014\u2212")


def _build_decode_table() -> dict[str, int]:
    table: dict[str, int] = {}
    for value, symbol in enumerate(ROOM_CODE_ALPHABET):
        table[symbol] = value
        table[symbol.upper()] = value
    for confused, meant in (("o", "0"), ("i", "1"), ("l", "1")):
        table[confused] = table[confused.upper()] = ROOM_CODE_ALPHABET.index(meant)
    return table


_DECODE: Final = _build_decode_table()

_CANONICAL_RE: Final = re.compile(
    rf"[{ROOM_CODE_ALPHABET}]{{{_GROUP}}}(?:-[{ROOM_CODE_ALPHABET}]{{{_GROUP}}})"
    rf"{{{_SYMBOLS // _GROUP - 1}}}"
)


def _check_value(data: int) -> int:
    """Return the 10-bit check value ``v`` (0..1020) for the 128-bit integer ``data``.

    ``v`` is chosen so that the whole code, read as the base-32 integer
    ``N = data * 32**2 + v``, satisfies ``N ≡ 0 (mod p)`` with ``p = 1021`` (prime).
    Two base-32 check symbols can hold any residue because ``32**2 = 1024 >= p``.

    Write ``N = Σ s_k · 32**(27-k)`` over the 28 symbols ``s_k`` (0..31), check symbols
    included. Then, working modulo the prime ``p``:

    * a single substitution ``s_k -> s_k + d`` (``0 < |d| <= 31 < p``) changes ``N`` by
      ``d · 32**(27-k)``; ``p`` divides neither ``d`` nor ``32``, so ``N`` stops being
      ``≡ 0`` and the substitution is detected, wherever it is (check symbols too);
    * swapping adjacent symbols ``a, b`` (``a != b``) at positions ``k, k+1`` changes
      ``N`` by ``(b - a) · 32**(26-k) · (32 - 1)``; ``p`` divides none of ``b - a``,
      ``32`` or ``31``, so every adjacent transposition is detected as well.

    The same argument (factors ``32**2 - 1 = 1023 ≡ 2`` and ``32 + 1 = 33``) shows that
    jump transpositions (``abc -> cba``) and twin errors (``aa -> bb``) are detected; a
    random corruption passes with probability about ``1/1021``. Wrong lengths are
    refused before the checksum is computed.
    """
    return (-data * _RADIX**_CHECK_SYMBOLS) % _CHECK_MODULUS


def _format(symbols: list[int]) -> str:
    text = "".join(ROOM_CODE_ALPHABET[s] for s in symbols)
    return "-".join(text[i : i + _GROUP] for i in range(0, len(text), _GROUP))


def _encode(data: int) -> str:
    value = data * _RADIX**_CHECK_SYMBOLS + _check_value(data)
    symbols = [0] * _SYMBOLS
    for k in range(_SYMBOLS - 1, -1, -1):
        value, symbols[k] = divmod(value, _RADIX)
    return _format(symbols)


def _mistyped(detail: str) -> CodeFormatError:
    return CodeFormatError(f"that code is mistyped ({detail}); check it and retry")


def room_code_from_bytes(raw: bytes) -> str:
    """Return the canonical room code for the 16-byte id ``raw``."""
    if len(raw) != ROOM_CODE_BITS // 8:
        raise ValueError(f"a room id is {ROOM_CODE_BITS // 8} bytes")
    return _encode(int.from_bytes(raw, "big"))


def new_room_code() -> str:
    """Return a fresh random room, link or session id in canonical form (128 bits)."""
    return _encode(secrets.randbits(ROOM_CODE_BITS))


def _parse_room_value(text: str) -> int:
    """Return the 128-bit value of a room code, or raise ``CodeFormatError``."""
    if len(text) > _MAX_ROOM_INPUT:
        raise _mistyped("too long")
    symbols: list[int] = []
    for char in text:
        value = _DECODE.get(char)
        if value is not None:
            symbols.append(value)
        elif not (char in _SEPARATORS or char.isspace()):
            raise _mistyped("a character is not part of any code")
    if len(symbols) != _SYMBOLS:
        raise _mistyped(f"a code has {_SYMBOLS} letters and digits")
    number = 0
    for s in symbols:
        number = number * _RADIX + s
    data, check = divmod(number, _RADIX**_CHECK_SYMBOLS)
    if data >> ROOM_CODE_BITS or check != _check_value(data):
        raise _mistyped("checksum failed")
    return data


def parse_room_code(text: str) -> str:
    """Return the canonical form of a room, link or session id typed by a person.

    Case, '-' and whitespace are ignored and 'o', 'i', 'l' are read as '0', '1', '1'.
    Raises ``CodeFormatError`` (``BAD_CODE``) if the code is malformed or its checksum
    fails; the message never contains the input.
    """
    return _encode(_parse_room_value(text))


def room_code_to_bytes(text: str) -> bytes:
    """Return the 16-byte id behind a room code (any accepted spelling)."""
    return _parse_room_value(text).to_bytes(ROOM_CODE_BITS // 8, "big")


def is_canonical_room_code(s: object) -> bool:
    """Return True iff ``s`` is a ``str`` exactly as ``parse_room_code`` would return it."""
    if not isinstance(s, str) or len(s) != ROOM_CODE_LENGTH or not _CANONICAL_RE.fullmatch(s):
        return False
    number = 0
    for char in s:
        if char != "-":
            number = number * _RADIX + _DECODE[char]
    data, check = divmod(number, _RADIX**_CHECK_SYMBOLS)
    return not data >> ROOM_CODE_BITS and check == _check_value(data)


def new_token(nbytes: int = 32) -> bytes:
    """Return ``nbytes`` random bytes from ``secrets`` (e.g. a resume token).

    Raises ``ValueError`` for fewer than 16 bytes (128 bits), the least Haven uses.
    """
    if nbytes < ROOM_CODE_BITS // 8:
        raise ValueError(f"a token needs at least {ROOM_CODE_BITS // 8} bytes")
    return secrets.token_bytes(nbytes)


# --------------------------------------------------------------------------------------
# Spoken one-time codes
# --------------------------------------------------------------------------------------

#: Seconds a spoken handoff code stays valid at the relay.
SPOKEN_CODE_TTL_S: Final = 300
#: Wrong attempts (across all callers) after which the relay invalidates a spoken code.
SPOKEN_CODE_MAX_ATTEMPTS: Final = 5
#: The number part of a spoken code is 1..SPOKEN_CODE_MAX_NUMBER.
SPOKEN_CODE_MAX_NUMBER: Final = 99

_WORD_LIST_SIZE: Final = 256
_MAX_SPOKEN_INPUT: Final = 128


def _load_words() -> tuple[tuple[str, ...], tuple[str, ...]]:
    text = (files(__package__ or "haven.protocol") / "data" / "pgp_words.txt").read_text("utf-8")
    even: list[str] = []
    odd: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise RuntimeError("protocol/data/pgp_words.txt: each line needs two words")
        even.append(parts[0].lower())
        odd.append(parts[1].lower())
    if len(even) != _WORD_LIST_SIZE or len(set(even) | set(odd)) != 2 * _WORD_LIST_SIZE:
        raise RuntimeError("protocol/data/pgp_words.txt: need 256 + 256 distinct words")
    return tuple(even), tuple(odd)


#: The PGP word list's two-syllable words (even bytes), lowercase, in byte order.
#: ``PGP_ODD_WORDS`` holds the three-syllable words (odd bytes).
_WORDS: Final = _load_words()
PGP_EVEN_WORDS: Final = _WORDS[0]
PGP_ODD_WORDS: Final = _WORDS[1]

_EVEN_INDEX: Final = {w: i for i, w in enumerate(PGP_EVEN_WORDS)}
_ODD_INDEX: Final = {w: i for i, w in enumerate(PGP_ODD_WORDS)}
# Word slots after the number: even, odd, even (as PGP alternates for successive bytes).
_SLOTS: Final = (PGP_EVEN_WORDS, PGP_ODD_WORDS, PGP_EVEN_WORDS)
_SLOT_INDEX: Final = (_EVEN_INDEX, _ODD_INDEX, _EVEN_INDEX)

#: How many distinct spoken codes exist: 99 * 256**3.
SPOKEN_CODE_SPACE: Final = SPOKEN_CODE_MAX_NUMBER * math.prod(len(s) for s in _SLOTS)
#: Entropy of a spoken code in bits: log2(99) + 24 ≈ 30.63.
SPOKEN_CODE_BITS: Final = math.log2(SPOKEN_CODE_SPACE)

_SPOKEN_SPLIT: Final = re.compile(r"[\s\-\u2010-\u2014\u2212]+")


def new_spoken_code() -> str:
    """Return a fresh spoken code, e.g. ``"42-bison-molecule-tiger"`` (≈30.6 bits)."""
    number = secrets.randbelow(SPOKEN_CODE_MAX_NUMBER) + 1
    words = [slot[secrets.randbelow(len(slot))] for slot in _SLOTS]
    return "-".join([str(number), *words])


def parse_spoken_code(text: str) -> str:
    """Return the canonical (lowercase, '-'-joined) form of a spoken code.

    Case is ignored and the parts may be separated by spaces and/or hyphens. Raises
    ``CodeFormatError`` (``BAD_CODE``) for a bad number, an unknown word or a word in
    the wrong place; the message never contains the input.
    """
    if len(text) > _MAX_SPOKEN_INPUT:
        raise _mistyped("too long")
    parts = [p for p in _SPOKEN_SPLIT.split(text) if p]
    if len(parts) != 1 + len(_SLOTS):
        raise _mistyped("a spoken code is a number and three words")
    number_text, *words = parts
    if not (
        1 <= len(number_text) <= 2
        and number_text.isascii()
        and number_text.isdigit()
        and 1 <= int(number_text) <= SPOKEN_CODE_MAX_NUMBER
    ):
        raise _mistyped(f"the number must be 1 to {SPOKEN_CODE_MAX_NUMBER}")
    canonical = [str(int(number_text))]
    for word, index in zip(words, _SLOT_INDEX, strict=True):
        lowered = word.lower()
        if lowered not in index:
            raise _mistyped("a word is not on the list or out of place")
        canonical.append(lowered)
    return "-".join(canonical)
