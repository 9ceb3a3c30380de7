"""Every kind of bad input the engine documents (docs/bad-input.md) ends in the documented
exception, with a message naming the file and the field or tensor, never in a crash, a hang
or a huge allocation. The bindings are also called directly, skipping the Python checks:
the C++ core must refuse what they would have caught.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import re
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import gpt2cpu
import numpy as np
import pytest
from gpt2cpu import _core
from gpt2cpu.errors import ConfigError, ModelFormatError, TokenizerFormatError
from gpt2cpu.loading.checkpoint import locate_tensors
from gpt2cpu.loading.config import GPT2Config
from gpt2cpu.loading.safetensors import SafetensorsFile
from model_files import (
    TINY,
    header_for,
    model_dir,
    pack,
    random_tensors,
    safetensors_bytes,
    split_file,
)

BUNDLED = Path(gpt2cpu.__file__).parent / "models" / "tiny-shakespeare"
WTE = "transformer.wte.weight"
C_ATTN = "transformer.h.0.attn.c_attn.weight"


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return model_dir(tmp_path / "model")


@pytest.fixture
def model(tiny: Path) -> gpt2cpu.Model:
    return gpt2cpu.Model.from_pretrained(tiny, threads=1)


def load_error(directory: Path, kind: type[Exception] = ModelFormatError) -> str:
    """Loads directory expecting `kind`; returns the message."""
    with pytest.raises(kind) as info:
        gpt2cpu.Model.from_pretrained(directory, threads=1)
    return str(info.value)


def rewrite(directory: Path, edit: Any) -> None:
    """Replace model.safetensors' header by edit(header) (data unchanged)."""
    path = directory / "model.safetensors"
    header, data = split_file(path.read_bytes())
    path.write_bytes(pack(edit(header) or header, data))


# -- safetensors files ----------------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 5, 8, 12, 200])
def test_truncated_in_the_header(tiny: Path, size: int) -> None:
    path = tiny / "model.safetensors"
    path.write_bytes(path.read_bytes()[:size])
    message = load_error(tiny)
    assert message.startswith(str(path))
    assert re.search(r"truncated|runs past the end", message)


def test_truncated_in_the_data(tiny: Path) -> None:
    path = tiny / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-10])
    message = load_error(tiny)
    # The last tensor is the one cut short.
    assert message.startswith(str(path)) and "'transformer.ln_f.bias'" in message
    assert "truncated" in message


def test_header_length_past_the_end(tiny: Path) -> None:
    path = tiny / "model.safetensors"
    blob = path.read_bytes()
    for length in (len(blob), 2**63, 2**64 - 1):
        path.write_bytes(struct.pack("<Q", length) + blob[8:])
        message = load_error(tiny)
        assert message.startswith(str(path)) and f"header length {length}" in message


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe{}", b"[]", b"42", b'"text"', b"null",
                                 b"[" * 100_000, b'{"a": ' + b"1" * 5000 + b"}"])
def test_header_not_a_json_object(tiny: Path, raw: bytes) -> None:
    path = tiny / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    message = load_error(tiny)
    assert message.startswith(str(path))
    assert re.search(r"not valid JSON|must be a JSON object", message)


def test_overlapping_tensors(tiny: Path) -> None:
    def edit(header: dict[str, Any]) -> None:
        begin = header[WTE]["data_offsets"][0] + 4
        nbytes = header[C_ATTN]["data_offsets"][1] - header[C_ATTN]["data_offsets"][0]
        header[C_ATTN]["data_offsets"] = [begin, begin + nbytes]
    rewrite(tiny, edit)
    message = load_error(tiny)
    assert "overlap" in message and repr(WTE) in message and repr(C_ATTN) in message


def test_a_tensor_named_twice(tiny: Path) -> None:
    """json.loads alone keeps the last entry of a name. Both entries here are well formed and
    point at bytes of their own, so the name appearing twice is the only fault."""
    path = tiny / "model.safetensors"
    header, data = split_file(path.read_bytes())
    begin, end = header[WTE]["data_offsets"]
    second = dict(header[WTE], data_offsets=[len(data), len(data) + end - begin])
    text = (json.dumps(header)[:-1] + ", " + json.dumps({WTE: second})[1:]).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data + bytes(end - begin))
    message = load_error(tiny)
    assert message.startswith(str(path)) and f"names {WTE!r} twice" in message


@pytest.mark.parametrize("offsets", [[0, 10**12], [10**12, 10**12 + 64], [2**64, 2**64 + 64]])
def test_offsets_past_the_end(tiny: Path, offsets: list[int]) -> None:
    rewrite(tiny, lambda h: h[WTE].update(data_offsets=offsets))
    message = load_error(tiny)
    assert repr(WTE) in message and re.search(r"past the end|needs", message)


@pytest.mark.parametrize("entry", [
    {"shape": [37, 15]},                      # bytes disagree with dtype x shape
    {"dtype": "F16"},
    {"data_offsets": [8, 0]},                 # decreasing
    {"data_offsets": [-4, 4]},
    {"data_offsets": [0]},
    {"data_offsets": "0-2368"},
    {"shape": [37, -16]},
    {"shape": [37, 16.0]},
    {"shape": [True, 16]},
    {"shape": "37x16"},
    {"shape": [2**70, 2**70]},
    {"shape": [2**62] * 3},                   # each dimension fits; their product does not
    {"shape": [int("9" * 3000)] * 2},         # a product past int-to-str's 4300 digits
])
def test_offsets_disagree_with_dtype_and_shape(tiny: Path, entry: dict[str, Any]) -> None:
    rewrite(tiny, lambda h: h[WTE].update(entry))
    message = load_error(tiny)
    assert message.startswith(str(tiny / "model.safetensors")) and repr(WTE) in message


@pytest.mark.parametrize("dtype", ["F4", "float32", "", None, 4, ["F32"]])
def test_unknown_dtype(tiny: Path, dtype: Any) -> None:
    rewrite(tiny, lambda h: h[WTE].update(dtype=dtype))
    message = load_error(tiny)
    assert repr(WTE) in message and "unsupported dtype" in message


@pytest.mark.parametrize("dtype", ["F8_E4M3", "C64"])
def test_a_weight_of_a_dtype_the_engine_does_not_read(tiny: Path, dtype: Any) -> None:
    """A dtype of the format that no weight may have (unused tensors of it are ignored):
    its bytes do not fit the shape here, and the message says so, naming the tensor."""
    rewrite(tiny, lambda h: h[WTE].update(dtype=dtype))
    message = load_error(tiny)
    assert repr(WTE) in message and f"dtype {dtype}" in message


def test_non_float_weights(tmp_path: Path) -> None:
    tensors = random_tensors(TINY)
    tensors[WTE] = np.zeros(tensors[WTE].shape, dtype=np.int32)
    directory = model_dir(tmp_path, tensors=tensors)
    message = load_error(directory)
    assert message.startswith(str(directory / "model.safetensors"))
    assert repr(WTE) in message and "I32" in message


def test_entry_not_an_object_and_bad_metadata(tiny: Path) -> None:
    rewrite(tiny, lambda h: h.update({WTE: [1, 2]}))
    assert repr(WTE) in load_error(tiny)
    tiny2 = model_dir(tiny.parent / "again")
    rewrite(tiny2, lambda h: h.update(__metadata__={"format": 1}))
    assert "__metadata__" in load_error(tiny2)


def test_missing_tensor(tmp_path: Path) -> None:
    tensors = random_tensors(TINY)
    del tensors[C_ATTN]
    directory = model_dir(tmp_path, tensors=tensors)
    message = load_error(directory)
    assert message.startswith(str(directory / "model.safetensors"))
    assert "missing tensor" in message and repr(C_ATTN) in message


def test_shape_disagrees_with_config(tmp_path: Path) -> None:
    directory = model_dir(tmp_path, tensors=random_tensors(dict(TINY, vocab_size=40)))
    message = load_error(directory)
    assert message.startswith(str(directory / "model.safetensors"))
    assert repr(WTE) in message and "(40, 16)" in message and "(37, 16)" in message


def test_extra_tensors_are_ignored_and_listed_at_debug_level(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tensors = random_tensors(TINY)
    plain = gpt2cpu.Model.from_pretrained(model_dir(tmp_path / "a", tensors=tensors))
    extra = dict(tensors, **{"transformer.h.0.attn.bias": np.ones((1, 1, 4, 4), np.float32),
                             "lm_head.weight": tensors[WTE].copy(),
                             "notes": np.arange(5, dtype=np.uint8)})
    with caplog.at_level(logging.DEBUG, logger="gpt2cpu.loading.checkpoint"):
        model = gpt2cpu.Model.from_pretrained(model_dir(tmp_path / "b", tensors=extra))
    assert "'notes'" in caplog.text and "'transformer.h.0.attn.bias'" in caplog.text
    ids = [1, 2, 3]
    np.testing.assert_array_equal(model.forward(ids), plain.forward(ids))


def test_no_weights_file(tiny: Path) -> None:
    (tiny / "model.safetensors").rename(tiny / "pytorch_model.bin")
    message = load_error(tiny)
    assert message.startswith(str(tiny)) and "model.safetensors" in message
    assert "safe_serialization" in message
    (tiny / "pytorch_model.bin").rename(tiny / "pytorch_model-00001-of-00001.bin")
    (tiny / "pytorch_model.bin.index.json").write_text("{}")
    assert "only pytorch_model.bin.index.json is there; re-save" in load_error(tiny)


def test_a_dangling_link_is_named_not_taken_for_absent(tiny: Path) -> None:
    # A Hugging Face cache snapshot whose blob is missing: no silent fallback to other files.
    (tiny / "model.safetensors").rename(tiny / "blob")
    (tiny / "model.safetensors").symlink_to(tiny / "missing-blob")
    assert load_error(tiny) == (f"{tiny / 'model.safetensors'}: a symbolic link to "
                                f"{tiny / 'missing-blob'}, which does not exist")
    (tiny / "model.safetensors").unlink()
    (tiny / "blob").rename(tiny / "model.safetensors")
    bundled = Path(gpt2cpu.__file__).parent / "models" / "tiny-shakespeare"
    for name in ("vocab.json", "merges.txt"):
        (tiny / name).write_bytes((bundled / name).read_bytes())
    (tiny / "tokenizer.json").symlink_to(tiny / "missing-tokenizer")
    message = load_error(tiny, TokenizerFormatError)
    assert message.startswith(f"{tiny / 'tokenizer.json'}: a symbolic link")


def test_a_file_given_as_the_model_directory(tiny: Path) -> None:
    with pytest.raises(NotADirectoryError, match="config.json: not a directory"):
        gpt2cpu.Model.from_pretrained(tiny / "config.json")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_instead_of_a_file_does_not_hang(tiny: Path) -> None:
    path = tiny / "model.safetensors"
    path.unlink()
    os.mkfifo(path)
    assert load_error(tiny) == f"{path}: not a regular file (a FIFO)"
    with pytest.raises(ModelFormatError, match="not a regular file"):
        SafetensorsFile(path)
    config = tiny / "config.json"
    config.unlink()
    os.mkfifo(config)
    assert load_error(tiny, ConfigError) == f"{config}: not a regular file (a FIFO)"


def put_tokenizer(directory: Path) -> None:
    for name in ("vocab.json", "merges.txt"):
        (directory / name).write_bytes((BUNDLED / name).read_bytes())


def make_not_a_file(path: Path, kind: str) -> None:
    if path.exists():
        path.unlink()
    if kind == "directory":
        path.mkdir()
    elif kind == "FIFO":
        os.mkfifo(path)
    else:  # a symbolic link to itself
        os.symlink(path.name, path)


NOT_A_FILE = {"directory": "a directory", "FIFO": "a FIFO", "loop": "a symbolic link loop"}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs and symbolic links")
@pytest.mark.parametrize("kind", list(NOT_A_FILE))
@pytest.mark.parametrize("name, error", [
    ("model.safetensors", ModelFormatError),
    ("config.json", ConfigError),
    ("vocab.json", TokenizerFormatError),
    ("merges.txt", TokenizerFormatError),
    ("tokenizer_config.json", TokenizerFormatError),
])
def test_not_a_regular_file_in_place_of_a_model_file(tiny: Path, name: str,
                                                     error: type[Exception], kind: str) -> None:
    put_tokenizer(tiny)
    make_not_a_file(tiny / name, kind)
    assert load_error(tiny, error) == f"{tiny / name}: not a regular file ({NOT_A_FILE[kind]})"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_tokenizer_readers_do_not_block_on_a_fifo_or_read_a_device(tmp_path: Path) -> None:
    fifo = tmp_path / "vocab.json"
    os.mkfifo(fifo)
    merges = tmp_path / "merges.txt"
    merges.write_bytes((BUNDLED / "merges.txt").read_bytes())
    # Should the reader block after all, a writer turns up and closes: the test fails on a
    # wrong message instead of hanging.
    unblock = threading.Timer(5.0, lambda: os.close(os.open(fifo, os.O_WRONLY)))
    unblock.start()
    try:
        with pytest.raises(TokenizerFormatError, match=re.escape(f"{fifo}: not a regular file")):
            gpt2cpu.Tokenizer.from_files(fifo, merges)
        with pytest.raises(TokenizerFormatError, match=re.escape(f"{fifo}: not a regular file")):
            gpt2cpu.Tokenizer.from_tokenizer_json(fifo)
    finally:
        unblock.cancel()
    with pytest.raises(TokenizerFormatError,
                       match="/dev/zero: not a regular file \\(a character device\\)"):
        gpt2cpu.Tokenizer.from_tokenizer_json("/dev/zero")
    with pytest.raises(TokenizerFormatError, match="/dev/zero: not a regular file"):
        gpt2cpu.Tokenizer.from_files("/dev/zero", merges)


def test_checkpoint_truncated_while_loading_is_a_format_error(tiny: Path) -> None:
    """Another process cuts the file short after its header was read, as the tensors are
    being copied. A memory-mapped file would die of SIGBUS here; so the load runs in a
    child process, whose exit status says which."""
    code = f"""
import os, gpt2cpu
from gpt2cpu.loading import checkpoint as loading
from gpt2cpu.errors import ModelFormatError
path = {str(tiny / "model.safetensors")!r}
real = loading.locate_tensors
def locate_then_truncate(*args):
    located = real(*args)
    os.truncate(path, os.path.getsize(path) - 4096)  # through the middle of the tensors
    return located
loading.locate_tensors = locate_then_truncate
import gpt2cpu.model
gpt2cpu.model.locate_tensors = locate_then_truncate
try:
    gpt2cpu.Model.from_pretrained({str(tiny)!r})
except ModelFormatError as e:
    print(e)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, f"exit status {out.returncode}: {out.stderr[-2000:]}"
    assert out.stdout.startswith(f"{tiny / 'model.safetensors'}: tensor ")
    assert "it was truncated while being read" in out.stdout


def test_safetensors_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError, match=re.escape(str(tmp_path / "x.safetensors"))):
        SafetensorsFile(tmp_path / "x.safetensors")


# -- sharded checkpoints --------------------------------------------------------------------

def sharded_dir(directory: Path) -> Path:
    """TINY split into two shards with an index."""
    tensors = random_tensors(TINY)
    names = list(tensors)
    shards = {"model-00001-of-00002.safetensors": names[:10],
              "model-00002-of-00002.safetensors": names[10:]}
    model_dir(directory)
    (directory / "model.safetensors").unlink()
    weight_map = {}
    for shard, keys in shards.items():
        (directory / shard).write_bytes(safetensors_bytes({k: tensors[k] for k in keys}))
        weight_map.update(dict.fromkeys(keys, shard))
    (directory / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map}))
    return directory


def test_sharded_loads(tmp_path: Path) -> None:
    model = gpt2cpu.Model.from_pretrained(sharded_dir(tmp_path))
    assert model.forward([1, 2]).shape == (2, TINY["vocab_size"])


def test_index_names_a_missing_shard(tmp_path: Path) -> None:
    directory = sharded_dir(tmp_path)
    (directory / "model-00002-of-00002.safetensors").unlink()
    message = load_error(directory)
    assert message.startswith(str(directory / "model.safetensors.index.json"))
    assert "'model-00002-of-00002.safetensors'" in message and "does not exist" in message


@pytest.mark.parametrize("index, expected", [
    ("{", "not valid JSON"),
    ("[]", "weight_map"),
    ('{"weight_map": {}}', "weight_map"),
    ('{"weight_map": {"a": "../model.safetensors"}}', "not a file name"),
    ('{"weight_map": {"a": 7}}', "not a file name"),
    ('{"weight_map": {"a": 1' + "0" * 5000 + "}}", "not valid JSON"),
])
def test_malformed_index(tmp_path: Path, index: str, expected: str) -> None:
    directory = sharded_dir(tmp_path)
    (directory / "model.safetensors.index.json").write_text(index)
    message = load_error(directory)
    assert message.startswith(str(directory / "model.safetensors.index.json"))
    assert expected in message


def test_tensor_missing_from_every_shard(tmp_path: Path) -> None:
    directory = sharded_dir(tmp_path)
    shard = directory / "model-00001-of-00002.safetensors"
    header, data = split_file(shard.read_bytes())
    del header[WTE]
    shard.write_bytes(pack(header, data))
    message = load_error(directory)
    assert message.startswith(str(directory / "model.safetensors.index.json"))
    assert repr(WTE) in message


# -- config.json ----------------------------------------------------------------------------

def write_config(directory: Path, config: Any) -> None:
    text = config if isinstance(config, str) else json.dumps(config)
    (directory / "config.json").write_text(text)


def test_config_missing(tiny: Path) -> None:
    (tiny / "config.json").unlink()
    message = load_error(tiny, ConfigError)
    assert message.startswith(str(tiny / "config.json")) and "not found" in message


@pytest.mark.parametrize("text", ["{", "", "{'n_layer': 2}", '{"n_layer": 1' + "0" * 5000 + "}",
                                  "[" * 100_000])
def test_config_not_json(tiny: Path, text: str) -> None:
    write_config(tiny, text)
    message = load_error(tiny, ConfigError)
    assert message.startswith(str(tiny / "config.json")) and "not valid JSON" in message


def test_config_not_utf8_or_not_an_object_or_too_big(tiny: Path) -> None:
    (tiny / "config.json").write_bytes(b'{"n_layer": "\xff"}')
    assert "UTF-8" in load_error(tiny, ConfigError)
    write_config(tiny, [TINY])
    assert "expected a JSON object" in load_error(tiny, ConfigError)
    write_config(tiny, " " * (17 << 20))
    assert "too large" in load_error(tiny, ConfigError)
    (tiny / "config.json").unlink()
    (tiny / "config.json").mkdir()
    assert "not a regular file" in load_error(tiny, ConfigError)


@pytest.mark.parametrize("field", ["n_layer", "n_head", "n_embd", "n_positions", "vocab_size"])
def test_config_missing_field(tiny: Path, field: str) -> None:
    write_config(tiny, {k: v for k, v in TINY.items() if k != field})
    message = load_error(tiny, ConfigError)
    assert message.startswith(str(tiny / "config.json")) and f"missing field {field!r}" in message


@pytest.mark.parametrize("changes, field", [
    (dict(n_head=3), "n_head"),                       # 16 % 3
    (dict(n_embd=0), "n_embd"),
    (dict(n_layer=-1), "n_layer"),
    (dict(n_positions=0), "n_positions"),
    (dict(vocab_size=-5), "vocab_size"),
    (dict(n_layer=2.0), "n_layer"),
    (dict(n_layer=True), "n_layer"),
    (dict(n_layer="2"), "n_layer"),
    (dict(n_layer=None), "n_layer"),
    (dict(n_embd=2**40), "n_embd"),
    (dict(vocab_size=2**64), "vocab_size"),
    (dict(n_inner=0), "n_inner"),
    (dict(n_inner=-3), "n_inner"),
    (dict(layer_norm_epsilon=0), "layer_norm_epsilon"),
    (dict(layer_norm_epsilon="1e-5"), "layer_norm_epsilon"),
    (dict(activation_function="swish"), "activation_function"),
    (dict(activation_function=["gelu"]), "activation_function"),
    (dict(model_type="llama"), "model_type"),
    (dict(scale_attn_weights="yes"), "scale_attn_weights"),
    (dict(tie_word_embeddings=1), "tie_word_embeddings"),
    (dict(eos_token_id="50256"), "eos_token_id"),
])
def test_config_impossible_values(tiny: Path, changes: dict[str, Any], field: str) -> None:
    write_config(tiny, dict(TINY, **changes))
    message = load_error(tiny, ConfigError)
    assert message.startswith(str(tiny / "config.json")) and field in message


@pytest.mark.parametrize("changes, fields", [
    # Each size allowed alone; together terabytes of weights.
    (dict(n_layer=4096, n_embd=65536, n_head=64), ["n_layer", "n_embd", "GiB"]),
    (dict(vocab_size=2**24, n_embd=2**20, n_head=1), ["vocab_size", "n_embd", "GiB"]),
    # Small weights, but a per-sequence KV cache of terabytes.
    (dict(n_layer=4096, n_embd=1024, n_head=8, n_positions=2**20),
     ["n_positions", "KV cache"]),
])
def test_config_absurd_sizes_allocate_nothing(tiny: Path, changes: dict[str, Any],
                                              fields: list[str]) -> None:
    write_config(tiny, dict(TINY, **changes))
    message = load_error(tiny, ConfigError)
    assert message.startswith(str(tiny / "config.json"))
    for field in fields:
        assert field in message


@pytest.mark.parametrize("changes", [dict(eos_token_id=37), dict(bos_token_id=-1),
                                     dict(eos_token_id=50256, bos_token_id=50256)])
def test_config_special_ids_outside_the_vocabulary_are_dropped_with_a_warning(
    tiny: Path, changes: dict[str, Any]
) -> None:
    write_config(tiny, dict(TINY, **changes))
    with pytest.warns(UserWarning, match=re.escape(str(tiny / "config.json")) +
                      r": field '(eos|bos)_token_id' = -?\d+ is outside the vocabulary \[0, 37\)"):
        model = gpt2cpu.Model.from_pretrained(tiny, threads=1)
    for name, value in changes.items():
        assert getattr(model.config, name) is None, (name, value)


def test_config_aliases_and_id_lists(tiny: Path) -> None:
    """transformers' generic names and eos lists are read, not refused."""
    config = {k: v for k, v in TINY.items() if k not in ("n_layer", "n_embd", "eos_token_id")}
    write_config(tiny, dict(config, num_hidden_layers=2, hidden_size=16, eos_token_id=[36, 0]))
    model = gpt2cpu.Model.from_pretrained(tiny)
    assert model.config.eos_token_id == 36 and model.config.eos_token_ids == (36, 0)
    # Every listed id ends a generation, as transformers' generation_config takes the list.
    assert model.eos_token_ids() == {36, 0}
    result = model.generate([1, 2], max_new_tokens=5, temperature=0, logit_bias={0: 100.0})
    assert not isinstance(result, list)
    assert (result.token_ids, result.finish_reason) == ([], "eos")
    write_config(tiny, dict(TINY, eos_token_id=[True]))
    assert "'eos_token_id' must hold token ids" in load_error(tiny, ConfigError)


def test_model_directory_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope"))):
        gpt2cpu.Model.from_pretrained(tmp_path / "nope")


# -- tokenizer files ------------------------------------------------------------------------

@pytest.mark.parametrize("files, culprit", [
    ({"tokenizer.json": "{"}, "tokenizer.json"),
    ({"tokenizer.json": "[]"}, "tokenizer.json"),
    ({"tokenizer.json": json.dumps({"model": {"type": "WordPiece"}})}, "tokenizer.json"),
    ({"vocab.json": "[1, 2]", "merges.txt": "a b\n"}, "vocab.json"),
    ({"vocab.json": '{"a": -1}', "merges.txt": "a b\n"}, "vocab.json"),
    ({"vocab.json": '{"a": 0, "b": 1}', "merges.txt": "#version: 0.2\na b c\n"}, "merges.txt"),
    ({"vocab.json": '{"a": 0}', "merges.txt": b"\xff\xfe"}, "merges.txt"),
])
def test_malformed_tokenizer_files(tiny: Path, files: dict[str, Any], culprit: str) -> None:
    for name, content in files.items():
        path = tiny / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    message = load_error(tiny, TokenizerFormatError)
    assert message.startswith(str(tiny / culprit))


DEEP = "[" * 100_000 + "]" * 100_000
LONG_INTEGER = "1" * 5000


@pytest.mark.parametrize("files, culprit, fragment", [
    ({"vocab.json": DEEP, "merges.txt": "a b\n"}, "vocab.json", "invalid JSON"),
    ({"tokenizer.json": DEEP}, "tokenizer.json", "invalid JSON"),
    ({"vocab.json": None, "tokenizer_config.json": DEEP}, "tokenizer_config.json", "invalid JSON"),
    ({"vocab.json": '{"a": ' + LONG_INTEGER + "}", "merges.txt": "a b\n"}, "vocab.json",
     "invalid JSON"),
    ({"vocab.json": f'{{"a": {2**31}}}', "merges.txt": "a b\n"}, "vocab.json",
     "has id 2147483648, beyond the largest token id supported (2147483647)"),
    ({"vocab.json": None, "tokenizer_config.json": json.dumps(
        {"added_tokens_decoder": {LONG_INTEGER: {"content": "x"}}})},
     "tokenizer_config.json", "beyond the largest token id supported"),
    ({"vocab.json": None, "tokenizer_config.json": json.dumps(
        {"added_tokens_decoder": {str(2**31): {"content": "x"}}})},
     "tokenizer_config.json", "beyond the largest token id supported"),
])
def test_hostile_tokenizer_files(tiny: Path, files: dict[str, str | None], culprit: str,
                                 fragment: str) -> None:
    """Nesting deeper than the parser's stack, integers longer than int() converts, ids past
    int32: each a TokenizerFormatError naming the file (not RecursionError, a ValueError
    without a path, or a pybind TypeError)."""
    for name, content in files.items():
        if content is None:
            put_tokenizer(tiny)
        else:
            (tiny / name).write_text(content)
    message = load_error(tiny, TokenizerFormatError)
    assert message.startswith(f"{tiny / culprit}: ") and fragment in message


@pytest.mark.parametrize(("ids", "message"), [
    (["1"], "ids[0] must be an integer token id, got '1'"),
    ([5, 1.0], "ids[1] must be an integer token id, got 1.0"),
    ([True], "ids[0] must be an integer token id, got True"),
    ([3, 4, None], "ids[2] must be an integer token id, got None"),
    ("12", "ids must be a sequence of token ids, not str"),
])
def test_decode_takes_integer_ids_only(ids: Any, message: str) -> None:
    """A float or a str used to find a token by equality (1.0 decoded as id 1, silently) or
    to be reported as an unknown id ("token id 1 is not in the vocabulary")."""
    tokenizer = gpt2cpu.Tokenizer.from_pretrained(BUNDLED)
    with pytest.raises(TypeError, match=re.escape(message)):
        tokenizer.decode(ids)
    assert tokenizer.decode(np.array([40, 41])) == tokenizer.decode([40, 41])
    assert tokenizer.decode([np.int64(40), 41]) == tokenizer.decode([40, 41])  # type: ignore[list-item]
    for call in (tokenizer.token_bytes, tokenizer.id_to_token):
        with pytest.raises(TypeError, match="a token id must be an integer, got 1.0"):
            call(1.0)  # type: ignore[arg-type]
        assert call(np.int64(40)) == call(40)  # type: ignore[arg-type]


def test_lone_surrogates_in_a_prompt_encode_as_u_fffd() -> None:
    tokenizer = gpt2cpu.Tokenizer.from_pretrained(BUNDLED)
    assert tokenizer.encode("a\ud800b") == tokenizer.encode("a\ufffdb")
    assert tokenizer.encode("\ud83d\ude00") == tokenizer.encode("\U0001f600")  # a pair


def test_a_tokenizer_file_too_large_is_not_read(tiny: Path) -> None:
    put_tokenizer(tiny)
    with open(tiny / "vocab.json", "r+b") as file:  # sparse: no disk space, no reading
        file.truncate((256 << 20) + 1)
    message = load_error(tiny, TokenizerFormatError)
    assert message == (f"{tiny / 'vocab.json'}: 268435457 bytes is too large for a tokenizer "
                       "file (at most 268435456)")


def test_half_a_tokenizer_pair_is_an_error_not_silence(tiny: Path) -> None:
    (tiny / "vocab.json").write_text('{"a": 0}')
    message = load_error(tiny, FileNotFoundError)
    assert message.startswith(str(tiny / "merges.txt"))


def test_no_tokenizer_files_is_fine(model: gpt2cpu.Model) -> None:
    assert model.tokenizer is None


# -- runtime: token ids, lengths, sequences, threads -----------------------------------------

V = TINY["vocab_size"]


@pytest.mark.parametrize("ids, kind, pattern", [
    ([1, V], ValueError, rf"ids\[1\] = {V} is outside the vocabulary \[0, {V}\)"),
    ([-1], ValueError, r"ids\[0\] = -1 is outside"),
    ([2**70], ValueError, r"outside"),
    ([-(2**63)], ValueError, r"outside"),
    (np.array([2**64 - 1], dtype=np.uint64), ValueError, r"18446744073709551615 is outside"),
    (np.array([V], dtype=np.int16), ValueError, r"outside"),
    ([1.0], TypeError, r"integer"),
    ([1.5], TypeError, r"integer"),
    (["1"], TypeError, r"integer"),
    ([None], TypeError, r"integer"),
    ([True], TypeError, r"integer"),
    ([[1, 2]], TypeError, r"integer"),
    (np.array([1.0, 2.0]), TypeError, r"integers"),
    (np.array([True]), TypeError, r"integers"),
    (np.array([[1, 2]]), ValueError, r"one-dimensional"),
    (np.array(3), ValueError, r"one-dimensional"),
    ("hello", TypeError, r"tokenizer"),
    (b"hello", TypeError, r"sequence of token ids"),
])
def test_bad_token_ids(model: gpt2cpu.Model, ids: Any, kind: type[Exception],
                       pattern: str) -> None:
    with pytest.raises(kind, match=pattern):
        model.forward(ids)
    with pytest.raises(kind, match=pattern):
        model.new_sequence().append(ids)


def test_ids_are_not_modified(model: gpt2cpu.Model) -> None:
    ids = np.array([3, 1, 4], dtype=np.int32)
    model.new_sequence().append(ids)
    np.testing.assert_array_equal(ids, [3, 1, 4])


def test_empty_and_too_long(model: gpt2cpu.Model) -> None:
    n = TINY["n_positions"]
    with pytest.raises(ValueError, match="1 to 24 tokens"):
        model.forward([])
    with pytest.raises(ValueError, match="1 to 24 tokens"):
        model.forward([1] * (n + 1))
    seq = model.new_sequence()
    with pytest.raises(ValueError, match="must not be empty"):
        seq.append([])
    with pytest.raises(ValueError, match="capacity of 24"):
        seq.append([1] * (n + 1))
    seq.append([1] * n)
    # A full ("finished") sequence refuses more and stays as it was.
    with pytest.raises(ValueError, match="would exceed its capacity"):
        seq.append([1])
    assert seq.length == n
    seq.truncate(n - 1)
    assert seq.append([1]).shape == (V,)


@pytest.mark.parametrize("capacity, kind", [(0, ValueError), (25, ValueError), (-1, ValueError),
                                            (2.0, TypeError), ("4", TypeError), (True, TypeError)])
def test_bad_capacity(model: gpt2cpu.Model, capacity: Any, kind: type[Exception]) -> None:
    with pytest.raises(kind, match="capacity"):
        model.new_sequence(capacity)


@pytest.mark.parametrize("length", [-1, 4, 1.0, None, True])
def test_bad_truncate(model: gpt2cpu.Model, length: Any) -> None:
    seq = model.new_sequence()
    seq.append([1, 2, 3])
    with pytest.raises(ValueError, match=r"length must be an integer in \[0, 3\]"):
        seq.truncate(length)
    assert seq.length == 3


def test_closed_sequence(model: gpt2cpu.Model) -> None:
    seq = model.new_sequence()
    seq.append([1, 2])
    seq.close()
    assert seq.closed
    with pytest.raises(ValueError, match="closed"):
        seq.append([3])
    with pytest.raises(ValueError, match="closed"):
        seq.truncate(1)
    seq.close()  # closing twice is harmless
    with model.new_sequence() as other:
        other.append([1])
    assert other.closed
    with pytest.raises(ValueError, match="closed"):
        other.append([1])


def test_sequence_outlives_its_model(tiny: Path) -> None:
    model = gpt2cpu.Model.from_pretrained(tiny, threads=1)
    expected = model.new_sequence().append([1, 2, 3])
    seq = model.new_sequence()
    core = seq._core
    del model
    gc.collect()
    np.testing.assert_array_equal(seq.append([1, 2, 3]), expected)
    del seq
    gc.collect()
    # The C++ sequence keeps the C++ model alive on its own too.
    assert core is not None and core.append(np.array([4]), 1).shape == (1, V)


@pytest.mark.parametrize("threads, kind", [(0, ValueError), (-1, ValueError),
                                           (10**6, ValueError), (1.5, TypeError),
                                           ("2", TypeError), (True, TypeError)])
def test_bad_thread_counts(tiny: Path, model: gpt2cpu.Model, threads: Any,
                           kind: type[Exception]) -> None:
    with pytest.raises(kind, match="threads"):
        gpt2cpu.Model.from_pretrained(tiny, threads=threads)
    with pytest.raises(kind, match="threads"):
        model.threads = threads
    assert model.threads == 1


@pytest.mark.parametrize("value", ["0", "-2", "two", "1e3"])
def test_bad_thread_count_in_the_environment(tiny: Path, monkeypatch: pytest.MonkeyPatch,
                                             value: str) -> None:
    monkeypatch.setenv("GPT2CPU_NUM_THREADS", value)
    with pytest.raises(ValueError, match="GPT2CPU_NUM_THREADS"):
        gpt2cpu.Model.from_pretrained(tiny)


# -- the bindings, called directly -----------------------------------------------------------

def core_config(**changes: Any) -> _core.Config:
    from gpt2cpu.loading.checkpoint import core_config as convert
    return convert(GPT2Config.from_dict(dict(TINY, **changes)))


def raw_config(**fields: Any) -> _core.Config:
    """A _core.Config set field by field, skipping every Python check."""
    config = core_config()
    for name, value in fields.items():
        setattr(config, name, value)
    return config


@pytest.mark.parametrize("fields, pattern", [
    (dict(n_head=3), "divisible"),
    (dict(n_embd=0), "n_embd"),
    (dict(n_layer=-1), "n_layer"),
    (dict(n_positions=2**40), "n_positions"),
    (dict(vocab_size=0), "vocab_size"),
    (dict(n_inner=-1), "n_inner"),
    (dict(layer_norm_epsilon=float("nan")), "layer_norm_epsilon"),
    (dict(layer_norm_epsilon=0.0), "layer_norm_epsilon"),
    (dict(n_layer=4096, n_embd=2**16, n_head=1), "GiB"),
    (dict(n_layer=4096, n_embd=1024, n_positions=2**20), "KV cache"),
])
def test_core_config_is_validated(fields: dict[str, Any], pattern: str) -> None:
    config = raw_config(**fields)
    with pytest.raises(ValueError, match=pattern):
        config.validate()
    with pytest.raises(ValueError, match=pattern):
        _core.tensor_specs(config)
    with pytest.raises(ValueError, match=pattern):
        _core.Model(config, 1)


def test_core_config_rejects_unknown_activation() -> None:
    config = raw_config(activation=_core.Activation(7))  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="activation"):
        _core.Model(config, 1)
    with pytest.raises(ValueError, match="activation"):
        _core.testing.activation(np.ones(4, np.float32), _core.Activation(-1))  # type: ignore[call-arg]


def test_core_config_fields_reject_out_of_range_integers() -> None:
    config = _core.Config()
    with pytest.raises(TypeError):
        config.n_layer = 2**64
    with pytest.raises(TypeError):
        config.n_embd = "16"  # type: ignore[assignment]


@pytest.mark.parametrize("threads", [0, -1, 4097])
def test_core_model_threads(model: gpt2cpu.Model, threads: int) -> None:
    with pytest.raises(ValueError, match="threads"):
        _core.Model(core_config(), threads)
    with pytest.raises(ValueError, match="threads"):
        model._core.threads = threads


def test_core_model_loading() -> None:
    core = _core.Model(core_config(), 1)
    with pytest.raises(ValueError, match="not loaded"):
        _core.Sequence(core, 4)
    with pytest.raises(ValueError, match="unknown tensor 'nope'"):
        core.load_tensor("nope", np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"'wte.weight' has shape \(16, 37\), expected \(37, 16\)"):
        core.load_tensor("wte.weight", np.zeros((16, 37), np.float32))
    with pytest.raises(ValueError, match="shape"):
        core.load_tensor("wte.weight", np.zeros(37 * 16, np.float32))
    with pytest.raises(ValueError, match="missing tensors: wpe.weight"):
        core.load_tensor("wte.weight", np.zeros((37, 16), np.float32))
        core.finalize()
    for name, shape in _core.tensor_specs(core_config()):
        core.load_tensor(name, np.ones(shape, np.float32))
    core.finalize()
    with pytest.raises(ValueError, match="already loaded"):
        core.load_tensor("wte.weight", np.zeros((37, 16), np.float32))


def test_core_model_loads_misaligned_arrays() -> None:
    """Arrays at odd byte offsets (np.frombuffer over a file) are copied, not misread."""
    aligned, misaligned = _core.Model(core_config(), 1), _core.Model(core_config(), 1)
    rng = np.random.default_rng(0)
    for name, shape in _core.tensor_specs(core_config()):
        array = rng.standard_normal(shape).astype(np.float32)
        buf = bytearray(array.nbytes + 1)
        view = np.frombuffer(buf, np.float32, array.size, offset=1).reshape(shape)
        view[...] = array
        assert not view.flags.aligned
        aligned.load_tensor(name, array)
        misaligned.load_tensor(name, view)
    aligned.finalize()
    misaligned.finalize()
    odd_ids = np.frombuffer(bytearray(8 * 3 + 3), np.int64, 3, offset=3)
    odd_ids[...] = [5, 6, 7]
    np.testing.assert_array_equal(_core.Sequence(aligned, 4).append(np.array([5, 6, 7]), 3),
                                  _core.Sequence(misaligned, 4).append(odd_ids, 3))


@pytest.mark.parametrize("capacity", [0, -1, 25, 2**62])
def test_core_sequence_capacity(model: gpt2cpu.Model, capacity: int) -> None:
    with pytest.raises(ValueError, match="capacity"):
        _core.Sequence(model._core, capacity)


def test_core_sequence_needs_a_model() -> None:
    with pytest.raises((TypeError, ValueError)):
        _core.Sequence(None, 4)  # type: ignore[arg-type]


@pytest.mark.parametrize("ids", [[V], [-1], [2**63 - 1], [-(2**63)], [0, 1, V + 1000]])
def test_core_append_out_of_vocabulary(model: gpt2cpu.Model, ids: list[int]) -> None:
    seq = _core.Sequence(model._core, 8)
    with pytest.raises(IndexError, match="outside the vocabulary"):
        seq.append(np.array(ids, dtype=np.int64), 1)
    assert seq.length == 0


def test_core_append_bad_arguments(model: gpt2cpu.Model) -> None:
    seq = _core.Sequence(model._core, 8)
    ids = np.array([1, 2, 3], dtype=np.int64)
    for n_logits in (-1, 4, 2**62):
        with pytest.raises(ValueError, match="n_logits"):
            seq.append(ids, n_logits)
    with pytest.raises(ValueError, match="one-dimensional"):
        seq.append(ids.reshape(1, 3), 1)
    with pytest.raises((TypeError, ValueError)):
        seq.append(np.array(["a"]), 1)
    assert seq.append(np.zeros(0, np.int64), 0).shape == (0, V)
    assert seq.length == 0


@pytest.mark.parametrize("ids", [np.array([1.0, 2.0]), np.array([1.5]), np.array([True, False]),
                                 np.array([1 + 0j]), np.array(["1"]), [1.0], [None]])
def test_core_ids_must_be_integers(model: gpt2cpu.Model, ids: Any) -> None:
    """A cast to int64 would truncate floats and take bools, complex numbers and strings."""
    seq = _core.Sequence(model._core, 8)
    with pytest.raises(TypeError, match="^ids must hold integers"):
        seq.append(ids, 1)
    with pytest.raises(TypeError, match=r"^inputs\[0\]: ids must hold integers"):
        _core.step(model._core, [seq], [ids], [1])
    assert seq.length == 0


def test_core_ids_of_any_integer_dtype(model: gpt2cpu.Model) -> None:
    core = model._core
    want = _core.Sequence(core, 8).append(np.array([5, 9]), 2)
    cases: list[Any] = [np.array([5, 9], np.int8), np.array([5, 9], ">i8"),
                        np.array([5, 9], np.uint16), np.array([5, 9], np.uint64), [5, 9]]
    for ids in cases:
        np.testing.assert_array_equal(_core.Sequence(core, 8).append(ids, 2), want)
        out = _core.step(core, [_core.Sequence(core, 8)], [ids], [2])[0]
        np.testing.assert_array_equal(out, want)
    no_ids: Any = []  # numpy's float64, but holding no id that is not an integer
    assert _core.Sequence(core, 8).append(no_ids, 0).shape == (0, V)
    # Cast to int64 it would be -1, and reported as that.
    big = np.array([3, 2**64 - 1], np.uint64)
    with pytest.raises(IndexError, match=r"^ids\[1\] = 18446744073709551615 is out of range"):
        _core.Sequence(core, 8).append(big, 1)
    with pytest.raises(IndexError, match=r"^inputs\[0\]: ids\[1\] = 18446744073709551615"):
        _core.step(core, [_core.Sequence(core, 8)], [big], [1])


def test_core_append_past_capacity_allocates_nothing(model: gpt2cpu.Model) -> None:
    seq = _core.Sequence(model._core, 8)
    # 10**7 logits rows of 37 would be 1.5 GB; the capacity check comes first.
    with pytest.raises(IndexError, match="capacity"):
        seq.append(np.zeros(10**7, np.int64), 10**7)
    seq.append(np.zeros(6, np.int64), 1)
    with pytest.raises(IndexError, match="exceed its capacity of 8"):
        seq.append(np.zeros(3, np.int64), 1)
    assert seq.length == 6


@pytest.mark.parametrize("length", [-1, 4, 2**62])
def test_core_truncate(model: gpt2cpu.Model, length: int) -> None:
    seq = _core.Sequence(model._core, 8)
    seq.append(np.array([1, 2, 3]), 1)
    with pytest.raises(IndexError, match="truncate"):
        seq.truncate(length)
    assert seq.length == 3


def test_kernel_bindings_refuse_bad_shapes() -> None:
    k = _core.testing
    a = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError):
        k.matmul(a, np.ones((5, 2), np.float32))
    with pytest.raises(ValueError):
        k.matmul(np.ones((0, 4), np.float32), np.ones((4, 2), np.float32))
    with pytest.raises(ValueError):
        k.matmul(a, np.ones((4, 2), np.float32), bias=np.ones(3, np.float32))
    with pytest.raises(ValueError):
        k.matmul(a, np.ones((4, 2), np.float32), out=np.ones((2, 2), np.float32))
    with pytest.raises(ValueError):
        k.matmul(a, np.ones((4, 2), np.float32), threads=0)
    with pytest.raises(ValueError):
        k.layernorm(a, np.ones(3, np.float32), np.ones(4, np.float32))
    with pytest.raises(ValueError):
        k.layernorm(a, np.ones(4, np.float32), np.ones(4, np.float32), eps=0.0)
    with pytest.raises(ValueError):
        k.layernorm(np.ones(4, np.float32), np.ones(4, np.float32), np.ones(4, np.float32))
    with pytest.raises(ValueError):
        k.activation(a, threads=-3)
    with pytest.raises(ValueError):
        k.set_isa("avx9000")


@pytest.mark.parametrize("pos0", [-1, 3, 2**62, 2**63 - 1])
def test_attention_binding_checks_the_cache_bounds(pos0: int) -> None:
    q = np.ones((2, 8), np.float32)
    kv = np.ones((2, 4, 4), np.float32)
    with pytest.raises(ValueError, match="capacity"):
        _core.testing.attention(q, kv, kv, pos0, 1.0)
    with pytest.raises(ValueError):
        _core.testing.attention(q, kv, np.ones((2, 3, 4), np.float32), 0, 1.0)
    assert _core.testing.attention(q, kv, kv, 2, 1.0).shape == (2, 8)


def test_kernel_bindings_accept_misaligned_arrays() -> None:
    rng = np.random.default_rng(1)
    a = rng.standard_normal((5, 7)).astype(np.float32)
    w = rng.standard_normal((7, 9)).astype(np.float32)

    def misaligned(x: np.ndarray) -> np.ndarray:
        view = np.frombuffer(bytearray(x.nbytes + 2), np.float32, x.size, offset=2)
        view = view.reshape(x.shape)
        view[...] = x
        return view

    k = _core.testing
    np.testing.assert_array_equal(k.matmul(misaligned(a), misaligned(w)), k.matmul(a, w))
    ones = np.ones(7, np.float32)
    np.testing.assert_array_equal(k.layernorm(misaligned(a), misaligned(ones), ones),
                                  k.layernorm(a, ones, ones))
    np.testing.assert_array_equal(k.activation(misaligned(a)), k.activation(a))


def test_safetensors_reader_directly(tiny: Path) -> None:
    """locate_tensors on a reader of a foreign file names what is missing."""
    path = tiny / "other.safetensors"
    path.write_bytes(safetensors_bytes({"x": np.zeros(3, np.float32)}))
    with SafetensorsFile(path) as f:
        assert f.tensors["x"].shape == (3,)
        with pytest.raises(ModelFormatError, match=re.escape(str(path)) + ".*missing tensor"):
            locate_tensors(GPT2Config.from_dict(TINY), [f])
    assert header_for({"x": np.zeros(3, np.float32)})["x"]["data_offsets"] == [0, 12]


def test_bpe_binding_refuses_bad_arguments() -> None:
    merger_type = getattr(_core, "BytePairMerger", None)
    if merger_type is None:
        pytest.skip("this build has no C++ merge loop")
    byte_ids = list(range(256))
    with pytest.raises(ValueError, match="256"):
        merger_type(byte_ids[:255], [], {}, 16, 16)
    with pytest.raises(ValueError, match="non-negative"):
        merger_type([-1] + byte_ids[1:], [], {}, 16, 16)
    with pytest.raises(ValueError, match="negative"):
        merger_type(byte_ids, [(97, 98, -5)], {}, 16, 16)
    merger = merger_type(byte_ids, [(97, 98, 256)], {}, 2, 4)
    assert merger.encode_pieces(["ab", "", "abab" * 100, "é"]) == [256, *[256] * 200, 195, 169]
    with pytest.raises(TypeError):
        merger.encode_pieces([b"ab"])
    with pytest.raises(UnicodeEncodeError):
        merger.encode_pieces(["\ud800"])
    assert merger.merge(b"\xff\x00ab") == [255, 0, 256]


def test_vocabulary_compiler_refuses_bad_arguments_and_declines_odd_vocabularies() -> None:
    compile_native = getattr(_core, "compile_byte_level", None)
    if compile_native is None:
        pytest.skip("this build has no C++ vocabulary compiler")
    from gpt2cpu.tokenizer.byte_level import BYTE_TO_CHAR

    vocab = {c: i for i, c in enumerate(BYTE_TO_CHAR)} | {"ab": 256}
    with pytest.raises(ValueError, match="256"):
        compile_native(vocab, [], BYTE_TO_CHAR[:255], False, 16, 16)
    with pytest.raises(ValueError, match="repeat"):
        compile_native(vocab, [], ("a",) * 256, False, 16, 16)
    with pytest.raises(ValueError, match="one-character"):
        compile_native(vocab, [], ("ab", *BYTE_TO_CHAR[1:]), False, 16, 16)
    with pytest.raises(ValueError, match="Multilingual"):
        compile_native(vocab, [], ("\U0001f600", *BYTE_TO_CHAR[1:]), False, 16, 16)
    merger, byte_ids, id_to_bytes, id_to_token, unreachable = compile_native(
        vocab, [("a", "b")], BYTE_TO_CHAR, False, 16, 16)
    assert byte_ids == list(range(256)) and id_to_bytes[256] == b"ab"
    assert id_to_token[256] == "ab" and unreachable == []
    assert merger.encode_pieces(["abab", "ba"]) == [256, 256, 98, 97]
    declined: list[tuple[Any, Any]] = [
        (vocab | {"\ud800": 257}, [("a", "b")]),  # no UTF-8 for a lone surrogate
        (vocab | {"c": -1}, [("a", "b")]),
        (vocab | {"c": 2**31}, [("a", "b")]),
        (vocab | {"c": True}, [("a", "b")]),
        (vocab | {"c": 2**40}, [("a", "b")]),
        (vocab, [("a", "b", "c")]),
        (vocab, [["a"]]),
        (vocab, ["a b"]),
        (vocab, [("a", b"b")]),
        (vocab, [("a", "c")]),  # "ac" is not a token
        ({}, []),
    ]
    for odd_vocab, merges in declined:
        assert compile_native(odd_vocab, merges, BYTE_TO_CHAR, True, 16, 16) is None, odd_vocab
    with pytest.raises(TypeError):
        compile_native([], [], BYTE_TO_CHAR, False, 16, 16)


def test_bindings_found_by_fuzzing_refuse_cleanly(tiny: Path) -> None:
    """Each of these crashed, hung or allocated GBs before its fix."""
    from gpt2cpu.tokenizer.byte_level import BYTE_TO_CHAR

    # A str subclass's __hash__ rewrote an id after the ids were checked: a heap write out
    # of bounds. The alphabet must be exact strings.
    vocab = {c: i for i, c in enumerate(BYTE_TO_CHAR)}

    class Rewrites(str):
        def __hash__(self) -> int:
            vocab[BYTE_TO_CHAR[1]] = 2**31 - 1
            return str.__hash__(self)

    alphabet = (Rewrites(BYTE_TO_CHAR[0]), *BYTE_TO_CHAR[1:])
    compile_native = getattr(_core, "compile_byte_level", None)
    merger_type = getattr(_core, "BytePairMerger", None)
    if compile_native is not None and merger_type is not None:  # builds with the C++ BPE
        with pytest.raises(ValueError, match="one-character strings"):
            compile_native(vocab, [], alphabet, False, 16, 16)
        with pytest.raises(ValueError, match="whole token ids must be non-negative"):
            merger_type(list(range(256)), [], {"ab": -7}, 4, 4)

    # 8 bytes standing for 2**27 ids (a GB as int64) on a sequence of capacity 24: refused
    # before they are copied.
    import resource

    model = gpt2cpu.Model.from_pretrained(tiny, threads=1)
    seq = _core.Sequence(model._core, 24)
    ids = np.broadcast_to(np.int64(1), (2**27,))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(IndexError, match="cannot append 134217728 tokens"):
        seq.append(ids)
    with pytest.raises(IndexError, match=r"inputs\[0\]: cannot append 134217728 tokens"):
        _core.step(model._core, [seq], [ids], [1])
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 256 * 1024, f"peak RSS grew by {grown_kib / 1024:.0f} MiB"

    k = _core.testing
    eye = k.PackedWeight(np.eye(2, dtype=np.float32), "float32")
    with pytest.raises(ValueError, match="unknown activation"):
        eye.matmul(np.ones((1, 2), np.float32), activation=_core.Activation(9))  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="rounds must be in"):
        k.multiply_add(2**62, 1.0)
    with pytest.raises(ValueError, match="rounds must be in"):
        k.check_team(2, 10**9, 0)
