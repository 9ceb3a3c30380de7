"""Hidden states as features: pooled embeddings of texts, and every layer's hidden states
of one forward pass, batched through the engine's step."""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..engine.batch import step
from .inputs import batch_ids, row_batches

if TYPE_CHECKING:
    from ..model import IdsLike, Model

Pooling = Literal["mean", "last", "none"]

# Rows (tokens) per step: prompt-speed matrix products, bounded activations.
ROWS_PER_STEP = 1024


@dataclass(frozen=True)
class ForwardOutput:
    """One forward pass with its hidden states.

    logits: (n, vocab_size).
    hidden_states: (n_layer + 1, n, n_embd): the embeddings, each block's output, and the
        final layer norm's output last, as transformers' output_hidden_states orders them.
    """

    logits: np.ndarray[Any, Any]
    hidden_states: np.ndarray[Any, Any]


def check_layer(model: Model, layer: object) -> int:
    """layer as an index in [0, n_layer]; negative ones count from the end as in Python
    (-1: the final layer norm's output)."""
    n_layer = model.config.n_layer
    if (
        isinstance(layer, bool)
        or not isinstance(layer, (int, np.integer))
        or not (-(n_layer + 1) <= layer <= n_layer)
    ):
        raise ValueError(
            f"layer must be an integer in [{-(n_layer + 1)}, {n_layer}], got {layer!r}"
        )
    return int(layer) % (n_layer + 1)


def embed(
    model: Model,
    texts: Seq[str | IdsLike],
    *,
    pooling: Pooling = "mean",
    layer: int = -1,
    normalize: bool = False,
) -> np.ndarray[Any, Any] | list[np.ndarray[Any, Any]]:
    """See Model.embed."""
    if pooling not in ("mean", "last", "none"):
        raise ValueError(f"pooling must be 'mean', 'last' or 'none', got {pooling!r}")
    if not isinstance(normalize, bool):
        raise ValueError(f"normalize must be True or False, got {normalize!r}")
    index = check_layer(model, layer)
    all_ids = batch_ids(model, texts, "texts", most=model.config.n_positions)
    vectors: list[np.ndarray[Any, Any]] = [np.empty(0, dtype=np.float32)] * len(all_ids)
    for group in row_batches([ids.size for ids in all_ids], ROWS_PER_STEP):
        sequences = [model.new_sequence(all_ids[i].size) for i in group]
        try:
            out = step(
                sequences,
                [all_ids[i] for i in group],
                last_n=[1 if pooling == "last" else all_ids[i].size for i in group],
                output="hidden",
                layer=index,
            )
        finally:
            for seq in sequences:
                seq.close()
        for i, states in zip(group, out.outputs, strict=True):
            if pooling == "mean":
                vectors[i] = states.mean(axis=0, dtype=np.float64).astype(np.float32)
            elif pooling == "last":
                vectors[i] = states[0]
            else:
                vectors[i] = states
    if normalize:
        vectors = [
            v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12) for v in vectors
        ]
    if pooling == "none":
        return vectors
    return np.stack(vectors)


def forward_hidden(model: Model, ids: np.ndarray[Any, Any]) -> ForwardOutput:
    """Logits and every hidden state of ids (already checked), in one pass."""
    with model.new_sequence(ids.size) as seq:
        out = step([seq], [ids], last_n=ids.size, hidden_states=True)
    assert out.hidden_states is not None
    hidden = np.ascontiguousarray(out.hidden_states[0].transpose(1, 0, 2))
    return ForwardOutput(out.outputs[0], hidden)
