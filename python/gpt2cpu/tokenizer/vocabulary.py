"""Checks a `TokenizerSpec` and turns it into the id tables encoding and decoding use."""

from __future__ import annotations

import operator
from dataclasses import dataclass

from ..errors import TokenizerFormatError
from .bpe import (
    CACHE_ENTRIES,
    CACHE_PIECE_LENGTH,
    NativeMerger,
    chosen_merger_class,
    native_core,
)
from .byte_level import BYTE_TO_CHAR, spelled_bytes
from .formats import AddedTokenOptions, TokenizerSpec

DEFAULT_SPECIAL = "<|endoftext|>"
"""GPT-2's only special token; its eos and bos when the files declare neither."""


@dataclass(frozen=True)
class Vocabulary:
    byte_ids: tuple[int, ...]
    """The id of each single-byte token, indexed by byte value."""
    merges: list[tuple[int, int, int]]
    """(left, right, merged) ids, lowest rank first; empty when `merger` holds them."""
    merge_count: int
    whole_tokens: dict[bytes, int] | None
    """Set when a piece that is a token must not be merged (`ignore_merges`), unless
    `merger` holds them."""
    id_to_bytes: dict[int, bytes]
    id_to_token: dict[int, str]
    token_to_id: dict[str, int]
    special_tokens: dict[str, int]
    token_options: dict[str, AddedTokenOptions]
    """The options of those special tokens the files give any; others match plainly."""
    eos_token_id: int | None
    bos_token_id: int | None
    vocab_size: int
    merger: NativeMerger | None = None
    """The C++ merge loop, built from the merges and whole tokens by `compile_vocabulary`."""


@dataclass
class _Tables:
    byte_ids: tuple[int, ...]
    merges: list[tuple[int, int, int]]
    whole_tokens: dict[bytes, int] | None
    id_to_bytes: dict[int, bytes]
    id_to_token: dict[int, str]
    unreachable: list[int]
    """Ids that neither are a byte nor come out of a merge, ascending."""
    merger: NativeMerger | None = None


def compile_vocabulary(spec: TokenizerSpec, *, native: bool | None = None) -> Vocabulary:
    """Raises TokenizerFormatError, naming the file, for a spec that is not byte-level BPE.

    `native` as for `BytePairEncoder`: where the C++ merge loop is chosen, it is built here,
    from the same single pass over the vocabulary that makes the other tables."""
    # A missing engine is BytePairEncoder's to report, after the files are checked.
    merger_class = chosen_merger_class(native, required=False)
    tables = _native_tables(spec) if merger_class is not None else None
    if tables is None:
        tables = _python_tables(spec)
    return _finish(spec, tables)


def _native_tables(spec: TokenizerSpec) -> _Tables | None:
    """The tables and the merge loop from one C++ pass (GPT-2's: 22 ms of CPU, against 57
    for `_python_tables` and building the merge loop from its list), or None for anything
    but a well-formed vocabulary: _python_tables then names what is wrong."""
    compile_native = getattr(native_core(), "compile_byte_level", None)
    if compile_native is None:
        return None
    compiled = compile_native(
        spec.vocab, spec.merges, BYTE_TO_CHAR, spec.ignore_merges, CACHE_ENTRIES,
        CACHE_PIECE_LENGTH,
    )
    if compiled is None:
        return None
    merger, byte_ids, id_to_bytes, id_to_token, unreachable = compiled
    return _Tables(
        byte_ids=tuple(byte_ids),
        merges=[],
        whole_tokens=None,
        id_to_bytes=id_to_bytes,
        id_to_token=id_to_token,
        unreachable=unreachable,
        merger=merger,
    )


def _python_tables(spec: TokenizerSpec) -> _Tables:
    # Each step is a C-speed pass over the ~50k entries of a real vocabulary; the loops
    # that name a culprit run only when a pass finds something wrong.
    id_to_token = {token_id: token for token, token_id in spec.vocab.items()}
    if len(id_to_token) != len(spec.vocab):
        seen: dict[int, str] = {}
        for token, token_id in spec.vocab.items():
            other = seen.setdefault(token_id, token)
            if other != token:
                raise TokenizerFormatError(
                    f"{spec.vocab_source}: tokens {other!r} and {token!r} share id {token_id}"
                )

    byte_ids = []
    for byte, char in enumerate(BYTE_TO_CHAR):
        byte_id = spec.vocab.get(char)
        if byte_id is None:
            raise TokenizerFormatError(
                f"{spec.vocab_source}: not a byte-level BPE vocabulary: no token for byte "
                f"0x{byte:02x} (spelled {char!r})"
            )
        byte_ids.append(byte_id)

    vocab = spec.vocab
    try:
        lefts, rights = zip(*spec.merges, strict=True) if spec.merges else ((), ())
        merges = list(zip(map(vocab.__getitem__, lefts), map(vocab.__getitem__, rights),
                          map(vocab.__getitem__, map(operator.add, lefts, rights)), strict=True))
    except KeyError:
        for number, (left, right) in enumerate(spec.merges, start=1):
            for needed in (left, right, left + right):
                if needed not in vocab:
                    raise TokenizerFormatError(
                        f"{spec.merges_source}: merge {number} ({left!r} {right!r}) needs token "
                        f"{needed!r}, which is not in the vocabulary"
                    ) from None
        raise

    # A token outside the byte-level alphabet can only be an added token in plain text.
    tokens = list(id_to_token.values())
    id_to_bytes = {
        token_id: token.encode("utf-8") if spelled is None else spelled
        for token_id, token, spelled in zip(id_to_token, tokens, spelled_bytes(tokens), strict=True)
    }

    whole_tokens = None
    if spec.ignore_merges:
        whole_tokens = {spelled: token_id for token_id, spelled in id_to_bytes.items()}

    # A vocabulary entry that neither is a byte nor comes out of a merge can never be produced
    # by BPE: it is an added token, like GPT-2's "<|endoftext|>" in encoder.json.
    reachable = set(byte_ids).union(merged for _, _, merged in merges)
    return _Tables(
        byte_ids=tuple(byte_ids),
        merges=merges,
        whole_tokens=whole_tokens,
        id_to_bytes=id_to_bytes,
        id_to_token=id_to_token,
        unreachable=sorted(id_to_token.keys() - reachable),
    )


def _finish(spec: TokenizerSpec, tables: _Tables) -> Vocabulary:
    id_to_bytes, id_to_token = tables.id_to_bytes, tables.id_to_token
    special_tokens: dict[str, int] = {}
    for token_id in tables.unreachable:
        try:
            special_tokens[id_to_bytes[token_id].decode("utf-8")] = token_id
        except UnicodeDecodeError:
            continue  # no text can spell it, so there is nothing to match in input
    token_to_id = dict(spec.vocab)
    for content, token_id in spec.added_tokens.items():
        if special_tokens.get(content, token_id) != token_id:
            raise TokenizerFormatError(
                f"{spec.vocab_source}: added token {content!r} has id {token_id}, but the "
                f"vocabulary gives it {special_tokens[content]}"
            )
        special_tokens[content] = token_id
        id_to_bytes[token_id] = content.encode("utf-8")
        id_to_token.setdefault(token_id, content)
        token_to_id.setdefault(content, token_id)

    def declared(name: str | None, role: str) -> int | None:
        if name is None:
            return special_tokens.get(DEFAULT_SPECIAL)
        found = special_tokens.get(name, token_to_id.get(name))
        if found is None:
            raise TokenizerFormatError(
                f"{spec.names_source or spec.vocab_source}: the {role} token {name!r} is not "
                "in the vocabulary"
            )
        return found

    return Vocabulary(
        byte_ids=tables.byte_ids,
        merges=tables.merges,
        merge_count=len(spec.merges),
        whole_tokens=tables.whole_tokens,
        id_to_bytes=id_to_bytes,
        id_to_token=id_to_token,
        token_to_id=token_to_id,
        special_tokens=special_tokens,
        token_options=dict(spec.added_token_options),
        eos_token_id=declared(spec.eos_token, "eos"),
        bos_token_id=declared(spec.bos_token, "bos"),
        vocab_size=max(id_to_bytes) + 1,
        merger=tables.merger,
    )
