"""Loading tokenizer files: the three formats, how `from_pretrained` chooses, and the errors
malformed files raise. A small hand-made vocabulary keeps each case readable."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gpt2cpu import Tokenizer
from gpt2cpu.errors import TokenizerFormatError
from gpt2cpu.tokenizer.bpe import native_merger_class
from gpt2cpu.tokenizer.byte_level import BYTE_TO_CHAR
from tokenizer_references import MERGE_LOOPS, with_merge_loop

MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("l", "l"), ("e", "ll"), ("a", "b"), ("ab", "c")]
EOT = "<|endoftext|>"


def small_vocab() -> dict[str, int]:
    vocab = {char: i for i, char in enumerate(BYTE_TO_CHAR)}
    for left, right in MERGES:
        vocab[left + right] = len(vocab)
    vocab[EOT] = len(vocab)
    return vocab


VOCAB = small_vocab()


def merges_txt(merges: list[tuple[str, str]] = MERGES) -> str:
    return "#version: 0.2\n" + "".join(f"{left} {right}\n" for left, right in merges)


def tokenizer_json(**changes: Any) -> dict[str, Any]:
    """A tokenizer.json like the one `tokenizers` writes for GPT-2, with `changes` applied to
    its top level, or to its model with keys spelled "model.<key>"."""
    data: dict[str, Any] = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": VOCAB[EOT],
                "content": EOT,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": True,
                "special": True,
            }
        ],
        "normalizer": None,
        "pre_tokenizer": {
            "type": "ByteLevel",
            "add_prefix_space": False,
            "trim_offsets": True,
            "use_regex": True,
        },
        "post_processor": {
            "type": "ByteLevel",
            "add_prefix_space": True,
            "trim_offsets": False,
            "use_regex": True,
        },
        "decoder": {
            "type": "ByteLevel",
            "add_prefix_space": True,
            "trim_offsets": True,
            "use_regex": True,
        },
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": VOCAB,
            "merges": [[left, right] for left, right in MERGES],
        },
    }
    for key, value in changes.items():
        if key.startswith("model."):
            data["model"][key.removeprefix("model.")] = value
        else:
            data[key] = value
    return data


def write(path: Path, content: str | bytes | dict[str, Any] | list[Any]) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_text(json.dumps(content, ensure_ascii=False), encoding="utf-8")
    return path


SAMPLE = "the hello abc, the\n  tell <|endoftext|> 東"


@pytest.fixture
def reference() -> Tokenizer:
    return Tokenizer(VOCAB, MERGES)


# -- the three formats --------------------------------------------------------------------------


def test_the_three_formats_load_the_same_tokenizer(tmp_path: Path, reference: Tokenizer) -> None:
    hf_slow = Tokenizer.from_files(
        write(tmp_path / "vocab.json", VOCAB), write(tmp_path / "merges.txt", merges_txt())
    )
    openai = Tokenizer.from_files(
        write(tmp_path / "encoder.json", VOCAB), write(tmp_path / "vocab.bpe", merges_txt())
    )
    hf_fast = Tokenizer.from_tokenizer_json(write(tmp_path / "tokenizer.json", tokenizer_json()))
    for tok in (hf_slow, openai, hf_fast):
        assert tok.encode(SAMPLE) == reference.encode(SAMPLE)
        assert tok.encode(SAMPLE, allowed_special="all") == reference.encode(
            SAMPLE, allowed_special="all"
        )
        assert tok.special_tokens == {EOT: VOCAB[EOT]}
        assert tok.eos_token_id == tok.bos_token_id == VOCAB[EOT]
        assert tok.vocab_size == len(VOCAB)


def test_merges_may_be_strings_in_older_tokenizer_json(tmp_path: Path) -> None:
    data = tokenizer_json(**{"model.merges": [f"{a} {b}" for a, b in MERGES]})
    tok = Tokenizer.from_tokenizer_json(write(tmp_path / "tokenizer.json", data))
    assert [tok.id_to_token(i) for i in tok.encode(" the")] == ["Ġthe"]


def test_merges_txt_without_header_or_final_newline_and_with_crlf(tmp_path: Path) -> None:
    text = "\r\n".join(f"{a} {b}" for a, b in MERGES)
    tok = Tokenizer.from_files(
        write(tmp_path / "vocab.json", VOCAB), write(tmp_path / "merges.txt", text)
    )
    assert tok.encode(SAMPLE) == Tokenizer(VOCAB, MERGES).encode(SAMPLE)


def test_bpe_merges_by_rank_not_by_the_longest_token(reference: Tokenizer) -> None:
    # "abc" is a token, but "abc" is "ab" + "c" only because merge 6 joins them.
    assert [reference.id_to_token(i) for i in reference.encode("abc")] == ["abc"]
    swapped = Tokenizer({**VOCAB, "bc": len(VOCAB)}, [("b", "c"), *MERGES])
    assert [swapped.id_to_token(i) for i in swapped.encode("abc")] == ["a", "bc"]


@pytest.mark.parametrize("merge_loop", MERGE_LOOPS)
def test_ignore_merges_takes_a_piece_that_is_a_token_whole(tmp_path: Path, merge_loop: str) -> None:
    vocab = {**VOCAB, "bc": len(VOCAB)}
    merges = [["b", "c"], *map(list, MERGES)]
    plain = tokenizer_json(**{"model.vocab": vocab, "model.merges": merges})
    whole = tokenizer_json(
        **{"model.vocab": vocab, "model.merges": merges, "model.ignore_merges": True}
    )
    for data, expected in ((plain, ["a", "bc"]), (whole, ["abc"])):
        path = write(tmp_path / "tokenizer.json", data)
        tok = with_merge_loop(merge_loop, partial(Tokenizer.from_tokenizer_json, path))
        assert [tok.id_to_token(i) for i in tok.encode("abc")] == expected
        tokenizers = pytest.importorskip("tokenizers")
        reference = tokenizers.Tokenizer.from_file(str(path))
        assert tok.encode("abc ab") == reference.encode("abc ab").ids


# -- from_pretrained ----------------------------------------------------------------------------


def test_from_pretrained_prefers_tokenizer_json_then_vocab_json(tmp_path: Path) -> None:
    pad = {"id": len(VOCAB), "content": "<|pad|>", "special": True}
    write(tmp_path / "encoder.json", VOCAB)
    write(tmp_path / "vocab.bpe", merges_txt())
    assert Tokenizer.from_pretrained(tmp_path).vocab_size == len(VOCAB)
    write(tmp_path / "vocab.json", {**VOCAB, "<|sep|>": len(VOCAB)})
    write(tmp_path / "merges.txt", merges_txt())
    assert "<|sep|>" in Tokenizer.from_pretrained(tmp_path).special_tokens
    added = tokenizer_json()["added_tokens"] + [pad]
    write(tmp_path / "tokenizer.json", tokenizer_json(added_tokens=added))
    assert set(Tokenizer.from_pretrained(str(tmp_path)).special_tokens) == {EOT, "<|pad|>"}


def test_from_pretrained_reads_tokenizer_config(tmp_path: Path) -> None:
    write(tmp_path / "vocab.json", VOCAB)
    write(tmp_path / "merges.txt", merges_txt())
    write(
        tmp_path / "tokenizer_config.json",
        {
            "eos_token": {"content": "<|im_end|>", "special": True},
            "bos_token": EOT,
            "added_tokens_decoder": {str(len(VOCAB)): {"content": "<|im_end|>", "special": True}},
        },
    )
    tok = Tokenizer.from_pretrained(tmp_path)
    assert tok.eos_token_id == len(VOCAB)
    assert tok.bos_token_id == VOCAB[EOT]
    assert tok.vocab_size == len(VOCAB) + 1
    assert tok.encode("a<|im_end|>", allowed_special={"<|im_end|>"}) == [VOCAB["a"], len(VOCAB)]
    assert tok.decode([len(VOCAB)]) == "<|im_end|>"


@pytest.mark.parametrize(
    "files",
    [
        {},
        {"README.md": "# not a tokenizer"},
        {"vocab.json": "{}"},
        {"merges.txt": "#version: 0.2\n"},
        {"encoder.json": "{}"},
    ],
)
def test_from_pretrained_raises_file_not_found(tmp_path: Path, files: dict[str, str]) -> None:
    for name, content in files.items():
        write(tmp_path / name, content)
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        Tokenizer.from_pretrained(tmp_path)


def test_from_pretrained_names_the_missing_half(tmp_path: Path) -> None:
    write(tmp_path / "vocab.json", VOCAB)
    with pytest.raises(FileNotFoundError, match="merges.txt"):
        Tokenizer.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such directory"):
        Tokenizer.from_pretrained(tmp_path / "absent")


# -- malformed files ------------------------------------------------------------------------------

VOCAB_WITHOUT_NEWLINE = {token: i for token, i in VOCAB.items() if token != "Ċ"}

MALFORMED_VOCAB_AND_MERGES: dict[str, tuple[str, Any, Any, str]] = {
    # case: (file at fault, vocab.json content, merges.txt content, message pattern)
    "vocab not JSON": ("vocab.json", '{"a": 1,', merges_txt(), "invalid JSON"),
    "vocab not UTF-8": ("vocab.json", b'{"\xff": 1}', merges_txt(), "not UTF-8"),
    "vocab a list": ("vocab.json", ["a"], merges_txt(), "JSON object"),
    "id a string": ("vocab.json", {**VOCAB, "x y": "7"}, merges_txt(), "has id '7'"),
    "id negative": ("vocab.json", {**VOCAB, "xy": -1}, merges_txt(), "has id -1"),
    "id a bool": ("vocab.json", {**VOCAB, "xy": True}, merges_txt(), "has id True"),
    "ids shared": ("vocab.json", {**VOCAB, "xy": 3}, merges_txt(), "share id 3"),
    "byte missing": ("vocab.json", VOCAB_WITHOUT_NEWLINE, merges_txt(), "no token for byte 0x0a"),
    "merge of one": ("merges.txt", VOCAB, merges_txt() + "abc\n", "line 9"),
    "merge of three": ("merges.txt", VOCAB, "a b c\n", "line 1"),
    "merge unknown part": ("merges.txt", VOCAB, merges_txt([("x", "yz")]), "'yz'"),
    "merge unknown result": ("merges.txt", VOCAB, merges_txt([("x", "y")]), "'xy'"),
    "merges not UTF-8": ("merges.txt", VOCAB, b"a \xc3\n", "not UTF-8"),
}


@pytest.mark.parametrize("case", MALFORMED_VOCAB_AND_MERGES)
def test_malformed_vocab_and_merges_name_the_file(tmp_path: Path, case: str) -> None:
    culprit, vocab, merges, message = MALFORMED_VOCAB_AND_MERGES[case]
    vocab_path = write(tmp_path / "vocab.json", vocab)
    merges_path = write(tmp_path / "merges.txt", merges)
    for load in (
        partial(Tokenizer.from_files, vocab_path, merges_path),
        partial(Tokenizer.from_pretrained, tmp_path),
    ):
        with pytest.raises(TokenizerFormatError, match=message) as raised:
            load()
        assert str(raised.value).startswith(str(tmp_path / culprit))
        assert isinstance(raised.value, ValueError)


MALFORMED_TOKENIZER_JSON: dict[str, tuple[Any, str]] = {
    "not JSON": ('{"model": ', "invalid JSON"),
    "not an object": ([1, 2], "JSON object"),
    "WordPiece": (tokenizer_json(model={"type": "WordPiece", "vocab": {}}), "'WordPiece'"),
    "Unigram": (tokenizer_json(model={"type": "Unigram", "vocab": []}), "'Unigram'"),
    "normalizer": (tokenizer_json(normalizer={"type": "NFC"}), "normalizer"),
    "Metaspace": (tokenizer_json(pre_tokenizer={"type": "Metaspace"}), "'Metaspace'"),
    "no pre-tokenizer": (tokenizer_json(pre_tokenizer=None), "pre_tokenizer"),
    "prefix space": (
        tokenizer_json(pre_tokenizer={"type": "ByteLevel", "add_prefix_space": True}),
        "add_prefix_space",
    ),
    "no regex": (
        tokenizer_json(pre_tokenizer={"type": "ByteLevel", "use_regex": False}),
        "use_regex",
    ),
    "suffix": (tokenizer_json(**{"model.end_of_word_suffix": "</w>"}), "end_of_word_suffix"),
    "byte fallback": (tokenizer_json(**{"model.byte_fallback": True}), "byte_fallback"),
    "dropout": (tokenizer_json(**{"model.dropout": 0.1}), "dropout"),
    "merges missing": (tokenizer_json(**{"model.merges": None}), "merges must be a list"),
    "merge not a pair": (tokenizer_json(**{"model.merges": [["a"]]}), "entry 1"),
    "merge unknown": (tokenizer_json(**{"model.merges": [["q", "zz"]]}), "'zz'"),
    "vocab missing": (tokenizer_json(**{"model.vocab": None}), "model.vocab"),
    "added token no id": (tokenizer_json(added_tokens=[{"content": "<x>"}]), "'<x>'"),
    "added token option not a boolean": (
        tokenizer_json(added_tokens=[{"content": "<x>", "id": 300, "lstrip": "yes"}]),
        "added token '<x>' has lstrip 'yes'",
    ),
    "added token twice": (
        tokenizer_json(added_tokens=[{"content": "<x>", "id": 300}, {"content": "<x>", "id": 301}]),
        "two ids",
    ),
}


@pytest.mark.parametrize("case", MALFORMED_TOKENIZER_JSON)
def test_malformed_tokenizer_json_names_the_file(tmp_path: Path, case: str) -> None:
    content, message = MALFORMED_TOKENIZER_JSON[case]
    path = write(tmp_path / "tokenizer.json", content)
    for load in (
        partial(Tokenizer.from_tokenizer_json, path),
        partial(Tokenizer.from_pretrained, tmp_path),
    ):
        with pytest.raises(TokenizerFormatError, match=message) as raised:
            load()
        assert str(raised.value).startswith(str(path))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("{", "invalid JSON"),
        ({"eos_token": "<|missing|>"}, "eos token '<|missing|>'"),
        ({"bos_token": 5}, "bos_token must be"),
        ({"added_tokens_decoder": {"x": {"content": "<y>"}}}, "'x'"),
    ],
)
def test_malformed_tokenizer_config(tmp_path: Path, config: Any, message: str) -> None:
    write(tmp_path / "vocab.json", VOCAB)
    write(tmp_path / "merges.txt", merges_txt())
    write(tmp_path / "tokenizer_config.json", config)
    with pytest.raises(TokenizerFormatError, match=message) as raised:
        Tokenizer.from_pretrained(tmp_path)
    assert str(raised.value).startswith(str(tmp_path / "tokenizer_config.json"))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("added_tokens.json", ["<x>"], "JSON object"),
        ("added_tokens.json", {"<x>": "300"}, "'<x>' has id '300'"),
        ("added_tokens.json", {"<x>": VOCAB[EOT]}, "'<x>' has id 263, which .* gives"),
        ("special_tokens_map.json", {"eos_token": 5}, "eos_token must be"),
        ("special_tokens_map.json", {"eos_token": "<|missing|>"}, "eos token '<|missing|>'"),
    ],
)
def test_malformed_legacy_files(tmp_path: Path, name: str, content: Any, message: str) -> None:
    write(tmp_path / "vocab.json", VOCAB)
    write(tmp_path / "merges.txt", merges_txt())
    write(tmp_path / name, content)
    with pytest.raises(TokenizerFormatError, match=message) as raised:
        Tokenizer.from_pretrained(tmp_path)
    assert str(raised.value).startswith(str(tmp_path / name))


def test_legacy_files_only_without_added_tokens_decoder(tmp_path: Path) -> None:
    write(tmp_path / "vocab.json", VOCAB)
    write(tmp_path / "merges.txt", merges_txt())
    write(tmp_path / "added_tokens.json", {"<x>": len(VOCAB)})
    write(tmp_path / "special_tokens_map.json", {"eos_token": {"content": "<x>"}})
    write(tmp_path / "tokenizer_config.json", {"eos_token": EOT})
    tok = Tokenizer.from_pretrained(tmp_path)
    assert (tok.vocab_size, tok.eos_token_id) == (len(VOCAB) + 1, len(VOCAB))
    assert tok.encode("a<x>", allowed_special="all") == [VOCAB["a"], len(VOCAB)]
    write(tmp_path / "tokenizer_config.json", {"eos_token": EOT, "added_tokens_decoder": {}})
    tok = Tokenizer.from_pretrained(tmp_path)
    assert (tok.vocab_size, tok.eos_token_id) == (len(VOCAB), VOCAB[EOT])


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Tokenizer.from_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    with pytest.raises(FileNotFoundError):
        Tokenizer.from_tokenizer_json(tmp_path / "tokenizer.json")


# -- the API around the tables --------------------------------------------------------------------


@pytest.mark.parametrize("bad_id", [len(VOCAB), -1, 10**12, 2**63])
def test_decoding_an_unknown_id_names_it(reference: Tokenizer, bad_id: int) -> None:
    for decode in (reference.decode, reference.decode_bytes):
        with pytest.raises(ValueError, match=f"token id {bad_id} is not in the vocabulary"):
            decode([5, bad_id])
    with pytest.raises(ValueError, match=str(bad_id)):
        reference.id_to_token(bad_id)


def test_decode_takes_numpy_ids(reference: Tokenizer) -> None:
    ids = reference.encode(SAMPLE)
    for dtype in (np.int64, np.int32, np.uint16):
        assert reference.decode(np.array(ids, dtype=dtype)) == SAMPLE
    with pytest.raises(ValueError, match=r"^token id 9999 is not"):
        reference.decode(np.array([9999]))
    assert reference.decode_batch([ids, []]) == [SAMPLE, ""]


def test_an_id_hole_beyond_the_vocabulary_is_unknown() -> None:
    tok = Tokenizer(VOCAB, MERGES, {"<|far|>": 1000})
    assert tok.vocab_size == 1001
    assert tok.decode([1000]) == "<|far|>"
    with pytest.raises(ValueError, match="999"):
        tok.decode([999])


def test_allowed_special_must_name_special_tokens(reference: Tokenizer) -> None:
    with pytest.raises(ValueError, match="<|nope|>"):
        reference.encode("x", allowed_special={"<|nope|>"})
    with pytest.raises(ValueError, match="'all' or a set"):
        reference.encode("x", allowed_special=EOT)  # type: ignore[arg-type]
    assert reference.encode(EOT, allowed_special=set()) == reference.encode(EOT)
    assert reference.encode(EOT, allowed_special=frozenset({EOT})) == [VOCAB[EOT]]


def test_longest_special_token_wins() -> None:
    tok = Tokenizer(VOCAB, MERGES, {"<a>": 300, "<a><b>": 301, "<b>": 302})
    assert tok.encode("<a><b><a>x", allowed_special="all") == [301, 300, VOCAB["x"]]
    assert tok.encode("<a><b>", allowed_special={"<a>", "<b>"}) == [300, 302]


def test_encode_takes_only_str(reference: Tokenizer) -> None:
    with pytest.raises(TypeError, match="bytes"):
        reference.encode(b"the")  # type: ignore[arg-type]


def test_token_lookups(reference: Tokenizer) -> None:
    the = reference.token_to_id("Ġthe")
    assert the == VOCAB["Ġthe"]
    assert reference.encode(" the") == [the]
    assert reference.id_to_token(the) == "Ġthe"
    assert reference.token_bytes(the) == b" the"
    assert reference.token_to_id(EOT) == VOCAB[EOT]
    assert reference.token_to_id("nope") is None
    assert "vocab_size=" in repr(reference)


def test_no_eos_without_endoftext() -> None:
    vocab = {token: i for token, i in VOCAB.items() if token != EOT}
    tok = Tokenizer(vocab, MERGES)
    assert tok.eos_token_id is None and tok.bos_token_id is None
    assert tok.special_tokens == {}
    with pytest.raises(TokenizerFormatError, match="eos token '<s>'"):
        Tokenizer(vocab, MERGES, eos_token="<s>")


def test_special_tokens_mapping_is_read_only(reference: Tokenizer) -> None:
    with pytest.raises(TypeError):
        reference.special_tokens[EOT] = 1  # type: ignore[index]


def test_merge_loop_choice_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPT2CPU_BPE", "fortran")
    with pytest.raises(ValueError, match="GPT2CPU_BPE"):
        Tokenizer(VOCAB, MERGES)
    monkeypatch.setenv("GPT2CPU_BPE", "native")
    if native_merger_class() is None:
        with pytest.raises(RuntimeError, match="not built"):
            Tokenizer(VOCAB, MERGES)
    else:
        assert Tokenizer(VOCAB, MERGES).encode(SAMPLE) == Tokenizer(VOCAB, MERGES).encode(SAMPLE)


MERGE_LISTS: list[list[Any]] = [
    [],
    ["Ġ t", "h e", "Ġt he"],
    [["Ġ", "t"], ["h", "e"]],
    ["a b", "a  b"],        # two spaces: a part is empty
    ["a b", " b"],          # empty left part
    ["a b", "a "],          # empty right part
    ["a b c", "ab"],        # two spaces in one entry, none in another: one space each on average
    ["a\nb c"],             # a newline inside an entry
    ["a b", 7],
    [["a", "b"], ["a", ""]],
    [["a", "b"], ["a", "b", "c"]],
    [["a", "b"], ["a", 3]],
    [["a", "b"], "a b"],
    [["a", "b"], ("a", "b")],
    [["a", "b"], ["c", "d"]],
]


@pytest.mark.parametrize("items", MERGE_LISTS)
def test_merges_read_at_once_as_one_by_one(items: list[Any]) -> None:
    """The whole-list fast path gives the one-by-one reader's merges, or declines (None)
    wherever that reader would name a bad entry."""
    from gpt2cpu.tokenizer.formats import _merge_from, _merges_at_once

    try:
        slow: list[tuple[str, str]] | None = [
            _merge_from(item, i, "f") for i, item in enumerate(items, 1)]
    except TokenizerFormatError:
        slow = None
    fast = _merges_at_once(items)
    if slow is None:
        assert fast is None
    elif fast is not None:
        assert fast == slow
    if slow is not None and (all(isinstance(i, str) and "\n" not in i for i in items)
                             or all(type(i) is list for i in items)):
        assert fast is not None, "a well-formed list takes the fast path"


def test_a_vocabulary_is_spelled_at_once_as_token_by_token() -> None:
    from gpt2cpu.tokenizer.byte_level import BYTE_TO_CHAR, spelled_bytes, token_bytes

    alphabet = list(BYTE_TO_CHAR) + ["ĠtheĊ", "", "Ā" * 5]
    assert spelled_bytes(alphabet) == [token_bytes(t) for t in alphabet]
    assert spelled_bytes(alphabet[:3]) == [b"\x00", b"\x01", b"\x02"]
    mixed = ["Ġa", "<|endoftext|>", " plain space", "é", "Ġ", "中"]  # outside the alphabet: None
    assert spelled_bytes(mixed) == [token_bytes(t) for t in mixed]
    assert spelled_bytes(mixed) == [b" a", b"<|endoftext|>", None, b"\xe9", b" ", None]


def _spec(vocab: dict[str, Any], merges: list[Any], **fields: Any) -> Any:
    from gpt2cpu.tokenizer.formats import TokenizerSpec

    return TokenizerSpec(vocab=vocab, merges=merges, vocab_source="v", merges_source="m",
                         **fields)


def _odd_vocab() -> dict[str, Any]:
    vocab: dict[str, Any] = dict(VOCAB)
    vocab["中"] = 300  # outside the byte-level alphabet: its UTF-8
    vocab[BYTE_TO_CHAR[0xFF] + BYTE_TO_CHAR[0xFE]] = 301  # no merge makes it, not UTF-8
    vocab["plain text"] = 302  # no merge makes it, and it is text: special
    vocab["Ġthe"] = 303  # a pair listed twice below
    return vocab


NATIVE_CASES: dict[str, Any] = {
    "small": lambda: _spec(dict(VOCAB), list(MERGES)),
    "odd tokens, a pair twice": lambda: _spec(
        _odd_vocab(), [*MERGES, ("Ġ", "t"), ("Ġt", "he")]),
    "merges as lists": lambda: _spec(dict(VOCAB), [list(m) for m in MERGES]),
    "ignore_merges": lambda: _spec(dict(VOCAB), list(MERGES), ignore_merges=True),
    "added tokens": lambda: _spec(dict(VOCAB), list(MERGES), added_tokens={"<pad>": 500}),
    "sparse ids": lambda: _spec({**VOCAB, "far": 10**6}, list(MERGES)),
    "numpy ids": lambda: _spec({t: np.int64(i) for t, i in VOCAB.items()}, list(MERGES)),
    "str subclass token": lambda: _spec({**VOCAB, type("S", (str,), {})("x y"): 400},
                                        list(MERGES)),
    "unordered ids": lambda: _spec(dict(reversed(VOCAB.items())), list(MERGES)),
}


@pytest.mark.parametrize("case", NATIVE_CASES)
def test_native_vocabulary_tables_match_python(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """compile_vocabulary's one C++ pass gives the tables its Python passes give, or leaves a
    vocabulary it does not take (sparse or non-int ids, str subclasses) to them."""
    from gpt2cpu.tokenizer.vocabulary import compile_vocabulary

    if native_merger_class() is None:
        pytest.skip("the C++ engine is not built")
    native = compile_vocabulary(NATIVE_CASES[case](), native=True)
    python = compile_vocabulary(NATIVE_CASES[case](), native=False)
    assert python.merger is None
    assert (native.merger is None) == (case in ("sparse ids", "numpy ids", "str subclass token"))
    for name in ("byte_ids", "id_to_bytes", "id_to_token", "token_to_id", "special_tokens",
                 "eos_token_id", "bos_token_id", "vocab_size", "merge_count"):
        got, want = getattr(native, name), getattr(python, name)
        assert got == want, name
        if isinstance(want, dict):
            assert list(got) == list(want), f"{name}: order"
    text = "the hello abc Ġthe 中 plain text" + SAMPLE
    encoded = Tokenizer._from_spec(NATIVE_CASES[case]()).encode(text)
    monkeypatch.setenv("GPT2CPU_BPE", "python")
    assert encoded == Tokenizer._from_spec(NATIVE_CASES[case]()).encode(text)


@pytest.mark.parametrize(
    ("vocab", "merges", "message"),
    [
        ({**VOCAB, "again": 5}, MERGES, "share id 5"),
        ({t: i for t, i in VOCAB.items() if t != "a"}, MERGES, "no token for byte 0x61"),
        (VOCAB, [*MERGES, ("x", "yz")], "needs token 'yz'"),
        (VOCAB, [*MERGES, ("x", "y")], "needs token 'xy'"),
    ],
)
def test_native_vocabulary_leaves_errors_to_python(
    vocab: dict[str, int], merges: list[tuple[str, str]], message: str
) -> None:
    from gpt2cpu.tokenizer.vocabulary import compile_vocabulary

    for native in (True, False):
        if native and native_merger_class() is None:
            continue
        with pytest.raises(TokenizerFormatError, match=message):
            compile_vocabulary(_spec(dict(vocab), list(merges)), native=native)


def test_loading_leaves_the_garbage_collector_as_it_was(tmp_path: Path) -> None:
    import gc

    (tmp_path / "tokenizer.json").write_text(json.dumps(tokenizer_json()), encoding="utf-8")
    was = gc.isenabled()
    try:
        for enabled in (True, False):
            (gc.enable if enabled else gc.disable)()
            Tokenizer.from_pretrained(tmp_path)
            assert gc.isenabled() == enabled
            with pytest.raises(FileNotFoundError):
                Tokenizer.from_pretrained(tmp_path / "missing")
            assert gc.isenabled() == enabled
    finally:
        (gc.enable if was else gc.disable)()
