"""Log-probabilities of given text: each token's given its prefix (lm-eval's
log-likelihood), batched through the engine's step."""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..engine.batch import row_batches, step
from .inputs import batch_ids
from .logprobs import log_softmax_at

if TYPE_CHECKING:
    from ..engine.ids import IdsLike
    from ..model import Model

# Rows (tokens) per step: enough for the matrix products to run at prompt speed, few enough
# that the step's logits (rows x vocab floats, 100 MB at GPT-2's vocabulary) stay bounded.
ROWS_PER_STEP = 512


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
            logprobs, greedy = log_softmax_at(logits, inputs[i][1:])
            token_ids = all_ids[i].tolist()
            results[i] = ScoreResult(token_ids, logprobs, greedy)
    return [r for r in results if r is not None]
