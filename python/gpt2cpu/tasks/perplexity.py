"""Perplexity of a model on a text, with the sliding-window procedure the bundled model's
eval.json documents (scripts/sliding_window_eval.py computes the same with PyTorch):

tokens = encode(text), no BOS/EOS; N = len(tokens); window W = n_positions, stride S = W // 2
(S = W: non-overlapping windows, whose first tokens are then not scored: they have no context).
Targets are positions 1..N-1. For begin = 0, S, 2S, ...: end = min(begin + W, N); run the
model on tokens[begin:end] with no cache; score targets in [max(begin + 1, prev_end), end)
with log_softmax of the logits at the position before each; prev_end = end; stop after the
window whose end == N. Negative log-likelihoods are summed in float64.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..model import Model
from ..progress import Progress
from .logprobs import log_softmax_at


@dataclass(frozen=True)
class Window:
    begin: int
    end: int
    score_from: int  # targets [score_from, end) are scored in this window


def windows(n_tokens: int, window: int, stride: int) -> Iterator[Window]:
    if window < 2:
        raise ValueError(f"window must be at least 2, got {window}")
    # A window's first token has no context inside it: with stride == window it goes
    # unscored (as in Hugging Face's perplexity guide); a larger stride would skip tokens.
    if not 0 < stride <= window:
        raise ValueError(f"stride must be in [1, window = {window}], got {stride}")
    begin = prev_end = 0
    while n_tokens >= 2:
        end = min(begin + window, n_tokens)
        yield Window(begin, end, max(begin + 1, prev_end))
        if end == n_tokens:
            return
        prev_end = end
        begin += stride


@dataclass(frozen=True)
class PerplexityResult:
    tokens: int
    scored_tokens: int
    text_chars: int
    window: int
    stride: int
    nll_sum: float

    @property
    def nats_per_token(self) -> float:
        return self.nll_sum / self.scored_tokens

    @property
    def perplexity(self) -> float:
        return math.exp(self.nats_per_token)

    @property
    def bits_per_char(self) -> float:
        return self.nll_sum / math.log(2) / self.text_chars


def _log_softmax_at(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """log softmax(logits)[i, targets[i]], in float32 as the reference computes it."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1, dtype=np.float32))
    picked: np.ndarray = shifted[np.arange(len(targets)), targets] - log_norm
    return picked


def perplexity(
    model: Model,
    text: str,
    *,
    window: int | None = None,
    stride: int | None = None,
    progress: bool | None = None,
) -> PerplexityResult:
    tokenizer = model.require_tokenizer("perplexity needs one to read the text")
    window = model.config.n_positions if window is None else window
    if not 2 <= window <= model.config.n_positions:
        raise ValueError(f"window must be in [2, {model.config.n_positions}], got {window}")
    stride = window // 2 if stride is None else stride
    tokens = np.asarray(tokenizer.encode(text), dtype=np.int64)
    if len(tokens) < 2:
        raise ValueError("the text must encode to at least 2 tokens")
    plan = list(windows(len(tokens), window, stride))
    nll_sum = 0.0
    scored = 0
    # One cache for every window, rewound between them: a fresh one per window would be
    # mapped and zeroed again each time.
    seq = model.new_sequence(window)
    with seq, Progress(len(tokens) - 1, "perplexity", enabled=progress, unit="tokens") as bar:
        for w in plan:
            # Logits of positions score_from-1 .. end-2 predict targets score_from .. end-1;
            # ask for the last (end - score_from + 1) rows and drop the final one.
            n_rows = w.end - w.score_from + 1
            seq.truncate(0)  # each window runs from scratch, with no cache
            logits = seq.append(tokens[w.begin : w.end], last_n=n_rows)[:-1]
            targets = tokens[w.score_from : w.end]
            logprobs, _ = log_softmax_at(logits, targets)
            nll_sum -= float(logprobs.sum())
            scored += len(targets)
            bar.advance(len(targets))
    return PerplexityResult(len(tokens), scored, len(text), window, stride, nll_sum)
