"""gpt2cpu's tokenizer against tiktoken and Hugging Face on the real GPT-2 vocabulary.

A note on the references: OpenAI's GPT-2 `encoder.py`, which gpt2cpu mirrors, splits text
with the `regex` package, so which characters count as letters (\\p{L}) or digits (\\p{N})
follows the Unicode version of the installed `regex`. tiktoken (Rust `fancy-regex`) and
Hugging Face (Oniguruma) carry their own Unicode tables. Hugging Face's pre-tokenizer does
split some recently assigned characters (U+0558, for one) differently from `regex`, yet over
every code point below (and every one up to U+10FFFF, checked once by hand) the token ids of
all three agree: GPT-2 has no merges that cross such characters. No test input needed an
exception.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from gpt2cpu import Tokenizer
from gpt2cpu.errors import TokenizerFormatError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizer_corpus import KINDS, corpus
from tokenizer_references import (
    ENDOFTEXT,
    MERGE_LOOPS,
    gpt2_tokenizer,
    hf_gpt2_directory,
    hf_gpt2_fast,
    tiktoken_gpt2,
    tokenizers_gpt2_json,
)


@pytest.fixture(scope="module", params=MERGE_LOOPS)
def tok(request: pytest.FixtureRequest) -> Tokenizer:
    return gpt2_tokenizer(request.param)


@pytest.fixture(scope="module")
def tiktoken_enc() -> Any:
    return tiktoken_gpt2()


@pytest.fixture(scope="module")
def hf_fast(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return hf_gpt2_fast(tmp_path_factory.mktemp("hf_gpt2"))


@pytest.fixture(scope="module")
def documents() -> list[tuple[str, str]]:
    return corpus()


def hf_encode_batch(hf_fast: Any, texts: Sequence[str]) -> list[list[int]]:
    # The backend tokenizer with add_special_tokens=False is GPT2TokenizerFast's encode minus
    # its handling of added tokens in the text, which the special-token tests cover.
    encodings = hf_fast.backend_tokenizer.encode_batch(list(texts), add_special_tokens=False)
    return [encoding.ids for encoding in encodings]


def assert_same_ids(
    documents: Sequence[tuple[str, str]],
    ours: Sequence[list[int]],
    theirs: Sequence[list[int]],
    who: str,
    decode: Callable[[list[int]], str],
) -> None:
    assert len(ours) == len(theirs) == len(documents)
    mismatches = [i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b]
    if mismatches:
        i = mismatches[0]
        kind, text = documents[i]
        first = next(
            (j for j, (a, b) in enumerate(zip(ours[i], theirs[i], strict=False)) if a != b),
            min(len(ours[i]), len(theirs[i])),
        )
        pytest.fail(
            f"{len(mismatches)} of {len(documents)} documents differ from {who}; the first is "
            f"#{i} ({kind}) {text[:300]!r}\n at token {first}: ours "
            f"{[decode([t]) for t in ours[i][first : first + 5]]} vs "
            f"{[decode([t]) for t in theirs[i][first : first + 5]]}"
        )


def test_corpus_is_over_a_megabyte_of_every_kind(documents: list[tuple[str, str]]) -> None:
    assert sum(len(text.encode("utf-8")) for _, text in documents) >= 1_000_000
    assert {kind for kind, _ in documents} == {*KINDS, "empty"}
    assert ("empty", "") in documents
    text = "".join(text for _, text in documents)
    for needle in ("'S", "'ll", "'LL", "\u200d", "\U0001f3fd", "\u0301", "\x00", "   \n", "\t"):
        assert needle in text, needle


def test_corpus_ids_match_tiktoken(
    tok: Tokenizer, tiktoken_enc: Any, documents: list[tuple[str, str]]
) -> None:
    texts = [text for _, text in documents]
    theirs = tiktoken_enc.encode_ordinary_batch(texts, num_threads=1)
    assert_same_ids(documents, tok.encode_batch(texts), theirs, "tiktoken", tok.decode)


def test_corpus_ids_match_hugging_face(
    tok: Tokenizer, hf_fast: Any, documents: list[tuple[str, str]]
) -> None:
    texts = [text for _, text in documents]
    theirs = hf_encode_batch(hf_fast, texts)
    assert_same_ids(documents, tok.encode_batch(texts), theirs, "Hugging Face", tok.decode)


def test_whole_corpus_as_one_text(
    tok: Tokenizer, tiktoken_enc: Any, hf_fast: Any, documents: list[tuple[str, str]]
) -> None:
    # One long call: the documents' boundaries now fall inside pre-tokens.
    text = "".join(text for _, text in documents)
    ours = tok.encode(text)
    assert ours == tiktoken_enc.encode_ordinary(text)
    assert ours == hf_encode_batch(hf_fast, [text])[0]
    assert tok.decode(ours) == text


def test_corpus_decodes_like_the_references(
    tok: Tokenizer, tiktoken_enc: Any, hf_fast: Any, documents: list[tuple[str, str]]
) -> None:
    texts = [text for _, text in documents[:400]]
    for text, ids in zip(texts, tok.encode_batch(texts), strict=True):
        assert tok.decode(ids) == text
        assert tiktoken_enc.decode(ids) == text
    assert tok.decode_batch(tok.encode_batch(texts)) == texts
    assert hf_fast.decode(tok.encode(texts[1]), clean_up_tokenization_spaces=False) == texts[1]


def test_every_code_point_in_context(tok: Tokenizer, tiktoken_enc: Any, hf_fast: Any) -> None:
    # Each character alone, doubled, after a letter, after a space and before a digit: the
    # places where its class (letter, digit, space, other) decides the split.
    code_points = [
        c for c in (*range(0x10000), *range(0x1F000, 0x20000)) if not 0xD800 <= c < 0xE000
    ]
    texts = [
        "".join(f"a{chr(c)}{chr(c)} b{chr(c)} {chr(c)}1\n" for c in code_points[i : i + 256])
        for i in range(0, len(code_points), 256)
    ]
    documents = [("code points", text) for text in texts]
    ours = tok.encode_batch(texts)
    assert_same_ids(
        documents, ours, tiktoken_enc.encode_ordinary_batch(texts), "tiktoken", tok.decode
    )
    assert_same_ids(documents, ours, hf_encode_batch(hf_fast, texts), "Hugging Face", tok.decode)


@pytest.mark.parametrize("text", ["a\ud800b", "\udfff", "x \ud83d", "\ud83d\ude00 ok",
                                  "\ud800\ud800 \udc00<|endoftext|>"])
def test_lone_surrogates_encode_as_tiktoken_does(tok: Tokenizer, tiktoken_enc: Any,
                                                 text: str) -> None:
    """UTF-8 cannot encode a surrogate: tiktoken reads a lone one as U+FFFD (and a pair as
    its character); encode raised UnicodeEncodeError."""
    assert tok.encode(text) == tiktoken_enc.encode(text, disallowed_special=())
    assert tok.encode(text, allowed_special="all") == tiktoken_enc.encode(
        text, allowed_special="all")


def test_empty_string(tok: Tokenizer, tiktoken_enc: Any, hf_fast: Any) -> None:
    assert tok.encode("") == tiktoken_enc.encode_ordinary("") == hf_encode_batch(hf_fast, [""])[0]
    assert tok.encode("") == []
    assert tok.decode([]) == ""


def test_contractions_follow_gpt2s_case_sensitive_pattern(
    tok: Tokenizer, tiktoken_enc: Any
) -> None:
    text = "He's she'S it'LL we'll They'Re you'VE I'm I'M she'd HE'D don't DON'T"
    ids = tok.encode(text)
    assert ids == tiktoken_enc.encode_ordinary(text)
    pieces = [tok.decode([i]) for i in ids]
    assert "'s" in pieces and "'ll" in pieces and "'S" not in pieces


# -- special tokens ---------------------------------------------------------------------------

SPECIAL_TEXTS = [
    ENDOFTEXT,
    f"Hello{ENDOFTEXT}world",
    f"a {ENDOFTEXT} b{ENDOFTEXT}{ENDOFTEXT}\n{ENDOFTEXT}",
    "<|endoftext|<|endoftext|>|> <|endoftext>",
]


@pytest.mark.parametrize("text", SPECIAL_TEXTS)
def test_special_token_text_is_ordinary_by_default(
    tok: Tokenizer, tiktoken_enc: Any, hf_fast: Any, text: str
) -> None:
    ours = tok.encode(text)
    assert ours == tiktoken_enc.encode_ordinary(text)
    assert ours == hf_fast(text, split_special_tokens=True)["input_ids"]
    assert 50256 not in ours
    assert tok.decode(ours) == text


@pytest.mark.parametrize("text", SPECIAL_TEXTS)
def test_allowed_special_token_is_one_id(
    tok: Tokenizer, tiktoken_enc: Any, hf_fast: Any, text: str
) -> None:
    ours = tok.encode(text, allowed_special="all")
    assert ours == tiktoken_enc.encode(text, allowed_special="all")
    assert ours == tok.encode(text, allowed_special={ENDOFTEXT})
    assert ours == hf_fast(text)["input_ids"]
    assert ours.count(50256) == text.count(ENDOFTEXT)
    assert tok.decode(ours) == text


def test_special_token_ids(tok: Tokenizer, hf_fast: Any) -> None:
    assert tok.vocab_size == 50257 == len(hf_fast)
    assert tok.eos_token_id == 50256 == hf_fast.eos_token_id
    assert tok.bos_token_id == 50256 == hf_fast.bos_token_id
    assert dict(tok.special_tokens) == {ENDOFTEXT: 50256}


# -- tokenizer.json ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizers_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tokenizers_gpt2_json(tmp_path_factory.mktemp("tokenizers") / "tokenizer.json")


def test_tokenizer_json_from_tokenizers_matches(
    tok: Tokenizer, tokenizers_json: Path, documents: list[tuple[str, str]]
) -> None:
    tokenizers = pytest.importorskip("tokenizers")
    from_json = Tokenizer.from_tokenizer_json(tokenizers_json)
    reference = tokenizers.Tokenizer.from_file(str(tokenizers_json))
    texts = [text for _, text in documents[::4]]
    ours = from_json.encode_batch(texts)
    assert ours == tok.encode_batch(texts)
    theirs = [e.ids for e in reference.encode_batch(texts, add_special_tokens=False)]
    assert_same_ids(documents[::4], ours, theirs, "tokenizers' tokenizer.json", tok.decode)
    assert from_json.special_tokens == tok.special_tokens
    assert from_json.eos_token_id == 50256
    assert (
        from_json.encode(SPECIAL_TEXTS[2], allowed_special="all")
        == reference.encode(SPECIAL_TEXTS[2]).ids
    )


def test_directory_saved_by_transformers(tok: Tokenizer, hf_fast: Any, tmp_path: Path) -> None:
    hf_fast.save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer.json").is_file()
    loaded = Tokenizer.from_pretrained(tmp_path)
    text = "Saved and loaded: naïve 東京 👩🏽‍💻 '  \n"
    assert loaded.encode(text) == tok.encode(text) == hf_fast(text)["input_ids"]
    assert loaded.eos_token_id == hf_fast.eos_token_id


# -- properties -------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=60))
def test_arbitrary_text_matches_tiktoken(tok: Tokenizer, tiktoken_enc: Any, text: str) -> None:
    assert tok.encode(text) == tiktoken_enc.encode_ordinary(text)


@settings(max_examples=300, deadline=None)
@given(ids=st.lists(st.integers(0, 50255), max_size=30))
def test_arbitrary_ids_decode_like_the_references(
    tok: Tokenizer, tiktoken_enc: Any, hf_fast: Any, ids: list[int]
) -> None:
    # Mostly invalid UTF-8: both references replace bad bytes as Python's decoder does.
    ours = tok.decode(ids)
    assert ours == tiktoken_enc.decode(ids)
    assert ours == hf_fast.backend_tokenizer.decode(ids, skip_special_tokens=False)


# -- added tokens' options and transformers' legacy files -------------------------------------

OPTION_TEXTS = [
    "a <|sep|> b", "<|sep|>", " <|sep|> ", "a<|sep|>b", "a  \t<|sep|>\n\n b", "<|sep|><|sep|>",
    "<|sep|> <|sep|>", "  <|sep|>  <|user|>  ", "hi\u3000<|sep|>\u00a0there", "\x1c<|sep|>\x85",
    "x<|user|>y", "<|user|>", "x <|user|> y", "<|user|>y", "x<|user|>", "é<|user|>", "_<|user|>",
    "1<|user|>", "-<|user|>-", "<|user|><|user|>", " <|user|><|sep|> ", "a\u0301<|user|>",
    "<|l|>", " <|l|> ", "a   <|l|>   b", "<|r|> ", "<|r|><|l|>", "<|r|>   <|l|>", "tok<|r|>  x",
    "word", "a word b", "awordb", "x word<|sep|>word y", f"{ENDOFTEXT} <|sep|> {ENDOFTEXT}",
]


def option_tokens(case: str) -> tuple[list[Any], bool]:
    """(AddedTokens, whether added as special) for each case of `test_added_token_options`."""
    added_token = pytest.importorskip("tokenizers").AddedToken
    if case == "special":
        return [added_token("<|sep|>", lstrip=True, rstrip=True),
                added_token("<|user|>", single_word=True), added_token("<|l|>", lstrip=True),
                added_token("<|r|>", rstrip=True)], True
    if case == "special, some normalized":
        # Normalized tokens are looked for after the others, in the text between them.
        return [added_token("<|sep|>", lstrip=True, rstrip=True, normalized=True),
                added_token("<|user|>", single_word=True, lstrip=True),
                added_token("<|l|>", lstrip=True, normalized=True),
                added_token("<|r|>", rstrip=True),
                added_token("word", single_word=True, normalized=True)], True
    return [added_token("<|sep|>", lstrip=True, rstrip=True),
            added_token("<|user|>", single_word=True),
            added_token("word", single_word=True, rstrip=True),
            added_token("<|l|>", lstrip=True, normalized=False)], False


@pytest.mark.parametrize("source", ["tokenizer.json", "tokenizer_config.json"])
@pytest.mark.parametrize("case", ["special", "special, some normalized", "not special"])
def test_added_token_options_match_hugging_face(tmp_path: Path, case: str, source: str) -> None:
    """lstrip, rstrip and single_word were ignored: "a <|sep|> b" was [64, 220, 50257, 275]."""
    transformers = pytest.importorskip("transformers")
    tokens, special = option_tokens(case)
    hf = hf_gpt2_fast(tmp_path / "gpt2")
    if special:
        hf.add_special_tokens({"additional_special_tokens": tokens})
    else:
        hf.add_tokens(tokens)
    saved = tmp_path / "saved"
    hf.save_pretrained(saved)
    if source == "tokenizer_config.json":
        # As transformers 4 saved a slow tokenizer: the options in added_tokens_decoder.
        tokenizer_json = json.loads((saved / "tokenizer.json").read_text(encoding="utf-8"))
        config = json.loads((saved / "tokenizer_config.json").read_text(encoding="utf-8"))
        config["added_tokens_decoder"] = {
            str(item.pop("id")): item for item in tokenizer_json["added_tokens"]
        }
        (saved / "tokenizer.json").unlink()
        hf_gpt2_directory(saved)
        (saved / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    reference = transformers.AutoTokenizer.from_pretrained(saved)
    ours = Tokenizer.from_pretrained(saved)
    for text in OPTION_TEXTS:
        assert ours.encode(text, allowed_special="all") == reference.encode(text), text
    if case == "special":
        assert ours.encode("a <|sep|> b", allowed_special="all") == [64, 50257, 65]
        assert ours.encode("x<|user|>y", allowed_special="all") == [87, 27, 91, 7220, 91, 29, 88]
    # A token not allowed is ordinary text, and an allowed one keeps its options.
    assert ours.encode(" <|sep|> <|l|>", allowed_special={"<|sep|>"}) == (
        [50257] + ours.encode("<|l|>"))


def legacy_directory(directory: Path, special_tokens_map: dict[str, Any]) -> Path:
    """What transformers 4's slow GPT2Tokenizer saved for a fine-tune with an added token."""
    hf_gpt2_directory(directory)
    (directory / "added_tokens.json").write_text(json.dumps({"<|end|>": 50257, "<|x|>": 50258}))
    (directory / "special_tokens_map.json").write_text(json.dumps(special_tokens_map))
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "GPT2Tokenizer", "model_max_length": 1024})
    )
    return directory


LEGACY_MAPS: dict[str, dict[str, Any]] = {
    "strings": {"bos_token": ENDOFTEXT, "eos_token": "<|end|>", "unk_token": ENDOFTEXT,
                "pad_token": ENDOFTEXT},
    "objects": {"bos_token": {"content": ENDOFTEXT, "lstrip": False, "normalized": True,
                              "rstrip": False, "single_word": False},
                "eos_token": {"content": "<|end|>", "lstrip": False, "normalized": False,
                              "rstrip": False, "single_word": False},
                "pad_token": "<|x|>"},
}
LEGACY_TEXTS = ["hi<|end|>", "a <|end|> b<|x|>c", "<|end|><|x|><|end|>", f"x{ENDOFTEXT}<|end|>"]


@pytest.mark.parametrize("case", LEGACY_MAPS)
def test_legacy_added_tokens_and_special_tokens_map(tmp_path: Path, case: str) -> None:
    """added_tokens.json and special_tokens_map.json were ignored: no <|end|>, eos 50256."""
    transformers = pytest.importorskip("transformers")
    directory = legacy_directory(tmp_path, LEGACY_MAPS[case])
    reference = transformers.AutoTokenizer.from_pretrained(directory)
    ours = Tokenizer.from_pretrained(directory)
    assert ours.vocab_size == len(reference) == 50259
    assert ours.eos_token_id == reference.eos_token_id == 50257
    assert ours.bos_token_id == reference.bos_token_id == 50256
    for text in LEGACY_TEXTS:
        assert ours.encode(text, allowed_special="all") == reference.encode(text), text
    assert ours.decode([50257, 50258]) == reference.decode([50257, 50258]) == "<|end|><|x|>"


def test_legacy_files_beside_tokenizer_json_and_added_tokens_decoder(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    hf = hf_gpt2_fast(tmp_path / "gpt2")
    directory = legacy_directory(tmp_path / "both", LEGACY_MAPS["strings"])
    hf.backend_tokenizer.save(str(directory / "tokenizer.json"))
    # transformers adds added_tokens.json's tokens to those of tokenizer.json.
    reference = transformers.AutoTokenizer.from_pretrained(directory)
    ours = Tokenizer.from_pretrained(directory)
    assert ours.vocab_size == len(reference) == 50259
    assert ours.eos_token_id == reference.eos_token_id == 50257
    for text in LEGACY_TEXTS:
        assert ours.encode(text, allowed_special="all") == reference.encode(text), text
    # One id for two tokens: transformers renumbers one, which no model was trained with.
    hf.add_special_tokens({"additional_special_tokens": ["<|y|>"]})  # 50257
    hf.backend_tokenizer.save(str(directory / "tokenizer.json"))
    with pytest.raises(TokenizerFormatError, match="'<|end|>' has id 50257") as raised:
        Tokenizer.from_pretrained(directory)
    assert str(raised.value).startswith(str(directory / "added_tokens.json"))
    # With added_tokens_decoder in tokenizer_config.json, transformers reads neither file.
    (directory / "tokenizer.json").unlink()
    config = {"tokenizer_class": "GPT2Tokenizer", "added_tokens_decoder": {}}
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    reference = transformers.AutoTokenizer.from_pretrained(directory)
    ours = Tokenizer.from_pretrained(directory)
    assert ours.vocab_size == len(reference) == 50257
    assert ours.eos_token_id == reference.eos_token_id == 50256
