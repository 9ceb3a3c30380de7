"""Fuzzing the loader: mutated safetensors files, headers, shard indexes, config.json and
tokenizer files thrown at Model.from_pretrained, and files cut short while they are being
loaded. Whatever the bytes, the only outcomes allowed are a loaded model that runs, or a
ModelFormatError (ConfigError for config.json, TokenizerFormatError for a tokenizer file)
whose message starts with the path of a file of the model. No crash, no other exception.
Shard indexes that assign tensors to shards holding differing copies must load the copies
they name.

Volume per run: BURSTS examples of BURST_SIZE files each from a fast seeded mutator (the
bulk: 12,000 files), plus STRUCTURED examples from each of three hypothesis-built mutation
strategies, which shrink a failure to a small reproducer. Hypothesis's own cost per example
is milliseconds, more than a load; the bursts spend it once per BURST_SIZE files, and a
failing burst is still reproduced by its seed, which Hypothesis prints.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gpt2cpu
import numpy as np
import pytest
from gpt2cpu import model as model_module
from gpt2cpu.errors import ModelFormatError, TokenizerFormatError
from gpt2cpu.loading import checkpoint as loading
from gpt2cpu.tokenizer.byte_level import BYTE_TO_CHAR
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from model_files import TINY, header_for, pack, random_tensors, safetensors_bytes

BURSTS = 2000
BURST_SIZE = 6
STRUCTURED = 400
OTHER_EXAMPLES = 300

# A smaller model than TINY: fuzzing cost is per byte of header and per tensor.
FUZZ_CONFIG = dict(TINY, n_layer=1, n_embd=8, n_positions=8, vocab_size=11, bos_token_id=10,
                   eos_token_id=10)
TENSORS = random_tensors(FUZZ_CONFIG, seed=3)
VALID = safetensors_bytes(TENSORS)
HEADER = header_for(TENSORS)
(HEADER_LEN,) = struct.unpack("<Q", VALID[:8])
DATA = VALID[8 + HEADER_LEN:]

FUZZ = settings(
    max_examples=STRUCTURED,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.large_base_example],
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One model directory, rewritten by every example (fixtures are not per example)."""
    directory = tmp_path_factory.mktemp("fuzz")
    (directory / "config.json").write_text(json.dumps(FUZZ_CONFIG))
    yield directory


def load(directory: Path, allowed: type[Exception] = ModelFormatError) -> gpt2cpu.Model | None:
    """from_pretrained must either load a model that runs or raise `allowed` naming a file
    of the directory; anything else fails the example."""
    try:
        with warnings.catch_warnings():
            # Special ids outside the vocabulary load with a warning (tested below).
            warnings.simplefilter("ignore", UserWarning)
            model = gpt2cpu.Model.from_pretrained(directory, threads=1, progress=False)
    except allowed as exc:
        assert str(exc).startswith(str(directory)), f"message names no file: {exc}"
        return None
    logits = model.forward([0, 3, FUZZ_CONFIG["vocab_size"] - 1])
    assert logits.shape == (3, FUZZ_CONFIG["vocab_size"])
    return model


def test_the_unmutated_file_loads(workdir: Path) -> None:
    (workdir / "model.safetensors").write_bytes(VALID)
    model = gpt2cpu.Model.from_pretrained(workdir, threads=1)
    assert np.isfinite(model.forward([1, 2])).all()


# -- the bulk: seeded bursts of cheap mutations ------------------------------------------------

INTERESTING = [0, 1, -1, 2, 3, 4, 7, 8, 11, 16, 255, 256, 2**31 - 1, 2**31, 2**32, 2**53,
               2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), len(DATA) - 1, len(DATA),
               len(DATA) + 1]
JUNK: list[Any] = [None, True, 0, -1, 1.5, float("nan"), "", "F32", [], [0], [0, 0, 0], {},
                   {"dtype": "F32"}, [[1, 2]], "x" * 100, 2**70]
DTYPES = ["F32", "F16", "BF16", "F64", "I8", "I16", "I32", "I64", "U8", "BOOL", "F8_E4M3",
          "C64", "f32", "", 7, None]


def junk(rng: random.Random, *more: Any) -> Any:
    """A copy of one of JUNK (or `more`): a header must never share a mutable value with
    JUNK, or later mutations change JUNK itself and can make a value contain itself."""
    return copy.deepcopy(rng.choice([*JUNK, *more]))


def rand_int(rng: random.Random) -> int:
    return rng.choice(INTERESTING) if rng.random() < 0.5 else rng.randrange(len(DATA) + 1)


def mutate_header(rng: random.Random) -> bytes:
    header = json.loads(json.dumps(HEADER))
    keys = list(header)
    for _ in range(rng.randint(1, 3)):
        name = rng.choice(keys)
        entry = header.get(name)
        op = rng.randrange(8)
        if isinstance(entry, dict) and op == 0:
            entry["dtype"] = rng.choice(DTYPES)
        elif isinstance(entry, dict) and op == 1:
            shape = list(entry.get("shape") or [1])
            if shape and rng.random() < 0.7:
                shape[rng.randrange(len(shape))] = rand_int(rng)
            else:
                shape = [rand_int(rng) for _ in range(rng.randrange(4))]
            entry["shape"] = shape
        elif isinstance(entry, dict) and op == 2:
            begin = rand_int(rng)
            width = rng.choice([rand_int(rng), 0, 4 * len(keys)])
            entry["data_offsets"] = rng.choice([[begin, begin + width], [begin, rand_int(rng)],
                                                [begin], junk(rng)])
        elif isinstance(entry, dict) and op == 3:
            entry.pop(rng.choice(["dtype", "shape", "data_offsets"]), None)
        elif op == 4:
            header.pop(name, None)
        elif op == 5:
            header[name] = junk(rng)
        elif op == 6:
            header[rng.choice([*keys, "__metadata__", "x"])] = entry
        elif op == 7 and isinstance(entry, dict):
            # Trade spans with another tensor: sizes often match, so the file still loads.
            other = header.get(rng.choice(keys))
            if isinstance(other, dict):
                entry["data_offsets"], other["data_offsets"] = (other.get("data_offsets"),
                                                                entry.get("data_offsets"))
        elif rng.random() < 0.3:
            header["__metadata__"] = junk(rng, {"a": 1}, {"format": "pt"})
    header_len = None
    if rng.random() < 0.1:
        header_len = max(0, len(json.dumps(header, separators=(",", ":"))) + rng.randint(-9, 9))
    return pack(header, DATA, header_len)


JSON_BYTES = b'0123456789[]{}",:-.+eE aFITUn'


def some_bytes(rng: random.Random, n: int) -> bytes:
    """Mostly JSON's own characters, which keep the header decodable and parse further."""
    if rng.random() < 0.25:
        return rng.randbytes(n)
    return bytes(rng.choice(JSON_BYTES) for _ in range(n))


def mutate_bytes(rng: random.Random, blob: bytes) -> bytes:
    out = bytearray(blob)
    op = rng.randrange(7)

    def hot() -> int:
        return rng.randrange(min(len(out), 8 + HEADER_LEN + 8))

    if op == 0:
        # Mostly the low 7 bits: JSON text stays ASCII and gets past the UTF-8 decoder.
        for _ in range(rng.randint(1, 8)):
            out[hot()] ^= 1 << rng.randrange(8 if rng.random() < 0.2 else 7)
    elif op == 1:
        del out[rng.randrange(len(out)):]
    elif op == 2:
        pos = hot()
        out[pos:pos] = some_bytes(rng, rng.randint(1, 16))
    elif op == 3:
        pos = hot()
        out[pos:pos + 4] = some_bytes(rng, 4)
    elif op == 4:
        out[:8] = struct.pack("<Q", rng.choice([rng.randrange(2**64), *[
            max(0, HEADER_LEN + d) for d in (-8, -1, 1, 8)]]))
    elif op == 5:
        pos = rng.randrange(8, 8 + HEADER_LEN)
        del out[pos:pos + rng.randint(1, 24)]
    else:
        # The weights themselves: NaN, infinities and denormals must load and run.
        for _ in range(rng.randint(1, 64)):
            out[rng.randrange(8 + HEADER_LEN, len(out))] = rng.randrange(256)
    return bytes(out)


def mutate(rng: random.Random) -> bytes:
    if rng.random() < 0.5:
        blob = mutate_header(rng)
        return mutate_bytes(rng, blob) if rng.random() < 0.2 else blob
    return mutate_bytes(rng, VALID)


@settings(FUZZ, max_examples=BURSTS)
@given(seed=st.integers(0, 2**32 - 1))
def test_mutation_bursts(workdir: Path, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(BURST_SIZE):
        (workdir / "model.safetensors").write_bytes(mutate(rng))
        load(workdir)


# -- byte-level mutations --------------------------------------------------------------------

def flip_bits(blob: bytes, positions: list[int], bits: list[int]) -> bytes:
    out = bytearray(blob)
    for pos, bit in zip(positions, bits, strict=False):  # bits outnumber positions
        out[pos % len(out)] ^= 1 << bit
    return bytes(out)


# Positions biased towards the length field and the header, where the parsing happens.
position = st.one_of(st.integers(0, 7), st.integers(8, 8 + HEADER_LEN),
                     st.integers(0, len(VALID) - 1))

byte_mutation = st.one_of(
    st.builds(flip_bits, st.just(VALID), st.lists(position, min_size=1, max_size=8),
              st.lists(st.integers(0, 7), min_size=8, max_size=8)),
    # truncation anywhere
    st.integers(0, len(VALID) - 1).map(lambda n: VALID[:n]),
    # garbage appended, or spliced in
    st.binary(min_size=1, max_size=64).map(lambda b: VALID + b),
    st.tuples(position, st.binary(min_size=1, max_size=16)).map(
        lambda pb: VALID[:pb[0]] + pb[1] + VALID[pb[0]:]),
    # a bytes-range overwritten
    st.tuples(position, st.binary(min_size=1, max_size=16)).map(
        lambda pb: VALID[:pb[0]] + pb[1] + VALID[pb[0] + len(pb[1]):]),
    # the length field: small lies, huge lies, anything
    st.integers(-64, 64).map(
        lambda d: struct.pack("<Q", max(0, HEADER_LEN + d)) + VALID[8:]),
    st.integers(0, 2**64 - 1).map(lambda n: struct.pack("<Q", n) + VALID[8:]),
    # random files
    st.binary(max_size=256),
)


@FUZZ
@given(blob=byte_mutation)
def test_byte_mutations(workdir: Path, blob: bytes) -> None:
    (workdir / "model.safetensors").write_bytes(blob)
    load(workdir)


# -- header-level mutations ------------------------------------------------------------------

json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8))
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12,
)
big_int = st.one_of(st.integers(-4, 4096), st.integers(-(2**64), 2**64),
                    st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63)]))
dtype = st.one_of(st.sampled_from(["F32", "F16", "BF16", "F64", "I8", "I32", "I64", "U8", "BOOL",
                                   "F8_E4M3", "C64", "f32", "", "F32 "]), json_value)
shape = st.one_of(st.lists(big_int, max_size=4), json_value)
offsets = st.one_of(st.lists(big_int, min_size=0, max_size=3), json_value)
names = st.sampled_from(sorted(HEADER))


@st.composite
def header_mutation(draw: st.DrawFn) -> bytes:
    header = json.loads(json.dumps(HEADER))
    for _ in range(draw(st.integers(1, 4))):
        name = draw(names)
        action = draw(st.integers(0, 9))
        entry = header.get(name)
        if action == 0 and isinstance(entry, dict):
            entry["dtype"] = draw(dtype)
        elif action == 1 and isinstance(entry, dict):
            entry["shape"] = draw(shape)
        elif action == 2 and isinstance(entry, dict):
            entry["data_offsets"] = draw(offsets)
        elif action == 3 and isinstance(entry, dict):
            # plausible offsets: shifted within the data, so overlaps and gaps occur
            begin = draw(st.integers(0, len(DATA)))
            size = draw(st.one_of(st.just(4 * math.prod(entry.get("shape") or [1])
                                          if isinstance(entry.get("shape"), list)
                                          and all(isinstance(d, int) for d in entry["shape"])
                                          else 4),
                                  st.integers(0, 64)))
            entry["data_offsets"] = [begin, begin + size]
        elif action == 4:
            header.pop(name, None)
        elif action == 5:
            header[name] = draw(json_value)
        elif action == 6 and isinstance(entry, dict):
            entry.pop(draw(st.sampled_from(["dtype", "shape", "data_offsets"])), None)
        elif action == 7:
            header[draw(st.text(max_size=12))] = draw(st.one_of(json_value, st.just(entry)))
        elif action == 8:
            header["__metadata__"] = draw(json_value)
        elif action == 9 and entry is not None:
            header[draw(names)] = entry  # two names, one span
    if draw(st.integers(0, 19)) == 0:
        return pack(draw(json_value), DATA)
    header_len = None
    if draw(st.integers(0, 9)) == 0:
        raw_len = len(json.dumps(header, separators=(",", ":")).encode())
        header_len = max(0, raw_len + draw(st.integers(-16, 16)))
    return pack(header, DATA, header_len)


@FUZZ
@given(blob=header_mutation())
def test_header_mutations(workdir: Path, blob: bytes) -> None:
    (workdir / "model.safetensors").write_bytes(blob)
    load(workdir)


@st.composite
def text_mutation(draw: st.DrawFn) -> bytes:
    """The header's JSON text edited as text: structure broken, digits changed, quotes lost."""
    text = bytearray(json.dumps(HEADER, separators=(",", ":")).encode())
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(text) - 1))
        choice = draw(st.integers(0, 3))
        if choice == 0:
            del text[pos:pos + draw(st.integers(1, 8))]
        elif choice == 1:
            text[pos:pos] = draw(st.sampled_from(
                [b"9", b"-", b"99999999999999999999", b"[", b"]", b"{", b"}", b",", b'"',
                 b"e308", b"1" * 5000, b"\\u0000", b"\xff", b"NaN", b"Infinity"]))
        elif choice == 2:
            text[pos] = draw(st.integers(0, 255))
        else:
            digits = [i for i, c in enumerate(text) if 48 <= c <= 57]
            if digits:
                text[draw(st.sampled_from(digits))] = draw(st.integers(48, 57))
    raw = bytes(text) + b" " * draw(st.integers(0, 7))
    return struct.pack("<Q", len(raw)) + raw + DATA


@FUZZ
@given(blob=text_mutation())
def test_header_text_mutations(workdir: Path, blob: bytes) -> None:
    (workdir / "model.safetensors").write_bytes(blob)
    load(workdir)


# -- config.json and shard indexes -----------------------------------------------------------

config_field = st.sampled_from(sorted(FUZZ_CONFIG) + ["n_inner", "n_ctx", "hidden_size",
                                                      "tie_word_embeddings", "scale_attn_weights",
                                                      "add_cross_attention"])
config_value = st.one_of(json_value, big_int, st.integers(-2, 2**21),
                         st.sampled_from(["gelu", "relu", "gelu_new", "gpt2"]))


@settings(FUZZ, max_examples=OTHER_EXAMPLES)
@given(edits=st.dictionaries(config_field, st.one_of(config_value, st.just(None)), max_size=4),
       whole=st.one_of(st.none(), json_value))
def test_config_mutations(workdir: Path, edits: dict[str, Any], whole: Any) -> None:
    config = dict(FUZZ_CONFIG)
    for key, value in edits.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    # A config that allows a different shape makes the (valid) weights disagree with it:
    # that must be a ModelFormatError too.
    (workdir / "model.safetensors").write_bytes(VALID)
    (workdir / "config.json").write_text(json.dumps(config if whole is None else whole))
    try:
        model = load(workdir)
    finally:
        (workdir / "config.json").write_text(json.dumps(FUZZ_CONFIG))
    if model is not None:  # a special id the vocabulary lacks is dropped, not kept
        for name in ("bos_token_id", "eos_token_id"):
            token_id = getattr(model.config, name)
            assert token_id is None or 0 <= token_id < model.config.vocab_size


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("fuzz_sharded")
    (directory / "config.json").write_text(json.dumps(FUZZ_CONFIG))
    keys = list(TENSORS)
    for i, part in enumerate((keys[:6], keys[6:])):
        (directory / f"shard-{i}.safetensors").write_bytes(
            safetensors_bytes({k: TENSORS[k] for k in part}))
    return directory


index_value = st.one_of(st.sampled_from(["shard-0.safetensors", "shard-1.safetensors",
                                         "missing.safetensors", "../shard-0.safetensors",
                                         "", ".", "..", "/etc/passwd", "config.json"]),
                        json_value)


@settings(FUZZ, max_examples=OTHER_EXAMPLES)
@given(weight_map=st.one_of(
    st.dictionaries(st.sampled_from(list(TENSORS) + ["x"]), index_value, max_size=8),
    json_value), whole=st.one_of(st.none(), json_value))
def test_index_mutations(sharded: Path, weight_map: Any, whole: Any) -> None:
    index = {"metadata": {}, "weight_map": weight_map} if whole is None else whole
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    load(sharded)


# Every tensor in both shards, with different values: the index alone says which is loaded.
STALE = random_tensors(FUZZ_CONFIG, seed=4)


@pytest.fixture(scope="module")
def two_copies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("fuzz_copies")
    (directory / "config.json").write_text(json.dumps(FUZZ_CONFIG))
    (directory / "shard-0.safetensors").write_bytes(safetensors_bytes(TENSORS))
    (directory / "shard-1.safetensors").write_bytes(safetensors_bytes(STALE))
    return directory


@settings(FUZZ, max_examples=OTHER_EXAMPLES // 3)
@given(picks=st.lists(st.booleans(), min_size=len(TENSORS), max_size=len(TENSORS)))
def test_index_picks_among_copies(two_copies: Path, tmp_path_factory: pytest.TempPathFactory,
                                  picks: list[bool]) -> None:
    chosen = {k: (STALE if pick else TENSORS)[k] for k, pick in zip(TENSORS, picks, strict=True)}
    weight_map = {k: f"shard-{int(pick)}.safetensors" for k, pick in zip(TENSORS, picks,
                                                                        strict=True)}
    (two_copies / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map}))
    single = two_copies / "single"
    single.mkdir(exist_ok=True)
    (single / "config.json").write_text(json.dumps(FUZZ_CONFIG))
    (single / "model.safetensors").write_bytes(safetensors_bytes(chosen))
    ids = [0, 3, 10, 1]
    got = gpt2cpu.Model.from_pretrained(two_copies, threads=1).forward(ids)
    want = gpt2cpu.Model.from_pretrained(single, threads=1).forward(ids)
    np.testing.assert_array_equal(got, want)


@settings(FUZZ, max_examples=OTHER_EXAMPLES)
@given(cut=st.integers(0, len(VALID) - 1), when=st.sampled_from(["before", "after"]))
def test_files_cut_short_while_loading(workdir: Path, cut: int, when: str) -> None:
    """The file is truncated after its header was read ("after"), as another process
    rewriting it would, or before the load starts. Reading never runs past the end."""
    path = workdir / "model.safetensors"
    path.write_bytes(VALID)
    real = loading.locate_tensors

    def locate_then_cut(*args: Any, **kwargs: Any) -> Any:
        located = real(*args, **kwargs)
        os.truncate(path, cut)
        return located

    if when == "before":
        os.truncate(path, cut)
    # model.py's own name for it, which the load calls; not a public attribute of the module.
    original = model_module.locate_tensors  # type: ignore[attr-defined]
    model_module.locate_tensors = locate_then_cut if when == "after" else original  # type: ignore[attr-defined]
    try:
        assert load(workdir) is None  # every tensor is used: any cut loses some
    finally:
        model_module.locate_tensors = original  # type: ignore[attr-defined]


# -- tokenizer files ---------------------------------------------------------------------------

# A byte-level BPE as small as one can be: the 256 byte tokens, a few merges, one special.
TOKEN_VOCAB = {char: i for i, char in enumerate(BYTE_TO_CHAR)}
TOKEN_MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he")]
for _left, _right in TOKEN_MERGES:
    TOKEN_VOCAB[_left + _right] = len(TOKEN_VOCAB)
TOKEN_VOCAB["<|endoftext|>"] = len(TOKEN_VOCAB)
TOKENIZER_FILES = {
    "vocab.json": json.dumps(TOKEN_VOCAB).encode(),
    "merges.txt": ("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in TOKEN_MERGES)).encode(),
    "tokenizer_config.json": json.dumps({
        "eos_token": "<|endoftext|>",
        "added_tokens_decoder": {str(TOKEN_VOCAB["<|endoftext|>"]): {"content": "<|endoftext|>"}},
    }).encode(),
}


@st.composite
def tokenizer_mutation(draw: st.DrawFn) -> tuple[str, bytes]:
    """One tokenizer file edited as text: nesting, long integers, huge ids, broken JSON."""
    name = draw(st.sampled_from(sorted(TOKENIZER_FILES)))
    text = bytearray(TOKENIZER_FILES[name])
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(text)))
        choice = draw(st.integers(0, 3))
        if choice == 0:
            del text[pos:pos + draw(st.integers(1, 8))]
        elif choice == 1:
            text[pos:pos] = draw(st.sampled_from(
                [b"[" * 100_000, b"{" * 50_000, b"1" * 5000, b"2147483648", b"-1", b'"',
                 b"\xff", b",", b":", b" ", b"\n", b"a b c", b"99999999999999999999"]))
        elif choice == 2 and pos < len(text):
            text[pos] = draw(st.integers(0, 255))
        else:
            digits = [i for i, c in enumerate(text) if 48 <= c <= 57]
            if digits:
                at = draw(st.sampled_from(digits))
                text[at:at + 1] = draw(st.sampled_from([b"0", b"9", b"2147483648", b"1" * 5000]))
    return name, bytes(text)


@pytest.fixture(scope="module")
def with_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("fuzz_tokenizer")
    (directory / "config.json").write_text(json.dumps(dict(FUZZ_CONFIG, vocab_size=300)))
    (directory / "model.safetensors").write_bytes(
        safetensors_bytes(random_tensors(dict(FUZZ_CONFIG, vocab_size=300), seed=5)))
    return directory


@settings(FUZZ, max_examples=OTHER_EXAMPLES // 2)
@given(mutation=tokenizer_mutation())
def test_tokenizer_file_mutations(with_tokenizer: Path, mutation: tuple[str, bytes]) -> None:
    name, blob = mutation
    for other, content in TOKENIZER_FILES.items():
        (with_tokenizer / other).write_bytes(blob if other == name else content)
    try:
        model = gpt2cpu.Model.from_pretrained(with_tokenizer, threads=1)
    except TokenizerFormatError as exc:
        assert str(exc).startswith(str(with_tokenizer)), f"names no file: {exc}"
        return
    assert model.tokenizer is not None
    ids = model.tokenizer.encode("the theme")
    assert model.tokenizer.decode(ids) == "the theme"
