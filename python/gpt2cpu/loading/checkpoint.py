"""Loading Hugging Face GPT-2 checkpoints: find the safetensors files of a model directory,
check every tensor against the configuration before allocating anything, then have the
engine read them from the files. A sharded checkpoint's tensors are read from the shards its
index names.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import _core
from ..errors import ModelFormatError
from ..files import is_present_file, read_regular
from ..progress import Progress
from .config import ACTIVATIONS, GPT2Config
from .safetensors import FLOAT_DTYPES, SafetensorsFile

log = logging.getLogger(__name__)

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# Prefixes under which GPT2LMHeadModel's body may be saved.
PREFIXES = ("transformer.", "")
# Indexes of the largest checkpoints are well under a megabyte; this bounds what we read.
MAX_INDEX_BYTES = 64 << 20
# Calls a load with a progress line is cut into, so that the line moves.
PROGRESS_STEPS = 20


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


def shard_paths(directory: Path) -> tuple[list[Path], dict[str, str] | None]:
    """The safetensors files of a model directory, and for a sharded one the index's
    weight_map (tensor -> shard file name), which says where each tensor is read from."""
    single = directory / SINGLE_FILE
    if is_present_file(single, ModelFormatError):
        return [single], None
    index = directory / INDEX_FILE
    if not is_present_file(index, ModelFormatError):
        hint = ""
        pickled = [n for n in ("pytorch_model.bin", "pytorch_model.bin.index.json")
                   if (directory / n).exists()]
        if pickled:
            hint = (f" (only {pickled[0]} is there; re-save the model with "
                    "safe_serialization=True)")
        raise ModelFormatError(f"{directory}: no {SINGLE_FILE} or {INDEX_FILE}{hint}")
    raw = read_regular(index, ModelFormatError, MAX_INDEX_BYTES, "a shard index")
    try:
        data = json.loads(raw.decode("utf-8"))
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
            if not is_present_file(path, ModelFormatError):
                raise ModelFormatError(f"{index}: shard {shard!r} (for {tensor!r}) does not exist")
            shards.append(path)
    return shards, weight_map


@dataclass
class Checkpoint:
    """The open safetensors files of a model directory."""

    files: list[SafetensorsFile]
    sources: dict[str, SafetensorsFile]
    """Each tensor's name -> the file it is read from: for a sharded checkpoint the shard
    the index names, as transformers reads it, even if another shard holds a copy."""
    where: Path
    """The file that says which tensors there are: model.safetensors or the index."""


@contextmanager
def open_checkpoint(directory: Path) -> Iterator[Checkpoint]:
    paths, weight_map = shard_paths(directory)
    with ExitStack() as stack:
        files = [stack.enter_context(SafetensorsFile(p)) for p in paths]
        if weight_map is None:
            yield Checkpoint(files, dict.fromkeys(files[0].tensors, files[0]), files[0].path)
            return
        index = directory / INDEX_FILE
        by_name = {f.path.name: f for f in files}
        sources: dict[str, SafetensorsFile] = {}
        for tensor, shard in weight_map.items():
            f = by_name[shard]
            if tensor not in f.tensors:
                raise ModelFormatError(
                    f"{index}: weight_map puts {tensor!r} in {shard!r}, which has no such tensor"
                )
            sources[tensor] = f
        # A tensor of a shard that the index leaves out: transformers reads every tensor of
        # the shards the index names, so it loads it as well.
        for f in files:
            for tensor in f.tensors:
                sources.setdefault(tensor, f)
        yield Checkpoint(files, sources, index)


def untie_distinct_head(config: GPT2Config, checkpoint: Checkpoint) -> GPT2Config:
    """config, or config with tie_word_embeddings false when config.json ties the head to
    the embedding but the checkpoint stores an lm_head.weight that differs from it: then
    transformers (5.x) does not tie them and computes with the stored head, and so do we."""
    head = checkpoint.sources.get("lm_head.weight")
    if not config.tie_word_embeddings or head is None:
        return config
    key = next((p + "wte.weight" for p in PREFIXES if p + "wte.weight" in checkpoint.sources), None)
    if key is None:
        return config  # locate_tensors reports the missing embedding
    wte = checkpoint.sources[key]
    if head.tensors["lm_head.weight"].shape != wte.tensors[key].shape:
        raise ModelFormatError(
            f"{head.path}: tensor 'lm_head.weight' has shape "
            f"{head.tensors['lm_head.weight'].shape}, but config.json ties it to {key!r} of "
            f"shape {wte.tensors[key].shape}"
        )
    # Compared a chunk at a time: two whole float32 copies of a vocabulary-sized matrix
    # would outweigh the packed weights of a quantized load several times.
    chunks = zip(head.float32_chunks("lm_head.weight"), wte.float32_chunks(key), strict=True)
    if all(np.array_equal(a, b, equal_nan=True) for a, b in chunks):
        return config
    warnings.warn(
        f"{checkpoint.where}: config.json sets tie_word_embeddings, but the checkpoint holds an "
        f"lm_head.weight that differs from {key!r}; as transformers does, the two are not "
        "tied and the stored head computes the logits (set tie_word_embeddings to false in "
        "config.json to silence this)",
        stacklevel=3,
    )
    return dataclasses.replace(config, tie_word_embeddings=False)


def locate_tensors(
    config: GPT2Config, files: list[SafetensorsFile] | Checkpoint
) -> list[Located]:
    """Match every tensor the engine needs to one in the checkpoint, checking dtype and shape.
    Raises ModelFormatError naming the file and tensor; unknown extra tensors are ignored."""
    if isinstance(files, Checkpoint):
        sources, where = files.sources, files.where
    else:
        sources = {key: f for f in reversed(files) for key in f.tensors}
        where = files[0].path
    available = {key: (f, key) for key, f in sources.items()}

    located: list[Located] = []
    used: set[str] = set()
    for name, shape in _core.tensor_specs(core_config(config)):
        candidates = [name] if name == "lm_head.weight" else [p + name for p in PREFIXES]
        hits = [available[k] for k in candidates if k in available]
        if not hits:
            raise ModelFormatError(f"{where}: missing tensor {candidates[0]!r}")
        for f, key in hits:
            info = f.tensors[key]
            if info.dtype not in FLOAT_DTYPES:
                raise ModelFormatError(
                    f"{f.path}: tensor {key!r} has dtype {info.dtype}; weights must be one of "
                    f"{', '.join(FLOAT_DTYPES)}"
                )
        _check_same(hits)
        f, key = hits[0]
        info = f.tensors[key]
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


def _check_same(copies: list[tuple[SafetensorsFile, str]]) -> None:
    """Copies of one weight under several names (with and without the `transformer.`
    prefix) must hold the same values: which one transformers reads is its loader's
    business, so two that differ are ambiguous, not a choice to make silently."""
    (f0, k0), rest = copies[0], copies[1:]
    for f, key in rest:
        if f.tensors[key].shape != f0.tensors[k0].shape or not all(
            np.array_equal(a, b, equal_nan=True)
            for a, b in zip(f0.float32_chunks(k0), f.float32_chunks(key), strict=True)
        ):
            raise ModelFormatError(
                f"{f.path}: tensors {k0!r} and {key!r} are two different copies of one weight; "
                "remove the one the model should not use"
            )


def load_into(
    core_model: _core.Model, located: list[Located], *, progress: bool | None = None
) -> None:
    """Read the located tensors into the engine, converting them to its weight type.

    The engine reads the files itself (csrc/src/weights_file.cpp), band by band on all of
    its threads with the GIL released, so no tensor is ever held whole in float32 and the
    checkpoint's bytes pass through memory once. With a progress line the tensors go in a
    few batches, one call each, so that the line can move."""
    items = []
    for t in located:
        info = t.file.tensors[t.key]
        items.append((t.name, info.shape, t.file.fileno(), info.begin, info.dtype,
                      f"{t.file.path}: tensor {t.key!r}"))
    counts = [math.prod(t.file.tensors[t.key].shape) for t in located]
    with Progress(sum(counts), "loading", enabled=progress) as bar:
        batches = _batches(counts, PROGRESS_STEPS if bar.enabled else 1)
        for first, end in batches:
            try:
                core_model.load_files(items[first:end])
            except _core.FileReadError as exc:
                raise ModelFormatError(str(exc)) from None
            bar.advance(sum(counts[first:end]))
    core_model.finalize()


def _batches(sizes: list[int], steps: int) -> list[tuple[int, int]]:
    """[first, end) ranges of sizes, each closed once it holds 1/steps of the total."""
    quantum = sum(sizes) / steps
    out: list[tuple[int, int]] = []
    first, held = 0, 0
    for i, size in enumerate(sizes):
        held += size
        if held >= quantum or i == len(sizes) - 1:
            out.append((first, i + 1))
            first, held = i + 1, 0
    return out
