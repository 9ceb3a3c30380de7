"""Byte-pair encoding of text: GPT-2's pre-tokenizer, the merge loop, and a cache per piece.

The merge semantics are those of OpenAI's GPT-2 `encoder.py`: split the text with
`SPLIT_PATTERN`, turn each piece into its UTF-8 bytes (one symbol each), then repeatedly find
the adjacent pair with the lowest merge rank and join every occurrence of it, left to right,
until no adjacent pair has a rank.

The merge loop and the cache run in the C++ engine (csrc/src/bpe.cpp) when the package is
built; otherwise the pure-Python twin here does the same work with the same results, only
slower on text it has not seen before.
"""

from __future__ import annotations

import heapq
import importlib
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import chain
from typing import Protocol

import regex  # type: ignore[import-untyped, unused-ignore]  # no stubs unless types-regex

SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
"""GPT-2's pre-tokenization pattern, with its seven contractions written as one group.

The contractions are case-sensitive, as in GPT-2: "'S" and "'LL" are punctuation then letters.
"""

# SPLIT_PATTERN for ASCII text, for the standard library's `re`, which runs it about twice as
# fast as `regex` runs the original. On ASCII, \p{L} is [A-Za-z], \p{N} is [0-9] and \s is
# [\t\n\x0b\x0c\r ] (Unicode White_Space, so not \x1c-\x1f as str.isspace has it): both
# patterns split ASCII text alike, which the tests check.
ASCII_SPLIT_PATTERN = (
    r"'(?:[sdmt]|ll|ve|re)| ?[A-Za-z]+| ?[0-9]+| ?[^\t\n\x0b\x0c\r A-Za-z0-9]+"
    r"|[\t\n\x0b\x0c\r ]+(?![^\t\n\x0b\x0c\r ])|[\t\n\x0b\x0c\r ]+"
)

# Bounds on the per-piece cache: it must not grow without limit in a long-running process,
# and very long pieces (runs of spaces, base64) rarely repeat, so caching them buys nothing.
# Only speed depends on them. The piece limit counts characters here, bytes in C++.
CACHE_ENTRIES = 1 << 16
CACHE_PIECE_LENGTH = 128

_NO_NEIGHBOUR = -1
_MERGED_AWAY = -1

MergeFunction = Callable[[bytes], Sequence[int]]


class NativeMerger(Protocol):
    """`gpt2cpu._core.BytePairMerger` (csrc/bindings/bpe.cpp)."""

    def merge(self, piece: bytes) -> list[int]: ...
    def encode_pieces(self, pieces: list[str]) -> list[int]: ...
    def clear_cache(self) -> None: ...


def native_core() -> object | None:
    """The C++ engine's module, or None where it is not built."""
    try:
        return importlib.import_module("gpt2cpu._core")
    except ImportError:
        return None


def native_merger_class() -> Callable[..., NativeMerger] | None:
    """The C++ merge loop, or None where the engine is not built (or predates it)."""
    found: Callable[..., NativeMerger] | None = getattr(native_core(), "BytePairMerger", None)
    return found


def chosen_merger_class(
    native: bool | None, *, required: bool = True
) -> Callable[..., NativeMerger] | None:
    """The C++ merge loop where `native` (see `BytePairEncoder`) picks it, else None.
    RuntimeError when `native` is True but it is not built, unless not `required`."""
    if native is None:
        native = _native_from_environment()
    merger_class = None if native is False else native_merger_class()
    if native and merger_class is None and required:
        raise RuntimeError("the C++ merge loop is not built (gpt2cpu._core.BytePairMerger)")
    return merger_class


def _native_from_environment() -> bool | None:
    choice = os.environ.get("GPT2CPU_BPE", "").strip().lower()
    if choice in ("", "auto"):
        return None
    if choice not in ("native", "python"):
        raise ValueError(f"GPT2CPU_BPE must be 'native', 'python' or 'auto', got {choice!r}")
    return choice == "native"


class BytePairEncoder:
    """Encodes ordinary text (no special tokens) to ids.

    `byte_ids[b]` is the id of the token for the single byte `b`; `merges` lists
    `(left, right, merged)` ids, lowest rank first. As in GPT-2's `encoder.py`, a pair listed
    twice keeps its later rank. With `whole_tokens` (Hugging Face's `ignore_merges`), a piece
    whose bytes are a token is that token without merging.

    `native` picks the merge loop: True for C++ (RuntimeError where it is not built), False
    for Python, None for the environment's `GPT2CPU_BPE` ("native" or "python"), else C++
    where built. `merger`, a C++ merge loop already built from these byte ids and merges
    (by `vocabulary.compile_vocabulary`), is used as it is, and `merges` then not read.
    """

    def __init__(
        self,
        byte_ids: Sequence[int],
        merges: Iterable[tuple[int, int, int]],
        *,
        whole_tokens: Mapping[bytes, int] | None = None,
        native: bool | None = None,
        merger: NativeMerger | None = None,
    ) -> None:
        if len(byte_ids) != 256:
            raise ValueError(f"byte_ids must have 256 entries, got {len(byte_ids)}")
        self._byte_ids = tuple(byte_ids)
        self._whole_tokens = dict(whole_tokens) if whole_tokens else None
        self._split_unicode: Callable[[str], list[str]] = regex.compile(SPLIT_PATTERN).findall
        self._split_ascii = re.compile(ASCII_SPLIT_PATTERN).findall
        self._native: NativeMerger | None = None
        self._merge: MergeFunction
        if merger is not None:
            self._native = merger
            self._merge = merger.merge
            return
        merge_list = list(merges)
        merger_class = chosen_merger_class(native)
        if merger_class is not None:
            self._native = merger_class(
                self._byte_ids,
                merge_list,
                self._whole_tokens or {},
                CACHE_ENTRIES,
                CACHE_PIECE_LENGTH,
            )
            self._merge = self._native.merge
        else:
            self._ranks: dict[tuple[int, int], tuple[int, int]] = {
                (left, right): (rank, merged)
                for rank, (left, right, merged) in enumerate(merge_list)
            }
            self._merge = self._merge_python
            self._cache = _PieceCache(self.encode_piece)

    def split(self, text: str) -> list[str]:
        """GPT-2's pre-tokenization: the pieces BPE encodes one by one."""
        # str.isascii is O(1): CPython records whether a string is ASCII.
        return self._split_ascii(text) if text.isascii() else self._split_unicode(text)

    def encode(self, text: str) -> list[int]:
        """The ids of `text`, every character of it encoded as ordinary text."""
        if self._native is not None:
            return self._native.encode_pieces(self.split(text))
        return list(chain.from_iterable(map(self._cache.__getitem__, self.split(text))))

    def encode_piece(self, piece: str) -> Sequence[int]:
        """The ids of one pre-token (a match of `SPLIT_PATTERN`), without the cache."""
        return self._merge(piece.encode("utf-8"))

    def clear_cache(self) -> None:
        if self._native is not None:
            self._native.clear_cache()
        else:
            self._cache.clear()

    def _merge_python(self, data: bytes) -> list[int]:
        # A linked list of symbols and a heap of (rank, position) candidate pairs keep long
        # pieces O(n log n); re-scanning the whole word per merge, as encoder.py does, is
        # quadratic and stalls on a megabyte without spaces. Pairs are merged a rank at a
        # time and the pairs a round creates enter the heap only after it, which reproduces
        # encoder.py's "all occurrences, left to right" even for unusual merge orders.
        if self._whole_tokens is not None:
            whole = self._whole_tokens.get(data)
            if whole is not None:
                return [whole]
        symbols = [self._byte_ids[byte] for byte in data]
        count = len(symbols)
        if count < 2:
            return symbols
        ranks = self._ranks
        after = [*range(1, count), _NO_NEIGHBOUR]
        before = [_NO_NEIGHBOUR, *range(count - 1)]
        heap = []
        for position in range(count - 1):
            found = ranks.get((symbols[position], symbols[position + 1]))
            if found is not None:
                heap.append((found[0], position))
        heapq.heapify(heap)
        while heap:
            rank = heap[0][0]
            merged_at = []
            while heap and heap[0][0] == rank:
                left = heapq.heappop(heap)[1]
                right = after[left]
                if symbols[left] == _MERGED_AWAY or right == _NO_NEIGHBOUR:
                    continue
                found = ranks.get((symbols[left], symbols[right]))
                if found is None or found[0] != rank:
                    continue  # stale: this position's pair changed since it was pushed
                symbols[left] = found[1]
                symbols[right] = _MERGED_AWAY
                following = after[right]
                after[left] = following
                if following != _NO_NEIGHBOUR:
                    before[following] = left
                merged_at.append(left)
            for position in merged_at:
                if symbols[position] == _MERGED_AWAY:
                    continue
                for left in (before[position], position):
                    if left == _NO_NEIGHBOUR or after[left] == _NO_NEIGHBOUR:
                        continue
                    found = ranks.get((symbols[left], symbols[after[left]]))
                    if found is not None:
                        heapq.heappush(heap, (found[0], left))
        return [symbol for symbol in symbols if symbol != _MERGED_AWAY]


class _PieceCache(dict[str, Sequence[int]]):
    """Pre-token -> ids; a miss encodes the piece. Emptied when full, which keeps it bounded
    at the cost of an occasional cold start."""

    def __init__(self, encode_piece: Callable[[str], Sequence[int]]) -> None:
        super().__init__()
        self._encode_piece = encode_piece

    def __missing__(self, piece: str) -> Sequence[int]:
        ids = tuple(self._encode_piece(piece))
        if len(piece) <= CACHE_PIECE_LENGTH:
            if len(self) >= CACHE_ENTRIES:
                self.clear()
            self[piece] = ids
        return ids
