"""GPT-2's byte-level alphabet: the 256 characters its vocabulary files spell bytes with.

GPT-2's files store each token as text in which every byte is one printable character, so
that whitespace and control bytes survive in JSON and in the space-separated merges file.
Printable Latin-1 bytes stand for themselves; the other 68 (controls, space, NBSP, soft
hyphen) are moved, in byte order, to U+0100 onwards: a space is "Ġ", a newline "Ċ".
"""

from __future__ import annotations

import codecs
from itertools import accumulate

_SELF_SPELLED = (*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100))


def _alphabet() -> tuple[str, ...]:
    chars = []
    next_moved = 0x100
    for byte in range(256):
        if byte in _SELF_SPELLED:
            chars.append(chr(byte))
        else:
            chars.append(chr(next_moved))
            next_moved += 1
    return tuple(chars)


BYTE_TO_CHAR: tuple[str, ...] = _alphabet()
"""The character that spells each byte, indexed by byte value."""

CHAR_TO_BYTE: dict[str, int] = {char: byte for byte, char in enumerate(BYTE_TO_CHAR)}

# The alphabet as a charmap codec's table: encoding with it is one C loop over the text,
# which raises for any character outside the alphabet.
_ENCODING_MAP = codecs.charmap_build("".join(BYTE_TO_CHAR))


def token_bytes(token: str) -> bytes | None:
    """The bytes a byte-level token spells, or None if it uses a character outside the alphabet."""
    try:
        return codecs.charmap_encode(token, "strict", _ENCODING_MAP)[0]
    except UnicodeEncodeError:
        return None


def spelled_bytes(tokens: list[str]) -> list[bytes | None]:
    """token_bytes of each token; a whole vocabulary at once is one encoding of their join."""
    try:
        data = codecs.charmap_encode("".join(tokens), "strict", _ENCODING_MAP)[0]
    except UnicodeEncodeError:
        return [token_bytes(token) for token in tokens]
    # Each character is one byte, so each token's bytes start where its text does.
    ends = list(accumulate(map(len, tokens)))
    return list(map(data.__getitem__, map(slice, [0, *ends[:-1]], ends)))


def spell(data: bytes) -> str:
    """The byte-level spelling of `data` (the inverse of `token_bytes`)."""
    return "".join([BYTE_TO_CHAR[byte] for byte in data])
