"""Log-probabilities of tokens under a model's raw logits, for scoring and for the
`logprobs` options of the OpenAI-style server.

They are `log_softmax` of the logits as the model returns them, before temperature, penalties
and the other processors (vLLM's default): what a token costs under the model itself, which is
what lm-eval's log-likelihood tasks compare. Nothing here knows the model: rows of logits in,
numbers out, so that the library's own `logprobs=` can share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

FloatRows = np.ndarray[Any, np.dtype[np.float32]]


def log_softmax(logits: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """log_softmax over the last axis, in float64 so that a sum over many tokens keeps its
    digits (the logits themselves are float32)."""
    x = np.asarray(logits, dtype=np.float64)
    shifted = x - np.max(x, axis=-1, keepdims=True)
    result: np.ndarray[Any, np.dtype[np.float64]] = shifted - np.log(
        np.sum(np.exp(shifted), axis=-1, keepdims=True)
    )
    return result


@dataclass(frozen=True)
class TokenLogprob:
    """One position's verdict: the chosen token's log-probability and the `top` most likely
    tokens with theirs, most likely first (ties in id order)."""

    token: int
    logprob: float
    top: tuple[tuple[int, float], ...]


def token_logprob(logits: np.ndarray[Any, Any], token: int, top: int = 0) -> TokenLogprob:
    """The log-probability of `token` after one row of logits, with the `top` best."""
    row = log_softmax(logits)
    best: tuple[tuple[int, float], ...] = ()
    if top > 0:
        k = min(top, row.size)
        ids = np.argpartition(-row, k - 1)[:k]
        ids = ids[np.lexsort((ids, -row[ids]))]
        best = tuple((int(i), float(row[i])) for i in ids)
    return TokenLogprob(token=int(token), logprob=float(row[token]), top=best)


def sequence_logprobs(
    logits: np.ndarray[Any, Any], tokens: list[int], top: int = 0
) -> list[TokenLogprob]:
    """Each of tokens[1:] scored by the row before it: logits[i] predicts tokens[i + 1].
    logits has one row per token (the last row, predicting past the end, is unused)."""
    return [token_logprob(logits[i], tokens[i + 1], top) for i in range(len(tokens) - 1)]
