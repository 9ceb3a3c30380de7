"""Log-probabilities of given text: each token's given its prefix (lm-eval's
log-likelihood), batched through the engine's step."""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..engine.batch import step
from .inputs import batch_ids, row_batches

if TYPE_CHECKING:
    from ..model import IdsLike, Model

# Rows (tokens) per step: enough for the matrix products to run at prompt speed, few enough
# that the step's logits (rows x vocab floats, 100 MB at GPT-2's vocabulary) stay bounded.
ROWS_PER_STEP = 512
# Rows of logits log_softmax takes at once: 4 x 50257 floats, within L2.
_SOFTMAX_ROWS = 4


@dataclass(frozen=True)
class ScoreResult:
    """The score of one text.

    token_ids: the text's tokens (after the BOS token, when prepend_bos was asked for).
    logprobs: (len(token_ids) - 1,) float64, the log-probability of token_ids[i + 1] given
        token_ids[:i + 1] (the first token has none); with prepend_bos, (len(token_ids),),
        every token's given the BOS token and what precedes it.
    greedy_tokens: (same length,) bool: whether each of those tokens is the model's most
        likely next token.
    """

    token_ids: list[int]
    logprobs: np.ndarray[Any, np.dtype[np.float64]]
    greedy_tokens: np.ndarray[Any, np.dtype[np.bool_]]

    @property
    def total(self) -> float:
        """The sum of logprobs: the log-probability of the scored tokens."""
        return float(self.logprobs.sum())

    @property
    def is_greedy(self) -> bool:
        """Whether greedy decoding from the first token would produce the rest (lm-eval's
        is_greedy); True when nothing is scored."""
        return bool(self.greedy_tokens.all())


def _log_softmax_at(
    logits: np.ndarray[Any, Any], targets: np.ndarray[Any, Any]
) -> tuple[np.ndarray[Any, np.dtype[np.float64]], np.ndarray[Any, np.dtype[np.bool_]]]:
    """log_softmax(logits)[r, targets[r]] for each row r, and whether targets[r] is the
    row's argmax."""
    rows = np.arange(logits.shape[0])
    best = logits.argmax(axis=1)
    peak = logits[rows, best]  # the max (NaN if the row holds one, as max gives)
    # float64 sums of float32 exponentials: no cancellation in the normaliser. A few rows at
    # a time, in place: the temporaries stay in cache (2.2x faster than whole-array passes
    # over a text's 127 x 50257 logits, the same bits).
    sums = np.empty(logits.shape[0], dtype=np.float64)
    for r0 in range(0, logits.shape[0], _SOFTMAX_ROWS):
        part = np.subtract(logits[r0 : r0 + _SOFTMAX_ROWS], peak[r0 : r0 + _SOFTMAX_ROWS, None])
        np.exp(part, out=part)
        sums[r0 : r0 + _SOFTMAX_ROWS] = part.sum(axis=1, dtype=np.float64)
    log_z = np.log(sums) + peak
    picked = logits[rows, targets].astype(np.float64)
    return picked - log_z, best == targets


def score(
    model: Model, texts: Seq[str | IdsLike], *, prepend_bos: bool = False
) -> list[ScoreResult]:
    """Score each text; see Model.score."""
    if not isinstance(prepend_bos, bool):
        raise ValueError(f"prepend_bos must be True or False, got {prepend_bos!r}")
    n_positions = model.config.n_positions
    bos: int | None = None
    if prepend_bos:
        bos = model.config.bos_token_id
        if bos is None:
            bos = model.config.eos_token_id
        if bos is None:
            raise ValueError("prepend_bos=True needs bos_token_id or eos_token_id in config.json")
    # The last token is only ever a target, so a text may hold one more than the context.
    all_ids = batch_ids(model, texts, "texts", most=n_positions + (0 if bos is not None else 1))
    inputs = [
        ids if bos is None else np.concatenate([[bos], ids]).astype(np.int64) for ids in all_ids
    ]
    results: list[ScoreResult | None] = [None] * len(inputs)
    # Each text runs all its tokens but the last; a one-token text has nothing to score.
    fed = [ids.size - 1 for ids in inputs]
    for i, n in enumerate(fed):
        if n == 0:
            empty = np.zeros(0, dtype=np.float64)
            results[i] = ScoreResult(inputs[i].tolist(), empty, np.zeros(0, dtype=np.bool_))
    todo = [i for i, n in enumerate(fed) if n > 0]
    for group in row_batches([fed[i] for i in todo], ROWS_PER_STEP):
        members = [todo[g] for g in group]
        sequences = [model.new_sequence(fed[i]) for i in members]
        try:
            out = step(
                sequences, [inputs[i][:-1] for i in members], last_n=[fed[i] for i in members]
            )
        finally:
            for seq in sequences:
                seq.close()
        for i, logits in zip(members, out.outputs, strict=True):
            logprobs, greedy = _log_softmax_at(logits, inputs[i][1:])
            token_ids = all_ids[i].tolist()
            results[i] = ScoreResult(token_ids, logprobs, greedy)
    return [r for r in results if r is not None]
