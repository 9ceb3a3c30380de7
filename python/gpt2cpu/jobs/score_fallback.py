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
    """log_softmax(logits)[r, targets[r]] for each row r, as float64, and whether
    targets[r] is row r's argmax.

    The row's maximum is subtracted before exp, so no term overflows and the largest is
    exactly 1: the sum is >= 1 and its log loses nothing to cancellation. The terms are
    exponentiated in float32 (each within 2**-24 of exact) and summed in float64, so
    log Z is within ~1e-7 of exact however long the vocabulary; the difference with the
    picked logit is taken in float64. A float64 exp of every term was 6x slower (0.2 s for
    127 positions of GPT-2's vocabulary, as long as the forward pass itself) for digits
    below the logits' own float32 precision. This is the formula Model.score uses.
    """
    peak = logits.max(axis=1, keepdims=True)
    log_z = np.log(np.exp(logits - peak).sum(axis=1, dtype=np.float64)) + peak[:, 0]
    rows = np.arange(logits.shape[0])
    picked: Float64Array = logits[rows, targets].astype(np.float64) - log_z
    return picked, logits.argmax(axis=1) == targets


def score_ids(model: Model, ids: np.ndarray[Any, Any]) -> tuple[Float64Array, BoolArray]:
    """(logprobs, greedy) of ids[1:] given their prefixes; empty for a one-token text."""
    if ids.size < 2:
        return np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.bool_)
    logits = model.forward(ids[:-1])
    return log_softmax_at(logits, ids[1:])
