"""FALLBACK, to replace with `Model.score` once the batched API (issue 19) is merged:
`jobs.tasks.ScoreTask` calls `model.score` when the model has it and this otherwise.

Scores one text at a time through `Model.forward`, with the same conventions as
`Model.score`: the first token has no log-probability, the last is only ever a target (so a
text may hold n_positions + 1 tokens), a token is "greedy" when it is its row's argmax.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..model import Model

Float64Array = np.ndarray[Any, np.dtype[np.float64]]
BoolArray = np.ndarray[Any, np.dtype[np.bool_]]


def log_softmax_at(logits: np.ndarray[Any, Any],
                   targets: np.ndarray[Any, Any]) -> tuple[Float64Array, BoolArray]:
    """log_softmax(logits)[r, targets[r]] for each row r, in float64 throughout, and whether
    targets[r] is row r's argmax.

    The row's maximum is subtracted before exp (no overflow; the largest term is exactly 1,
    so the sum is >= 1 and its log loses nothing to cancellation), and the sum runs in
    float64, so 50257 terms add no more than ~1e-12 of relative error.
    """
    wide = logits.astype(np.float64)
    peak = wide.max(axis=1, keepdims=True)
    log_z = np.log(np.exp(wide - peak).sum(axis=1)) + peak[:, 0]
    rows = np.arange(wide.shape[0])
    return wide[rows, targets] - log_z, logits.argmax(axis=1) == targets


def score_ids(model: Model, ids: np.ndarray[Any, Any]) -> tuple[Float64Array, BoolArray]:
    """(logprobs, greedy) of ids[1:] given their prefixes; empty for a one-token text."""
    if ids.size < 2:
        return np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.bool_)
    logits = model.forward(ids[:-1])
    return log_softmax_at(logits, ids[1:])
