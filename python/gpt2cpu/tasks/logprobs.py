"""Log-probabilities of tokens under a model's raw logits: Model.score, perplexity, the
dataset jobs, and generation's `logprobs=` (which the server serves).

They are `log_softmax` of the logits as the model returns them, before temperature, penalties
and the other processors (vLLM's default): what a token costs under the model itself, which is
what lm-eval's log-likelihood tasks compare. Nothing here knows the model: rows of logits in,
numbers out, so that the library's own `logprobs=` can share it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FloatRows = np.ndarray[Any, np.dtype[np.float32]]

# Rows of logits log_softmax_at takes at once: 4 x 50257 floats, within L2.
_SOFTMAX_ROWS = 4


def log_softmax(logits: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """log_softmax over the last axis, in float64 so that a sum over many tokens keeps its
    digits (the logits themselves are float32). A row whose every logit is -inf (all
    banned) stays -inf."""
    x = np.asarray(logits, dtype=np.float64)
    top = np.max(x, axis=-1, keepdims=True)
    finite = np.isfinite(top)
    with np.errstate(divide="ignore", invalid="ignore"):
        shifted = x - np.where(finite, top, 0.0)
        normalised = shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
    result: np.ndarray[Any, np.dtype[np.float64]] = np.where(finite, normalised, -np.inf)
    return result


def log_softmax_at(
    logits: np.ndarray[Any, Any], targets: np.ndarray[Any, Any]
) -> tuple[np.ndarray[Any, np.dtype[np.float64]], np.ndarray[Any, np.dtype[np.bool_]]]:
    """log_softmax(logits)[r, targets[r]] for each row r, as float64, and whether
    targets[r] is row r's argmax: the scores of Model.score, the dataset jobs and
    perplexity.

    The row's maximum is subtracted before exp, so no term overflows and the largest is
    exactly 1: the sum is >= 1 and its log loses nothing to cancellation. The terms are
    exponentiated in float32 (each within 2**-24 of exact) and summed in float64, so
    log Z is within ~1e-7 of exact however long the vocabulary; the difference with the
    picked logit is taken in float64. A float64 exp of every term was 6x slower (0.2 s for
    127 positions of GPT-2's vocabulary, as long as the forward pass itself) for digits
    below the logits' own float32 precision.
    """
    rows = np.arange(logits.shape[0])
    best = logits.argmax(axis=1)
    peak = logits[rows, best]  # the max (NaN if the row holds one, as max gives)
    # A few rows at a time, in place: the temporaries stay in cache (2.2x faster than
    # whole-array passes over a text's 127 x 50257 logits, the same bits).
    sums = np.empty(logits.shape[0], dtype=np.float64)
    for r0 in range(0, logits.shape[0], _SOFTMAX_ROWS):
        part = np.subtract(logits[r0 : r0 + _SOFTMAX_ROWS], peak[r0 : r0 + _SOFTMAX_ROWS, None])
        np.exp(part, out=part)
        sums[r0 : r0 + _SOFTMAX_ROWS] = part.sum(axis=1, dtype=np.float64)
    log_z = np.log(sums) + peak
    picked: np.ndarray[Any, np.dtype[np.float64]] = logits[rows, targets].astype(np.float64)
    return picked - log_z, best == targets

