"""Hidden states as features: pooled embeddings of texts, and every layer's hidden states
of one forward pass, batched through the engine's step."""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..engine.batch import row_batches, step
from ..engine.ids import int_in
from .inputs import batch_ids

if TYPE_CHECKING:
    from ..engine.ids import IdsLike
    from ..model import Model

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
    return int_in(layer, "layer", -(n_layer + 1), n_layer) % (n_layer + 1)


def hidden_rows(
    model: Model, all_ids: Seq[np.ndarray[Any, Any]], last_n: Seq[int], layer: int
) -> list[np.ndarray[Any, Any]]:
    """The hidden state `layer` (in [0, n_layer]) of the last last_n[i] positions of each
    all_ids[i] (checked ids), each text a fresh sequence, in steps of ROWS_PER_STEP rows."""
    out: list[np.ndarray[Any, Any]] = [np.empty(0, dtype=np.float32)] * len(all_ids)
    for group in row_batches([ids.size for ids in all_ids], ROWS_PER_STEP):
        sequences = [model.new_sequence(all_ids[i].size) for i in group]
        try:
            result = step(
                sequences,
                [all_ids[i] for i in group],
                last_n=[last_n[i] for i in group],
                output="hidden",
                layer=layer,
            )
        finally:
            for seq in sequences:
                seq.close()
        for i, states in zip(group, result.outputs, strict=True):
            out[i] = states
    return out


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
    last_n = [1 if pooling == "last" else ids.size for ids in all_ids]
    vectors = hidden_rows(model, all_ids, last_n, index)
    if pooling == "mean":
        vectors = [v.mean(axis=0, dtype=np.float64).astype(np.float32) for v in vectors]
    elif pooling == "last":
        vectors = [v[0] for v in vectors]
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
