"""Loading reads the checkpoint's files in the engine (Weights::load_files, band by band on
every thread): it stores what load_tensor stores from the same values, whatever the
checkpoint's float type, the weight type, the thread count or the kernel set, and every
kernel set's encoder writes the reference encoder's bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gpt2cpu
import numpy as np
import pytest
from gpt2cpu import _core
from gpt2cpu.loading.checkpoint import core_config
from gpt2cpu.loading.config import GPT2Config
from model_files import TINY, pack, tensor_shapes

# Nothing a multiple of the 16-wide panel, of a scale group (32, 64) or of a band: k of
# 72 and 200 end inside a group, n of 301 inside a panel, and each matrix takes several
# bands of rows (or of panels) besides the last, short one.
ODD: dict[str, Any] = dict(TINY, n_layer=2, n_embd=72, n_head=4, n_positions=40,
                           vocab_size=301, n_inner=200, bos_token_id=300, eos_token_id=300)
IDS = np.array([3, 1, 4, 1, 5, 9, 2, 6, 300])


def write_checkpoint(directory: Path, source: str, seed: int = 0) -> dict[str, np.ndarray]:
    """A checkpoint of ODD stored as `source` (F32, F16 or BF16), with a zero column in one
    matrix (non-finite weights would make every logit NaN, hiding the rest; the encoder
    test below has them). Returns the float32 values it holds."""
    rng = np.random.default_rng(seed)
    stored: dict[str, np.ndarray] = {}
    values: dict[str, np.ndarray] = {}
    for name, shape in tensor_shapes(ODD):
        w = (rng.standard_normal(shape) * rng.uniform(0.01, 3)).astype(np.float32)
        if name.endswith("h.1.mlp.c_fc.weight"):
            w[:, 5] = 0.0
        if source == "F16":
            stored[name] = w.astype("<f2")
            values[name] = stored[name].astype(np.float32)
        elif source == "BF16":
            stored[name] = (w.view(np.uint32) >> 16).astype("<u2")
            values[name] = (stored[name].astype(np.uint32) << 16).view(np.float32)
        else:
            stored[name] = values[name] = w
    header: dict[str, Any] = {}
    offset = 0
    for name, array in stored.items():
        header[name] = {"dtype": source, "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(ODD))
    (directory / "model.safetensors").write_bytes(
        pack(header, b"".join(a.tobytes() for a in stored.values())))
    return values


def logits(core: _core.Model) -> np.ndarray:
    return _core.Sequence(core, len(IDS)).append(IDS, len(IDS))


@pytest.mark.parametrize("source", ["F32", "F16", "BF16"])
@pytest.mark.parametrize("dtype", list(_core.DTYPES))
def test_files_load_what_load_tensor_stores(tmp_path: Path, source: str, dtype: str) -> None:
    values = write_checkpoint(tmp_path, source)
    config = GPT2Config.from_file(tmp_path / "config.json")
    reference = _core.Model(core_config(config), 1, dtype)
    for name, array in values.items():
        reference.load_tensor(name.removeprefix("transformer."), array)
    reference.finalize()
    want = logits(reference)
    for threads in (1, 2):
        model = gpt2cpu.Model.from_pretrained(tmp_path, threads=threads, dtype=dtype,
                                              tokenizer=False)
        np.testing.assert_array_equal(logits(model._core).view(np.uint32), want.view(np.uint32))


def test_every_kernel_set_encodes_the_reference_bytes() -> None:
    """The integer types' encoders of each set (src/isa/encode_kernels.inc) against the
    generic set's, which is the reference: the same bits, NaN and infinities included."""
    rng = np.random.default_rng(5)
    previous = _core.testing.isa()
    try:
        for k, n in [(1, 1), (31, 17), (65, 33), (200, 50), (130, 16)]:
            w = rng.standard_normal((k, n)).astype(np.float32) * rng.uniform(0.01, 10, n)
            w = w.astype(np.float32)
            w[:, 0] = 0.0
            if k > 3 and n > 3:
                w[1, 1], w[k - 1, 2], w[2, 3] = np.inf, -np.inf, np.nan
            for dtype in ("int8", "int4"):
                got = {}
                for isa in _core.testing.available_isas():
                    _core.testing.set_isa(isa)
                    got[isa] = _core.testing.PackedWeight(w, dtype).dequantized()
                for isa, d in got.items():
                    np.testing.assert_array_equal(d.view(np.uint32),
                                                  got["generic"].view(np.uint32), err_msg=isa)
    finally:
        _core.testing.set_isa(previous)


def test_a_bad_tensor_list_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    write_checkpoint(tmp_path, "F32")
    core = _core.Model(core_config(GPT2Config.from_file(tmp_path / "config.json")), 1)
    with open(tmp_path / "model.safetensors", "rb") as f:
        fd = f.fileno()
        with pytest.raises(ValueError, match="unknown tensor 'nope'"):
            core.load_files([("nope", (3,), fd, 0, "F32", "x")])
        with pytest.raises(ValueError, match="has shape"):
            core.load_files([("wpe.weight", (3,), fd, 0, "F32", "x")])
        with pytest.raises(ValueError, match="dtype must be"):
            core.load_files([("wpe.weight", (40, 72), fd, 0, "F64", "x")])
        with pytest.raises(_core.FileReadError, match="^here: read failed at byte 8"):
            core.load_files([("wpe.weight", (40, 72), -1, 8, "F32", "here")])
        with pytest.raises(_core.FileReadError,
                           match=r"^here: the tensor starts at byte 1099511627776, past the end"):
            core.load_files([("wpe.weight", (40, 72), fd, 1 << 40, "F32", "here")])
        # offset + bytes past int64: refused before any read adds the two
        with pytest.raises(ValueError, match="^here: offset 9223372036854775000 plus the "
                                             "tensor's 11520 bytes overflows"):
            core.load_files([("wpe.weight", (40, 72), fd, 2**63 - 808, "F32", "here")])
        with pytest.raises(TypeError, match=r"^tensors\[1\] \('wpe.weight'\): the shape must"):
            core.load_files([("wte.weight", (301, 72), fd, 0, "F32", "x"),
                             ("wpe.weight", (2**64, 72), fd, 0, "F32", "x")])
        with pytest.raises(TypeError, match=r"^tensors\[0\] \('wpe.weight'\): the offset must"):
            core.load_files([("wpe.weight", (40, 72), fd, 2**63, "F32", "x")])
    assert not core.ready
