"""Random-weight GPT-2 models of the published shapes, written as ordinary Hugging Face
model directories, so speed can be measured without downloading any weights."""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..progress import Progress

SHAPES: dict[str, dict[str, int]] = {
    "124m": dict(n_layer=12, n_embd=768, n_head=12),
    "355m": dict(n_layer=24, n_embd=1024, n_head=16),
    "774m": dict(n_layer=36, n_embd=1280, n_head=20),
    "1558m": dict(n_layer=48, n_embd=1600, n_head=25),
}
VOCAB_SIZE = 50257
N_POSITIONS = 1024


def config_for(shape: str) -> dict[str, Any]:
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; choose from {', '.join(SHAPES)}")
    return dict(
        model_type="gpt2",
        vocab_size=VOCAB_SIZE,
        n_positions=N_POSITIONS,
        activation_function="gelu_new",
        layer_norm_epsilon=1e-5,
        bos_token_id=VOCAB_SIZE - 1,
        eos_token_id=VOCAB_SIZE - 1,
        **SHAPES[shape],
    )


def tensor_shapes(config: dict[str, Any]) -> list[tuple[str, tuple[int, ...]]]:
    """GPT2LMHeadModel's tensors, as save_pretrained names them."""
    c, v, p = config["n_embd"], config["vocab_size"], config["n_positions"]
    shapes: list[tuple[str, tuple[int, ...]]] = [("wte.weight", (v, c)), ("wpe.weight", (p, c))]
    for i in range(config["n_layer"]):
        h = f"h.{i}."
        shapes += [
            (h + "ln_1.weight", (c,)),
            (h + "ln_1.bias", (c,)),
            (h + "attn.c_attn.weight", (c, 3 * c)),
            (h + "attn.c_attn.bias", (3 * c,)),
            (h + "attn.c_proj.weight", (c, c)),
            (h + "attn.c_proj.bias", (c,)),
            (h + "ln_2.weight", (c,)),
            (h + "ln_2.bias", (c,)),
            (h + "mlp.c_fc.weight", (c, 4 * c)),
            (h + "mlp.c_fc.bias", (4 * c,)),
            (h + "mlp.c_proj.weight", (4 * c, c)),
            (h + "mlp.c_proj.bias", (c,)),
        ]
    shapes += [("ln_f.weight", (c,)), ("ln_f.bias", (c,))]
    return [("transformer." + name, shape) for name, shape in shapes]


def write_safetensors(
    path: Path,
    tensors: Iterable[tuple[str, tuple[int, ...]]],
    make: Any,
    progress: Progress | None = None,
) -> None:
    """Write float32 tensors one at a time: make(name, shape) -> array. Memory stays at one
    tensor, however large the model."""
    entries = list(tensors)
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in entries:
        size = math.prod(shape) * 4
        header[name] = {
            "dtype": "F32",
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # data starts 8-byte aligned, as the reference writer does
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for name, shape in entries:
            array = np.ascontiguousarray(make(name, shape), dtype="<f4")
            array.tofile(f)
            if progress is not None:
                progress.advance(array.size)


def random_weights(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_f.weight"):
        return 1.0 + 0.1 * rng.standard_normal(shape, dtype=np.float32)
    scale = 0.02 if len(shape) == 2 else 0.1
    return scale * rng.standard_normal(shape, dtype=np.float32)


def make_random_model(
    shape: str, directory: Path, seed: int = 0, progress: bool | None = None
) -> Path:
    """Write a random GPT-2 of the given shape to directory (created atomically)."""
    config = config_for(shape)
    tensors = tensor_shapes(config)
    rng = np.random.default_rng(seed)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=directory.name + ".", dir=directory.parent))
    try:
        total = sum(math.prod(s) for _, s in tensors)
        with Progress(total, f"writing random {shape} model", enabled=progress) as bar:
            write_safetensors(
                staging / "model.safetensors", tensors, lambda n, s: random_weights(n, s, rng), bar
            )
        (staging / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        os.replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


CACHE_ENV = "GPT2CPU_CACHE"


def cache_dir() -> Path:
    """Where `gpt2cpu bench --shape` keeps its random models: $GPT2CPU_CACHE, else
    $XDG_CACHE_HOME/gpt2cpu, else ~/.cache/gpt2cpu."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen:
        return Path(chosen)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gpt2cpu"


def random_model_path(shape: str) -> Path:
    return cache_dir() / f"random-gpt2-{shape}"


def remove_random_models() -> list[Path]:
    """Deletes the cached random models (and any a crash left half-written); returns them."""
    root = cache_dir()
    found = sorted(root.glob("random-gpt2-*")) if root.is_dir() else []
    for path in found:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return found


def cached_random_model(shape: str, progress: bool | None = None) -> Path:
    """A random model of this shape in the user's cache directory, made on first use."""
    directory = random_model_path(shape)
    if not (directory / "config.json").is_file():
        make_random_model(shape, directory, progress=progress)
    return directory


if __name__ == "__main__":  # python -m gpt2cpu.bench.random_model SHAPE: used by `gpt2cpu bench`
    import sys

    print(cached_random_model(sys.argv[1]))
