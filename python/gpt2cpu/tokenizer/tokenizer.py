"""GPT-2's byte-level BPE tokenizer: text <-> token ids, exactly as GPT-2 was trained with.

    tok = Tokenizer.from_pretrained("path/to/model")
    ids = tok.encode("Hello world")                       # [15496, 995]
    tok.decode(ids)                                       # "Hello world"
    tok.encode("<|endoftext|>", allowed_special="all")    # [50256]

Special tokens. `encode` treats special-token text in its input as ordinary text unless
`allowed_special` lets it through ("all", or a set of the special tokens' texts), as tiktoken
does; it never adds special tokens of its own. The special tokens are those the files declare
as added tokens (tokenizer.json's `added_tokens`, tokenizer_config.json's
`added_tokens_decoder`) and vocabulary entries no merge produces, such as "<|endoftext|>" in
encoder.json. Unlike Hugging Face, non-special added tokens are treated the same way. An added
token's `lstrip`, `rstrip`, `single_word` and `normalized` options act as in Hugging Face's
`tokenizers` (see `_AddedTokenSplitter`).

Decoding turns bytes that are not valid UTF-8 into U+FFFD, as Hugging Face and tiktoken do,
and raises ValueError for an id the tokenizer does not have; `stream_decoder()` yields text
as each character completes. The merge loop runs in the C++ engine when the package is built
and in Python otherwise (`GPT2CPU_BPE=python|native` forces one); the ids are the same.
"""

from __future__ import annotations

import gc
import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping, Set
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import regex  # type: ignore[import-untyped, unused-ignore]  # no stubs unless types-regex

from ..errors import TokenizerFormatError
from ..files import is_present_file
from .bpe import BytePairEncoder
from .formats import (
    PLAIN_TOKEN,
    AddedTokenOptions,
    PathLike,
    TokenizerSpec,
    apply_legacy_files,
    apply_tokenizer_config,
    read_tokenizer_json,
    read_vocab_and_merges,
)
from .streaming import StreamDecoder
from .vocabulary import compile_vocabulary

__all__ = ["StreamDecoder", "Tokenizer", "TokenizerFormatError"]

AllowedSpecial = Set[str] | Literal["all"]

# File sets `from_pretrained` looks for, in order of preference: tokenizer.json first, as the
# one file that says outright what the tokenizer is (model, pre-tokenizer, added tokens).
_VOCAB_AND_MERGES = (("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe"))
_CONFIG = "tokenizer_config.json"
# Written by transformers' slow tokenizers (4.x) beside vocab.json and merges.txt.
_SPECIAL_TOKENS_MAP = "special_tokens_map.json"
_ADDED_TOKENS = "added_tokens.json"


# Rust regex's \s (tokenizers' strip) is Unicode White_Space, which differs from str.isspace.
_WHITE_SPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# Rust regex's \w, which tokenizers' single_word tests the neighbouring characters against.
_WORD_CHARACTER = regex.compile(r"[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]")


class _AddedTokenSplitter:
    """Finds added tokens in text as `tokenizers`' AddedVocabulary does: the tokens not
    normalized first, over the whole text, then the normalized ones in the text between,
    each pass taking the leftmost match, the longest there, without overlap. A single_word
    match next to a word character is dropped (its text stays ordinary); lstrip and rstrip
    widen a match over the whitespace beside it, on the left only back to the last match."""

    def __init__(self, tokens: Mapping[str, int], options: Mapping[str, AddedTokenOptions]):
        self._tokens = tokens
        self._options = options
        passes = ([t for t in tokens if not options.get(t, PLAIN_TOKEN).normalized],
                  [t for t in tokens if options.get(t, PLAIN_TOKEN).normalized])
        self._patterns = [
            # Longest first, so of two tokens starting at one place the longer one wins.
            regex.compile("|".join(map(regex.escape, sorted(names, key=len, reverse=True))))
            for names in passes
            if names
        ]

    def split(self, text: str, bpe: Callable[[str], list[int]]) -> list[int]:
        """The ids of `text`, with `bpe` encoding the text between added tokens."""
        ids: list[int] = []
        self._split(text, 0, bpe, ids)
        return ids

    def _split(self, text: str, depth: int, bpe: Callable[[str], list[int]], ids: list[int]
               ) -> None:
        if depth == len(self._patterns):
            ids += bpe(text)
            return
        offset = 0
        for match in self._patterns[depth].finditer(text):
            start, stop = match.span()
            options = self._options.get(match.group(), PLAIN_TOKEN)
            if options.single_word and (
                (start > 0 and _WORD_CHARACTER.match(text, start - 1))
                or (stop < len(text) and _WORD_CHARACTER.match(text, stop))
            ):
                continue
            if options.lstrip:
                while start > offset and text[start - 1] in _WHITE_SPACE:
                    start -= 1
            if options.rstrip:
                while stop < len(text) and text[stop] in _WHITE_SPACE:
                    stop += 1
            if offset < start:
                self._split(text[offset:start], depth + 1, bpe, ids)
            ids.append(self._tokens[match.group()])
            offset = stop
        if offset < len(text):
            self._split(text[offset:], depth + 1, bpe, ids)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Holds off the cyclic garbage collector while tokenizer files are read. json.loads
    makes some 50k lists for GPT-2's merges (and dicts, strings, tuples after), none in a
    cycle; the collections they trigger on the way, each over everything young and some
    over the whole heap, took a fifth of reading tokenizer.json."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class Tokenizer:
    """GPT-2 byte-level BPE. Build one with `from_pretrained`, `from_files` or
    `from_tokenizer_json`; the constructor takes the tables themselves.

    `vocab` maps tokens in GPT-2's byte-level spelling ("Ġworld") to ids, `merges` lists
    pairs of such tokens lowest rank first, and `special_tokens` maps the text of added
    tokens to ids. Without `eos_token`/`bos_token`, both are "<|endoftext|>" when the
    tokenizer has it, as in GPT-2.
    """

    def __init__(
        self,
        vocab: Mapping[str, int],
        merges: Iterable[tuple[str, str]],
        special_tokens: Mapping[str, int] | None = None,
        *,
        eos_token: str | None = None,
        bos_token: str | None = None,
    ) -> None:
        spec = TokenizerSpec(
            vocab=dict(vocab),
            merges=list(merges),
            vocab_source="vocab",
            merges_source="merges",
            added_tokens=dict(special_tokens or {}),
            eos_token=eos_token,
            bos_token=bos_token,
        )
        self._init_from(spec)

    def _init_from(self, spec: TokenizerSpec) -> None:
        vocabulary = compile_vocabulary(spec)
        self._vocabulary = vocabulary
        self._bpe = BytePairEncoder(
            vocabulary.byte_ids,
            vocabulary.merges,
            whole_tokens=vocabulary.whole_tokens,
            merger=vocabulary.merger,
        )
        self._id_to_bytes = vocabulary.id_to_bytes
        self._special_tokens = vocabulary.special_tokens
        self._token_options = vocabulary.token_options
        self._special_splitters: dict[frozenset[str], _AddedTokenSplitter] = {}

    @classmethod
    def _from_spec(cls, spec: TokenizerSpec) -> Tokenizer:
        tokenizer = cls.__new__(cls)
        tokenizer._init_from(spec)
        return tokenizer

    @classmethod
    def from_pretrained(cls, directory: PathLike) -> Tokenizer:
        """Loads the tokenizer files in a model directory.

        Uses `tokenizer.json` if present, else `vocab.json` + `merges.txt`, else
        `encoder.json` + `vocab.bpe`; a `tokenizer_config.json` beside them adds its eos/bos
        names and added tokens, and, when it lists no added tokens, `special_tokens_map.json`
        and `added_tokens.json` do, as transformers reads them. Raises FileNotFoundError when
        the directory has none of these (or only half a pair), TokenizerFormatError when a
        file is malformed.
        """
        with _collector_paused():
            return cls._from_spec(_read_pretrained(Path(directory)))

    @classmethod
    def from_files(cls, vocab_path: PathLike, merges_path: PathLike) -> Tokenizer:
        """Loads `vocab.json` + `merges.txt`, or OpenAI's `encoder.json` + `vocab.bpe`."""
        with _collector_paused():
            return cls._from_spec(read_vocab_and_merges(vocab_path, merges_path))

    @classmethod
    def from_tokenizer_json(cls, path: PathLike) -> Tokenizer:
        """Loads a Hugging Face `tokenizer.json` holding a GPT-2-style byte-level BPE."""
        with _collector_paused():
            return cls._from_spec(read_tokenizer_json(path))

    # -- encoding ---------------------------------------------------------------------------

    def encode(self, text: str, *, allowed_special: AllowedSpecial = frozenset()) -> list[int]:
        """The token ids of `text`. Special-token text is ordinary text unless named in
        `allowed_special` ("all" for every special token). A lone surrogate (which UTF-8
        cannot encode) is read as U+FFFD, as tiktoken does."""
        if not isinstance(text, str):
            raise TypeError(f"encode takes a str, got {type(text).__name__}")
        try:
            return self._encode(text, allowed_special)
        except UnicodeEncodeError:
            # Paired surrogates become their character, lone ones U+FFFD: tiktoken's rule.
            fixed = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
            return self._encode(fixed, allowed_special)

    def _encode(self, text: str, allowed_special: AllowedSpecial) -> list[int]:
        if not allowed_special:
            return self._bpe.encode(text)
        return self._special_splitter(allowed_special).split(text, self._bpe.encode)

    def encode_batch(
        self, texts: Iterable[str], *, allowed_special: AllowedSpecial = frozenset()
    ) -> list[list[int]]:
        return [self.encode(text, allowed_special=allowed_special) for text in texts]

    def _special_splitter(self, allowed: AllowedSpecial) -> _AddedTokenSplitter:
        if isinstance(allowed, str) and allowed != "all":
            raise ValueError(f"allowed_special must be 'all' or a set of texts, not {allowed!r}")
        names = frozenset(self._special_tokens) if allowed == "all" else frozenset(allowed)
        splitter = self._special_splitters.get(names)
        if splitter is None:
            unknown = names - self._special_tokens.keys()
            if unknown:
                raise ValueError(f"not special tokens of this tokenizer: {sorted(unknown)}")
            allowed_tokens = {name: self._special_tokens[name] for name in names}
            splitter = _AddedTokenSplitter(allowed_tokens, self._token_options)
            self._special_splitters[names] = splitter
        return splitter

    # -- decoding ---------------------------------------------------------------------------

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes `ids` stand for. Raises ValueError for an id not in the vocabulary,
        TypeError for anything but an integer (a float or str would find a token by
        equality, 1.0 standing for 1)."""
        if isinstance(ids, (str, bytes)):
            raise TypeError(f"ids must be a sequence of token ids, not {type(ids).__name__}")
        dtype = getattr(ids, "dtype", None)  # a numpy array, without importing numpy here
        if dtype is not None and getattr(dtype, "kind", None) in ("i", "u"):
            values = ids.tolist()  # type: ignore[attr-defined]  # Python ints, at C speed
        else:
            values = ids if isinstance(ids, (list, tuple)) else list(ids)
        # The exact-type test is one C-speed pass; the slow one runs only to name the culprit
        # or to accept numpy's integers.
        if not all(type(v) is int for v in values):
            for i, v in enumerate(values):
                if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                    raise TypeError(f"ids[{i}] must be an integer token id, got {v!r}")
            values = [int(v) for v in values]
        try:
            return b"".join(map(self._id_to_bytes.__getitem__, values))
        except KeyError as exc:
            raise self._unknown_id(exc.args[0]) from None

    def decode(self, ids: Iterable[int]) -> str:
        """The text `ids` stand for; bytes that are not valid UTF-8 become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def decode_batch(self, batch: Iterable[Iterable[int]]) -> list[str]:
        return [self.decode(ids) for ids in batch]

    def stream_decoder(self) -> StreamDecoder:
        """An incremental decoder: `push(id) -> str` of newly completed text, `flush()`."""
        return StreamDecoder(self.token_bytes)

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes of one token. Raises ValueError for an id not in the vocabulary."""
        if type(token_id) is not int:
            token_id = self._checked_id(token_id)
        found = self._id_to_bytes.get(token_id)
        if found is None:
            raise self._unknown_id(token_id)
        return found

    @staticmethod
    def _checked_id(token_id: object) -> int:
        if isinstance(token_id, bool) or not isinstance(token_id, numbers.Integral):
            raise TypeError(f"a token id must be an integer, got {token_id!r}")
        return int(token_id)

    def _unknown_id(self, token_id: object) -> ValueError:
        # str, not repr: numpy ids would read "np.int64(50257)".
        return ValueError(
            f"token id {token_id} is not in the vocabulary (ids run from 0 to "
            f"{self.vocab_size - 1})"
        )

    # -- vocabulary -------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """One more than the largest id, special tokens included."""
        return self._vocabulary.vocab_size

    @property
    def eos_token_id(self) -> int | None:
        return self._vocabulary.eos_token_id

    @property
    def bos_token_id(self) -> int | None:
        return self._vocabulary.bos_token_id

    @property
    def special_tokens(self) -> Mapping[str, int]:
        """Special token text -> id (read-only)."""
        return MappingProxyType(self._special_tokens)

    def unknown_ids(self, vocab_size: int) -> list[int]:
        """The ids below vocab_size (a model's) that this tokenizer cannot decode: those past
        its own vocabulary, and any gaps in it."""
        known = self._id_to_bytes
        beyond = range(self.vocab_size, vocab_size)
        if len(known) == self.vocab_size:  # no gaps: the usual case, answered without a scan
            return list(beyond)
        return [i for i in range(min(vocab_size, self.vocab_size)) if i not in known] + list(
            beyond
        )

    def token_to_id(self, token: str) -> int | None:
        """The id of a token in its vocabulary spelling ("Ġworld") or a special token's text."""
        return self._vocabulary.token_to_id.get(token)

    def id_to_token(self, token_id: int) -> str:
        """A token's vocabulary spelling ("Ġworld"), or a special token's text."""
        if type(token_id) is not int:
            token_id = self._checked_id(token_id)
        found = self._vocabulary.id_to_token.get(token_id)
        if found is None:
            raise self._unknown_id(token_id)
        return found

    def __repr__(self) -> str:
        return (
            f"Tokenizer(vocab_size={self.vocab_size}, merges={self._vocabulary.merge_count}, "
            f"special_tokens={sorted(self._special_tokens)})"
        )


def _read_pretrained(folder: Path) -> TokenizerSpec:
    """The spec of the tokenizer files in a model directory (`Tokenizer.from_pretrained`)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such directory")

    def present(path: Path) -> bool:  # a directory or FIFO there is an error, not absent
        return is_present_file(path, TokenizerFormatError)

    if present(folder / "tokenizer.json"):
        spec = read_tokenizer_json(folder / "tokenizer.json")
    else:
        for vocab_name, merges_name in _VOCAB_AND_MERGES:
            vocab_path, merges_path = folder / vocab_name, folder / merges_name
            has_vocab, has_merges = present(vocab_path), present(merges_path)
            if has_vocab or has_merges:
                if not (has_vocab and has_merges):
                    missing = merges_path if has_vocab else vocab_path
                    raise FileNotFoundError(
                        f"{missing}: missing; {vocab_name} and {merges_name} go together"
                    )
                spec = read_vocab_and_merges(vocab_path, merges_path)
                break
        else:
            raise FileNotFoundError(
                f"{folder}: no tokenizer files (looked for tokenizer.json, "
                "vocab.json + merges.txt, encoder.json + vocab.bpe)"
            )
    has_decoder = present(folder / _CONFIG) and apply_tokenizer_config(spec, folder / _CONFIG)
    if not has_decoder:  # transformers reads the legacy files only then
        special_map, added = folder / _SPECIAL_TOKENS_MAP, folder / _ADDED_TOKENS
        apply_legacy_files(
            spec, special_map if present(special_map) else None, added if present(added) else None
        )
    return spec

