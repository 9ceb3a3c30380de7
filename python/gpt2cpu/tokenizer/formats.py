"""Readers for the tokenizer file formats GPT-2 models ship with.

Each reader returns a `TokenizerSpec`, the files' content without interpretation; checking
that it makes a usable byte-level BPE is `vocabulary.compile_vocabulary`'s job. Every error
names the file it comes from.

- `vocab.json` + `merges.txt` (Hugging Face) and `encoder.json` + `vocab.bpe` (OpenAI's
  release) are the same two formats under different names: a JSON object token -> id, and
  one merge per line, "left right", lowest rank first, after an optional "#version" line.
- `tokenizer.json` (Hugging Face `tokenizers`) holds both, plus added tokens, in one file.
- `tokenizer_config.json` (Hugging Face `transformers`) may name the eos/bos tokens and list
  added tokens; it is optional beside either of the above.
- `special_tokens_map.json` and `added_tokens.json`, written by transformers' slow tokenizers
  (4.x), name the special tokens and list added tokens; transformers reads them, and so do
  we, only when tokenizer_config.json has no `added_tokens_decoder`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter
from typing import Any

from ..errors import TokenizerFormatError
from ..files import read_regular

PathLike = str | os.PathLike[str]

# Token ids are int32 in the C++ merge loop; a larger one is a broken file.
MAX_TOKEN_ID = 2**31 - 1
# GPT-2's tokenizer.json is 1.4 MB and the largest vocabularies' tens of MB; this bounds
# what a wrong file (a device, a sparse file) makes us read.
MAX_TOKENIZER_FILE_BYTES = 256 << 20

_FIRST, _SECOND = itemgetter(0), itemgetter(1)

# transformers' SPECIAL_TOKENS_ATTRIBUTES (4.x and 5.x): the names that make a token special.
_NAMED_SPECIALS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                   "mask_token")
_SPECIAL_LISTS = ("additional_special_tokens", "extra_special_tokens")


@dataclass(frozen=True)
class AddedTokenOptions:
    """How an added token is found in text, as Hugging Face `tokenizers` defines it."""

    single_word: bool = False
    """Matches only where neither neighbouring character is a word character."""
    lstrip: bool = False
    """Takes the whitespace just before it."""
    rstrip: bool = False
    """Takes the whitespace just after it."""
    normalized: bool = False
    """Searched for after the tokens that are not, in the text between them. There is no
    normalizer (read_tokenizer_json refuses one), so this decides only that order."""


PLAIN_TOKEN = AddedTokenOptions()


@dataclass
class TokenizerSpec:
    """What tokenizer files say, with the names of the files each part came from."""

    vocab: dict[str, int]
    merges: list[tuple[str, str]]
    vocab_source: str
    merges_source: str
    added_tokens: dict[str, int] = field(default_factory=dict)
    """Tokens outside BPE (special tokens), as the text they stand for -> id."""
    added_token_options: dict[str, AddedTokenOptions] = field(default_factory=dict)
    """How each of `added_tokens` matches; PLAIN_TOKEN for one not listed."""
    ignore_merges: bool = False
    eos_token: str | None = None
    bos_token: str | None = None
    names_source: str | None = None
    """The file that named eos_token/bos_token, when it is not the vocabulary's."""
    special_names: set[str] = field(default_factory=set)
    """Every token the files name special (eos, pad, ...): added_tokens.json's are special,
    so not normalized, when named here."""


def read_vocab_json(path: PathLike) -> dict[str, int]:
    data = _read_json(path)
    return _vocab_from(data, os.fspath(path))


def read_merges_txt(path: PathLike) -> list[tuple[str, str]]:
    text = _read_text(path)
    lines = text.split("\n")
    first = 1 if lines[0].startswith("#version") else 0  # "#version: 0.2" is not a merge
    merges = []
    for number, raw_line in enumerate(lines[first:], start=first + 1):
        line = raw_line.rstrip("\r")
        parts = line.split(" ")
        if len(parts) == 2 and parts[0] and parts[1]:
            merges.append((parts[0], parts[1]))
        elif line:
            raise TokenizerFormatError(
                f"{os.fspath(path)}: line {number}: expected two tokens separated by one "
                f"space, got {line!r}"
            )
    return merges


def read_vocab_and_merges(vocab_path: PathLike, merges_path: PathLike) -> TokenizerSpec:
    return TokenizerSpec(
        vocab=read_vocab_json(vocab_path),
        merges=read_merges_txt(merges_path),
        vocab_source=os.fspath(vocab_path),
        merges_source=os.fspath(merges_path),
    )


def read_tokenizer_json(path: PathLike) -> TokenizerSpec:
    source = os.fspath(path)
    data = _read_json(path)
    if not isinstance(data, dict):
        raise TokenizerFormatError(f"{source}: expected a JSON object at the top level")

    def unsupported(what: str) -> TokenizerFormatError:
        return TokenizerFormatError(f"{source}: not a GPT-2 byte-level BPE tokenizer: {what}")

    model = data.get("model")
    if not isinstance(model, dict) or model.get("type", "BPE") != "BPE":
        kind = model.get("type") if isinstance(model, dict) else model
        raise unsupported(f"model type is {kind!r}, not 'BPE'")
    if data.get("normalizer") is not None:
        raise unsupported(f"it has a normalizer ({_type_of(data['normalizer'])})")
    pre = data.get("pre_tokenizer")
    if not isinstance(pre, dict) or pre.get("type") != "ByteLevel":
        raise unsupported(f"pre_tokenizer is {_type_of(pre)}, not ByteLevel")
    if pre.get("add_prefix_space", False):
        raise unsupported("ByteLevel add_prefix_space is true (GPT-2 adds no prefix space)")
    if not pre.get("use_regex", True):
        raise unsupported("ByteLevel use_regex is false (GPT-2 splits with its pattern)")
    for option in ("continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(option):
            raise unsupported(f"model {option} is {model[option]!r}")
    if model.get("byte_fallback", False):
        raise unsupported("model byte_fallback is true")
    if model.get("dropout") not in (None, 0, 0.0):
        raise unsupported(f"model dropout is {model['dropout']!r}")

    raw_merges = model.get("merges")
    if not isinstance(raw_merges, list):
        raise TokenizerFormatError(f"{source}: model.merges must be a list")
    merges = _merges_at_once(raw_merges)
    if merges is None:
        merges = [_merge_from(item, number, source) for number, item in enumerate(raw_merges, 1)]

    added: dict[str, int] = {}
    options: dict[str, AddedTokenOptions] = {}
    raw_added = data.get("added_tokens") or []
    if not isinstance(raw_added, list):
        raise TokenizerFormatError(f"{source}: added_tokens must be a list")
    for item in raw_added:
        if not isinstance(item, dict):
            raise TokenizerFormatError(f"{source}: added_tokens entry {item!r} is not an object")
        _add_token(added, item.get("content"), item.get("id"), source)
        options[item["content"]] = _token_options(item, source)

    return TokenizerSpec(
        vocab=_vocab_from(model.get("vocab"), f"{source}: model.vocab"),
        merges=merges,
        vocab_source=source,
        merges_source=source,
        added_tokens=added,
        added_token_options=options,
        ignore_merges=bool(model.get("ignore_merges", False)),
    )


def apply_tokenizer_config(spec: TokenizerSpec, path: PathLike) -> bool:
    """Adds what a `tokenizer_config.json` declares (eos/bos names, added tokens) to `spec`.
    Returns whether it has `added_tokens_decoder`, which makes transformers skip the legacy
    files (`apply_legacy_files`)."""
    source = os.fspath(path)
    data = _read_json(path)
    if not isinstance(data, dict):
        raise TokenizerFormatError(f"{source}: expected a JSON object at the top level")
    decoder = data.get("added_tokens_decoder") or {}
    if not isinstance(decoder, dict):
        raise TokenizerFormatError(f"{source}: added_tokens_decoder must be an object")
    for key, item in decoder.items():
        if not isinstance(item, dict) or not (key.isascii() and key.isdigit()):
            raise TokenizerFormatError(
                f"{source}: added_tokens_decoder entry {key!r} must map an id to an object"
            )
        # Checked on the digits: int() refuses numbers of over 4300 of them with a ValueError.
        if len(key) > len(str(MAX_TOKEN_ID)) or int(key) > MAX_TOKEN_ID:
            raise TokenizerFormatError(
                f"{source}: added_tokens_decoder id {key[:20]}{'...' if len(key) > 20 else ''} "
                f"is beyond the largest token id supported ({MAX_TOKEN_ID})"
            )
        _add_token(spec.added_tokens, item.get("content"), int(key), source)
        # A token tokenizer.json already has keeps its options there, as in transformers.
        spec.added_token_options.setdefault(item["content"], _token_options(item, source))
    _apply_names(spec, data, source)
    return "added_tokens_decoder" in data


def apply_legacy_files(
    spec: TokenizerSpec, special_tokens_map: PathLike | None, added_tokens: PathLike | None
) -> None:
    """Adds what transformers' slow tokenizers saved beside their vocabulary: the special
    tokens' names (`special_tokens_map.json`, over tokenizer_config.json's) and the added
    tokens (`added_tokens.json`, token -> id). Where tokenizer.json lists a token or id too,
    its entry stands, as in transformers."""
    if special_tokens_map is not None:
        source = os.fspath(special_tokens_map)
        data = _read_json(special_tokens_map)
        if not isinstance(data, dict):
            raise TokenizerFormatError(f"{source}: expected a JSON object at the top level")
        _apply_names(spec, data, source)
    if added_tokens is None:
        return
    source = os.fspath(added_tokens)
    data = _read_json(added_tokens)
    if not isinstance(data, dict):
        raise TokenizerFormatError(f"{source}: expected a JSON object mapping tokens to ids")
    taken = {token_id: content for content, token_id in spec.vocab.items()}
    taken.update((token_id, content) for content, token_id in spec.added_tokens.items())
    for content, token_id in data.items():
        if content in spec.added_tokens:
            continue  # tokenizer.json's id wins, as in transformers
        _add_token(spec.added_tokens, content, token_id, source)
        if taken.get(token_id, content) != content:
            # transformers would give the token a new id, which the model was not trained on.
            raise TokenizerFormatError(
                f"{source}: added token {content!r} has id {token_id}, which "
                f"{spec.vocab_source} gives {taken[token_id]!r}"
            )
        # transformers: no strip, single_word off, normalized unless named special.
        spec.added_token_options[content] = AddedTokenOptions(
            normalized=content not in spec.special_names
        )


def _apply_names(spec: TokenizerSpec, data: dict[str, Any], source: str) -> None:
    eos = _token_name(data.get("eos_token"), "eos_token", source)
    bos = _token_name(data.get("bos_token"), "bos_token", source)
    if eos or bos or spec.names_source is None:
        spec.names_source = source  # the file to blame for a name not in the vocabulary
    spec.eos_token = eos or spec.eos_token
    spec.bos_token = bos or spec.bos_token
    for key in _NAMED_SPECIALS:
        name = _token_name(data.get(key), key, source)
        if name is not None:
            spec.special_names.add(name)
    for key in _SPECIAL_LISTS:
        listed = data.get(key)
        if isinstance(listed, list):
            spec.special_names.update(
                name for name in (_token_name(item, key, source) for item in listed) if name
            )


def _read_text(path: PathLike) -> str:
    # Checked for a regular file of bounded size before reading: a FIFO would block forever
    # and /dev/zero would be read until memory runs out.
    raw = read_regular(path, TokenizerFormatError, MAX_TOKENIZER_FILE_BYTES, "a tokenizer file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TokenizerFormatError(f"{os.fspath(path)}: not UTF-8 text ({exc})") from None


def _read_json(path: PathLike) -> Any:
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TokenizerFormatError(f"{os.fspath(path)}: invalid JSON: {exc}") from None
    # ValueError: an integer of more digits than int() converts; RecursionError: nesting
    # deeper than the parser's stack.
    except (ValueError, RecursionError) as exc:
        raise TokenizerFormatError(f"{os.fspath(path)}: invalid JSON: {exc}") from None


def _vocab_from(data: Any, where: str) -> dict[str, int]:
    if not isinstance(data, dict):
        raise TokenizerFormatError(f"{where}: expected a JSON object mapping tokens to ids")
    for token, token_id in data.items():
        # bool is an int subclass; `true` as an id is a broken file, not id 1.
        if type(token_id) is not int or token_id < 0:
            raise TokenizerFormatError(
                f"{where}: token {token!r} has id {token_id!r}, not a non-negative integer"
            )
        if token_id > MAX_TOKEN_ID:
            raise TokenizerFormatError(
                f"{where}: token {token!r} has id {token_id}, beyond the largest token id "
                f"supported ({MAX_TOKEN_ID})"
            )
    return data


def _merges_at_once(items: list[Any]) -> list[tuple[str, str]] | None:
    """The merges, checked and split a whole list at a time (a real file's 50k in a few
    milliseconds), or None when some entry is not a well-formed pair: _merge_from then goes
    through them one by one and names it."""
    if not items:
        return []
    # map() of builtins keeps each pass in C: a generator of per-item tests took longer
    # than the rest of reading the file bar json.loads.
    if set(map(type, items)) == {list}:  # tokenizers >= 0.20: pairs as lists
        if set(map(len, items)) != {2}:
            return None
        lefts, rights = list(map(_FIRST, items)), list(map(_SECOND, items))
        try:
            "".join(lefts), "".join(rights)  # TypeError: not all strings
        except TypeError:
            return None
        return list(zip(lefts, rights, strict=True)) if all(lefts) and all(rights) else None
    try:
        text = "\n".join(items)  # "left right" strings; TypeError: not all strings
    except TypeError:
        return None
    # One space and no newline inside each entry, and neither part empty.
    spaces = list(map(str.count, items, repeat(" ")))
    if (spaces.count(1) != len(items) or text.count("\n") != len(items) - 1
            or text[0] == " " or text[-1] == " " or " \n" in text or "\n " in text):
        return None
    words = text.replace("\n", " ").split(" ")
    return list(zip(words[::2], words[1::2], strict=True))


def _merge_from(item: Any, number: int, source: str) -> tuple[str, str]:
    # tokenizers wrote merges as "left right" strings before 0.20 and as pairs since.
    parts = item.split(" ") if isinstance(item, str) else item
    if (
        not isinstance(parts, list)
        or len(parts) != 2
        or not all(isinstance(part, str) and part for part in parts)
    ):
        raise TokenizerFormatError(
            f"{source}: model.merges entry {number} ({item!r}) is not a pair of tokens"
        )
    return (parts[0], parts[1])


def _add_token(added: dict[str, int], content: Any, token_id: Any, source: str) -> None:
    if not isinstance(content, str) or not content:
        raise TokenizerFormatError(f"{source}: added token content {content!r} is not text")
    if type(token_id) is not int or not 0 <= token_id <= MAX_TOKEN_ID:
        raise TokenizerFormatError(f"{source}: added token {content!r} has id {token_id!r}")
    if added.get(content, token_id) != token_id:
        raise TokenizerFormatError(
            f"{source}: added token {content!r} has two ids, {added[content]} and {token_id}"
        )
    added[content] = token_id


def _token_options(item: dict[str, Any], source: str) -> AddedTokenOptions:
    flags: dict[str, bool] = {}
    for flag in ("single_word", "lstrip", "rstrip", "normalized", "special"):
        value = item.get(flag)
        if value is not None and not isinstance(value, bool):
            raise TokenizerFormatError(
                f"{source}: added token {item.get('content')!r} has {flag} {value!r}, not a "
                "boolean"
            )
        flags[flag] = bool(value)
    # tokenizers' and transformers' default: special tokens are not normalized.
    normalized = item.get("normalized")
    return AddedTokenOptions(
        single_word=flags["single_word"],
        lstrip=flags["lstrip"],
        rstrip=flags["rstrip"],
        normalized=not flags["special"] if normalized is None else normalized,
    )


def _token_name(value: Any, key: str, source: str) -> str | None:
    # transformers writes these as a string or as an AddedToken object with "content".
    if isinstance(value, dict):
        value = value.get("content")
    if value is None or isinstance(value, str):
        return value
    raise TokenizerFormatError(f"{source}: {key} must be a string or an object with content")


def _type_of(component: Any) -> str:
    if isinstance(component, dict):
        return repr(component.get("type"))
    return repr(component)
