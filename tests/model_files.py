"""Model directories written with numpy alone (no torch), byte for byte under the tests'
control, so that each way of breaking them is one small edit away.

`safetensors_bytes` lays out a file as the format says; `model_dir` writes config.json and
model.safetensors for a tiny random-weight GPT-2 that the engine loads.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

# Small enough that a load is a millisecond, with every dimension distinct.
TINY: dict[str, Any] = dict(
    model_type="gpt2", n_layer=2, n_embd=16, n_head=2, n_positions=24, vocab_size=37,
    activation_function="gelu_new", layer_norm_epsilon=1e-5, bos_token_id=36, eos_token_id=36,
)

DTYPE_NAMES = {np.dtype("<f4"): "F32", np.dtype("<f2"): "F16", np.dtype("<i4"): "I32",
               np.dtype("<i8"): "I64", np.dtype("u1"): "U8"}


def tensor_shapes(config: dict[str, Any]) -> list[tuple[str, tuple[int, ...]]]:
    """GPT2LMHeadModel's tensors as save_pretrained names them ("transformer." prefix)."""
    c, v, p = config["n_embd"], config["vocab_size"], config["n_positions"]
    f = config.get("n_inner") or 4 * c
    shapes: list[tuple[str, tuple[int, ...]]] = [("wte.weight", (v, c)), ("wpe.weight", (p, c))]
    for i in range(config["n_layer"]):
        h = f"h.{i}."
        shapes += [
            (h + "ln_1.weight", (c,)), (h + "ln_1.bias", (c,)),
            (h + "attn.c_attn.weight", (c, 3 * c)), (h + "attn.c_attn.bias", (3 * c,)),
            (h + "attn.c_proj.weight", (c, c)), (h + "attn.c_proj.bias", (c,)),
            (h + "ln_2.weight", (c,)), (h + "ln_2.bias", (c,)),
            (h + "mlp.c_fc.weight", (c, f)), (h + "mlp.c_fc.bias", (f,)),
            (h + "mlp.c_proj.weight", (f, c)), (h + "mlp.c_proj.bias", (c,)),
        ]
    shapes += [("ln_f.weight", (c,)), ("ln_f.bias", (c,))]
    return [("transformer." + name, shape) for name, shape in shapes]


def random_tensors(config: dict[str, Any], seed: int = 0,
                   dtype: str = "float32") -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: (rng.standard_normal(shape) * 0.1).astype(dtype)
            for name, shape in tensor_shapes(config)}


def header_for(tensors: dict[str, np.ndarray]) -> dict[str, Any]:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, array in tensors.items():
        header[name] = {"dtype": DTYPE_NAMES[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    return header


def pack(header: Any, data: bytes, header_len: int | None = None) -> bytes:
    """The file: u64 header length, the JSON header padded to 8 bytes as the reference
    writer does, the data. header_len overrides the length field (to lie about it)."""
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw) if header_len is None else header_len) + raw + data


def safetensors_bytes(tensors: dict[str, np.ndarray]) -> bytes:
    data = b"".join(np.ascontiguousarray(a).tobytes() for a in tensors.values())
    return pack(header_for(tensors), data)


def split_file(blob: bytes) -> tuple[dict[str, Any], bytes]:
    """(header, data) of a safetensors file."""
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def model_dir(directory: Path, config: dict[str, Any] | None = None, seed: int = 0,
              tensors: dict[str, np.ndarray] | None = None) -> Path:
    """config.json + model.safetensors for a random-weight model; returns directory."""
    config = dict(TINY if config is None else config)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    if tensors is None:
        tensors = random_tensors(config, seed)
    (directory / "model.safetensors").write_bytes(safetensors_bytes(tensors))
    return directory
