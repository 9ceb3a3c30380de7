"""Properties of the tokenizer that must hold for every input: round trips, streaming, and
the merge loop against a plain transcription of GPT-2's `encoder.py` algorithm."""

from __future__ import annotations

import itertools
import re
import time

import pytest
import regex  # type: ignore[import-untyped, unused-ignore]  # no stubs unless types-regex
from gpt2cpu import Tokenizer
from gpt2cpu.tokenizer.bpe import ASCII_SPLIT_PATTERN, SPLIT_PATTERN
from gpt2cpu.tokenizer.byte_level import BYTE_TO_CHAR, spell
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tokenizer_references import (
    ENDOFTEXT,
    MERGE_LOOPS,
    gpt2_files,
    gpt2_tokenizer,
    tiktoken_gpt2,
    with_merge_loop,
)

SLOW = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module", params=MERGE_LOOPS)
def tok(request: pytest.FixtureRequest) -> Tokenizer:
    return gpt2_tokenizer(request.param)


@pytest.fixture(scope="module", params=MERGE_LOOPS)
def merge_loop(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# Text with the characters that stress byte-level BPE: multi-byte ones split across tokens,
# specials, spaces and contractions, besides anything hypothesis makes up.
tricky_text = st.lists(
    st.one_of(
        st.text(max_size=4),
        st.sampled_from(["東", "é", "e\u0301", "👩🏽‍💻", "\U0001f3fd", " ", "\n", "'s", "'LL"]),
    ),
    max_size=20,
).map("".join)


@SLOW
@given(text=st.text())
def test_decode_inverts_encode(tok: Tokenizer, text: str) -> None:
    assert tok.decode(tok.encode(text)) == text


@SLOW
@given(parts=st.lists(tricky_text, max_size=4))
def test_decode_inverts_encode_with_specials_allowed(tok: Tokenizer, parts: list[str]) -> None:
    text = ENDOFTEXT.join(parts)
    ids = tok.encode(text, allowed_special="all")
    assert ids.count(tok.special_tokens[ENDOFTEXT]) == max(len(parts) - 1, 0)
    assert tok.decode(ids) == text


def stream(tok: Tokenizer, ids: list[int]) -> list[str]:
    decoder = tok.stream_decoder()
    return [decoder.push(token_id) for token_id in ids] + [decoder.flush()]


# GPT-2's ids 0-255 are its single-byte tokens: drawn often, they split and corrupt UTF-8.
byte_ids = st.integers(0, 255)


@SLOW
@given(ids=st.lists(st.one_of(st.integers(0, 50256), byte_ids), max_size=40))
def test_stream_concatenates_to_decode(tok: Tokenizer, ids: list[int]) -> None:
    assert "".join(stream(tok, ids)) == tok.decode(ids)


@SLOW
@given(text=tricky_text)
def test_stream_of_valid_text_never_emits_a_partial_character(tok: Tokenizer, text: str) -> None:
    pieces = stream(tok, tok.encode(text))
    assert "".join(pieces) == text
    assert pieces[-1] == ""  # nothing was held back at the end of valid text
    assert all("\ufffd" not in piece for piece in pieces) or "\ufffd" in text


def test_a_lone_surrogate_is_encoded_as_u_fffd(tok: Tokenizer) -> None:
    # It has no UTF-8: as tiktoken, both merge loops read it as U+FFFD (it used to raise
    # UnicodeEncodeError), and a surrogate pair as the character it stands for.
    assert tok.encode("ok \ud800 ok") == tok.encode("ok \ufffd ok")
    assert tok.encode("\ud83d\ude00!") == tok.encode("\U0001f600!")


def test_stream_holds_a_split_character_until_complete(tok: Tokenizer) -> None:
    ids = tok.encode("東京")
    assert len(ids) > 2  # the characters' bytes are split across tokens
    decoder = tok.stream_decoder()
    printed = [decoder.push(i) for i in ids]
    assert "".join(printed) == "東京"
    assert all(piece in ("", "東", "京", "東京") for piece in printed)
    assert decoder.flush() == ""


def test_stream_flush_replaces_an_unfinished_character_and_restarts(tok: Tokenizer) -> None:
    first_byte = tok.token_to_id(spell("東".encode()[:1]))
    assert first_byte is not None
    decoder = tok.stream_decoder()
    assert decoder.push(first_byte) == ""
    assert decoder.flush() == "\ufffd" == tok.decode([first_byte])
    assert decoder.push(tok.encode("x")[0]) == "x"


def test_stream_push_rejects_an_unknown_id(tok: Tokenizer) -> None:
    decoder = tok.stream_decoder()
    with pytest.raises(ValueError, match="50257"):
        decoder.push(50257)


# -- the ASCII fast path of the pre-tokenizer ------------------------------------------------------


@pytest.mark.parametrize(
    ("unicode_class", "ascii_class"),
    [(r"\p{L}", "[A-Za-z]"), (r"\p{N}", "[0-9]"), (r"\s", r"[\t\n\x0b\x0c\r ]")],
)
def test_ascii_classes_are_the_unicode_ones_on_ascii(unicode_class: str, ascii_class: str) -> None:
    for char in map(chr, range(128)):
        assert bool(regex.fullmatch(unicode_class, char)) == bool(re.fullmatch(ascii_class, char))


def test_short_ascii_strings_split_alike_with_either_pattern() -> None:
    # Every string of up to four characters from each class and the edges between them:
    # letters, digits, the six spaces, separators \x1c-\x1f that str.isspace counts, other
    # controls, punctuation, and the letters of the contractions.
    alphabet = "aZ7 \t\n\x0b\x0c\r\x1c\x1f\x00\x7f'.s"
    ascii_split, unicode_split = re.compile(ASCII_SPLIT_PATTERN), regex.compile(SPLIT_PATTERN)
    for length in range(1, 5):
        for chars in itertools.product(alphabet, repeat=length):
            text = "".join(chars)
            assert ascii_split.findall(text) == unicode_split.findall(text), repr(text)


@SLOW
@given(text=st.text(st.characters(max_codepoint=127)))
def test_ascii_text_splits_alike_with_either_pattern(text: str) -> None:
    assert re.findall(ASCII_SPLIT_PATTERN, text) == regex.findall(SPLIT_PATTERN, text)


# -- the merge loop against encoder.py's algorithm ----------------------------------------------


# encoder.py's pattern as OpenAI wrote it; gpt2cpu groups the contractions.
ENCODER_PY_PATTERN = (
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)


def encoder_py_bpe(text: str, merges: list[tuple[str, str]]) -> list[str]:
    """GPT-2's algorithm written plainly: per regex piece, rescan every adjacent pair, take the
    lowest rank, join each occurrence left to right, repeat. Returns byte-level tokens."""
    ranks = {pair: rank for rank, pair in enumerate(merges)}  # a repeated pair: last rank
    out = []
    for piece in regex.findall(ENCODER_PY_PATTERN, text):
        word = [BYTE_TO_CHAR[b] for b in piece.encode("utf-8")]
        while len(word) > 1:
            pairs = set(zip(word, word[1:], strict=False))
            best = min(pairs, key=lambda pair: ranks.get(pair, float("inf")))
            if best not in ranks:
                break
            joined, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    joined.append(word[i] + word[i + 1])
                    i += 2
                else:
                    joined.append(word[i])
                    i += 1
            word = joined
        out += word
    return out


@st.composite
def odd_merge_lists(draw: st.DrawFn) -> list[tuple[str, str]]:
    """Merges over a few letters in any order: some use a token before the merge that makes
    it, some repeat, as hand-edited or buggy files can."""
    tokens = ["a", "b", "Ġ"]
    merges = []
    for _ in range(draw(st.integers(0, 12))):
        pair = (draw(st.sampled_from(tokens)), draw(st.sampled_from(tokens)))
        merges.append(pair)
        if pair[0] + pair[1] not in tokens:
            tokens.append(pair[0] + pair[1])
    merges = draw(st.permutations(merges))
    return merges + draw(st.lists(st.sampled_from(merges), max_size=3)) if merges else []


def vocab_for(merges: list[tuple[str, str]]) -> dict[str, int]:
    vocab = {char: i for i, char in enumerate(BYTE_TO_CHAR)}
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    return vocab


@settings(SLOW, max_examples=400)
@given(merges=odd_merge_lists(), text=st.text("ab ", max_size=30))
# A pair made by a merge outranks the merge that made it: encoder.py still joins all of
# "a a a a" into "aa aa" before it looks at "aa a".
@example(merges=[("aa", "a"), ("a", "a")], text="aaaa")
def test_merges_follow_encoder_py_for_any_merge_order(
    merge_loop: str, merges: list[tuple[str, str]], text: str
) -> None:
    tok = with_merge_loop(merge_loop, lambda: Tokenizer(vocab_for(merges), merges))
    expected = encoder_py_bpe(text, merges)
    assert [tok.id_to_token(i) for i in tok.encode(text)] == expected


@pytest.fixture(scope="module")
def gpt2_merges() -> list[tuple[str, str]]:
    lines = gpt2_files()[1].read_text(encoding="utf-8").split("\n")[1:]
    return [(left, right) for left, right in (line.split() for line in lines if line)]


@SLOW
@given(text=tricky_text)
def test_gpt2_merges_follow_encoder_py(
    tok: Tokenizer, gpt2_merges: list[tuple[str, str]], text: str
) -> None:
    assert [tok.id_to_token(i) for i in tok.encode(text)] == encoder_py_bpe(text, gpt2_merges)


def test_a_long_piece_is_not_quadratic(tok: Tokenizer) -> None:
    # 200,000 letters without a space are one pre-token; rescanning the word per merge
    # would take minutes.
    text = "abcdefghijklmnopqrstuvwxyz" * 7693
    started = time.perf_counter()
    ids = tok.encode(text)
    assert time.perf_counter() - started < 20
    assert ids == tiktoken_gpt2().encode_ordinary(text)
