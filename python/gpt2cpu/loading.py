"""Loading Hugging Face GPT-2 checkpoints: find the safetensors files of a model directory,
check every tensor against the configuration before allocating anything, then copy them
into the engine one at a time.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _core
from .config import ACTIVATIONS, GPT2Config
from .errors import ModelFormatError
from .progress import Progress
from .safetensors import FLOAT_DTYPES, SafetensorsFile

log = logging.getLogger(__name__)

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# Prefixes under which GPT2LMHeadModel's body may be saved.
PREFIXES = ("transformer.", "")
# Indexes of the largest checkpoints are well under a megabyte; this bounds what we read.
MAX_INDEX_BYTES = 64 << 20


def core_config(config: GPT2Config) -> _core.Config:
    cc = _core.Config()
    cc.n_layer = config.n_layer
    cc.n_head = config.n_head
    cc.n_embd = config.n_embd
    cc.n_positions = config.n_positions
    cc.vocab_size = config.vocab_size
    cc.n_inner = config.n_inner or 0
    cc.layer_norm_epsilon = config.layer_norm_epsilon
    cc.activation = getattr(_core.Activation, ACTIVATIONS[config.activation_function])
    cc.scale_attn_weights = config.scale_attn_weights
    cc.scale_attn_by_inverse_layer_idx = config.scale_attn_by_inverse_layer_idx
    cc.tie_word_embeddings = config.tie_word_embeddings
    return cc


@dataclass(frozen=True)
class Located:
    """Where one engine tensor lives in the checkpoint."""

    name: str  # the engine's name, e.g. "h.0.attn.c_attn.weight"
    file: SafetensorsFile
    key: str  # the checkpoint's name, e.g. "transformer.h.0.attn.c_attn.weight"


def shard_paths(directory: Path) -> list[Path]:
    """The safetensors files of a model directory, single-file or sharded."""
    single = directory / SINGLE_FILE
    if single.is_file():
        return [single]
    index = directory / INDEX_FILE
    if not index.is_file():
        hint = ""
        if (directory / "pytorch_model.bin").exists():
            hint = (" (only pytorch_model.bin is there; re-save the model with "
                    "safe_serialization=True)")
        raise ModelFormatError(f"{directory}: no {SINGLE_FILE} or {INDEX_FILE}{hint}")
    size = index.stat().st_size
    if size > MAX_INDEX_BYTES:
        raise ModelFormatError(f"{index}: {size} bytes is too large for a shard index")
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    # ValueError covers JSONDecodeError, UnicodeDecodeError and integers too long to convert.
    except (ValueError, RecursionError) as exc:
        raise ModelFormatError(f"{index}: not valid JSON ({exc})") from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ModelFormatError(f"{index}: 'weight_map' must be a non-empty object")
    shards: list[Path] = []
    for tensor, shard in weight_map.items():
        # A shard is a file beside the index: no directories, so no escaping the model dir.
        if not isinstance(shard, str) or Path(shard).name != shard or shard in ("", ".", ".."):
            raise ModelFormatError(f"{index}: weight_map[{tensor!r}] is not a file name: {shard!r}")
        path = directory / shard
        if path not in shards:
            if not path.is_file():
                raise ModelFormatError(f"{index}: shard {shard!r} (for {tensor!r}) does not exist")
            shards.append(path)
    return shards


@contextmanager
def open_checkpoint(directory: Path) -> Iterator[list[SafetensorsFile]]:
    with ExitStack() as stack:
        yield [stack.enter_context(SafetensorsFile(p)) for p in shard_paths(directory)]


def locate_tensors(config: GPT2Config, files: list[SafetensorsFile]) -> list[Located]:
    """Match every tensor the engine needs to one in the checkpoint, checking dtype and shape.
    Raises ModelFormatError naming the file and tensor; unknown extra tensors are ignored."""
    available: dict[str, tuple[SafetensorsFile, str]] = {}
    for f in files:
        for key in f.tensors:
            available.setdefault(key, (f, key))
    where = files[0].path if len(files) == 1 else files[0].path.parent / INDEX_FILE

    located: list[Located] = []
    used: set[str] = set()
    for name, shape in _core.tensor_specs(core_config(config)):
        candidates = [name] if name == "lm_head.weight" else [p + name for p in PREFIXES]
        hit = next((available[k] for k in candidates if k in available), None)
        if hit is None:
            raise ModelFormatError(f"{where}: missing tensor {candidates[0]!r}")
        f, key = hit
        info = f.tensors[key]
        if info.dtype not in FLOAT_DTYPES:
            raise ModelFormatError(
                f"{f.path}: tensor {key!r} has dtype {info.dtype}; weights must be one of "
                f"{', '.join(FLOAT_DTYPES)}"
            )
        if info.shape != tuple(shape):
            raise ModelFormatError(
                f"{f.path}: tensor {key!r} has shape {info.shape}, but config.json implies "
                f"{tuple(shape)}"
            )
        located.append(Located(name, f, key))
        used.add(key)
    extras = sorted(set(available) - used)
    if extras:
        log.debug("ignoring %d tensors the engine does not use: %s", len(extras), extras)
    return located


def load_into(
    core_model: _core.Model, located: list[Located], *, progress: bool | None = None
) -> None:
    """Copy the located tensors into the engine, converting to float32 one at a time and
    dropping each from resident memory once copied."""
    total = sum(math.prod(t.file.tensors[t.key].shape) for t in located)
    with Progress(total, "loading", enabled=progress) as bar:
        for t in located:
            array: Any = t.file.to_float32(t.key)
            core_model.load_tensor(t.name, array)
            del array  # the mapped view must be gone before the file can close
            t.file.release(t.key)
            bar.advance(math.prod(t.file.tensors[t.key].shape))
    core_model.finalize()
