"""Held-out perplexity with the sliding-window procedure that eval.json documents.

gpt2cpu's `perplexity` command reimplements this procedure and must agree with the number
stored at training time to 0.1%, so every detail here is part of the contract and is
spelled out in `PROCEDURE` (copied verbatim into eval.json).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

PROCEDURE = (
    "tokens = tokenizer.encode(text) with no BOS/EOS added; N = len(tokens); "
    "W = n_positions; S = W // 2. Targets are positions 1..N-1. "
    "For begin = 0, S, 2S, ...: end = min(begin + W, N); run the model on tokens[begin:end] "
    "(positions 0..end-begin-1, no cache); score targets t in [max(begin + 1, prev_end), end) "
    "with log_softmax (float32) of the logits at t-1 taken from this window; prev_end = end; "
    "stop after the window whose end == N. Negative log-likelihoods are summed in float64."
)


@dataclass(frozen=True)
class Window:
    begin: int
    end: int
    # First target position scored in this window; targets [score_from, end).
    score_from: int


def windows(n_tokens: int, window: int, stride: int) -> Iterator[Window]:
    """Yield the windows of the procedure; each target in 1..n_tokens-1 is scored once
    (with stride == window, all but the first token of each window after the first)."""
    if window < 2 or not 0 < stride <= window:
        raise ValueError(f"bad window/stride {window}/{stride}")
    if n_tokens < 2:
        return
    begin = 0
    prev_end = 0
    while True:
        end = min(begin + window, n_tokens)
        yield Window(begin, end, max(begin + 1, prev_end))
        if end == n_tokens:
            return
        prev_end = end
        begin += stride


@dataclass(frozen=True)
class SlidingWindowResult:
    tokens: int
    scored_tokens: int
    window: int
    stride: int
    nll_sum: float

    @property
    def nats_per_token(self) -> float:
        return self.nll_sum / self.scored_tokens

    @property
    def perplexity(self) -> float:
        return math.exp(self.nats_per_token)

    def bits_per_char(self, text_chars: int) -> float:
        return self.nll_sum / math.log(2) / text_chars


@torch.no_grad()
def sliding_window_nll(
    model: torch.nn.Module, tokens: Sequence[int], window: int, stride: int | None = None
) -> SlidingWindowResult:
    """Run the documented procedure with a Hugging Face causal LM (model.eval() is set)."""
    stride = window // 2 if stride is None else stride
    model.eval()
    ids = torch.tensor(list(tokens), dtype=torch.long)
    nll_sum = 0.0
    scored = 0
    plan = list(windows(len(ids), window, stride))
    # Non-overlapping windows (stride == window): each later window's first token has no
    # context in it and goes unscored.
    expected = max(len(ids) - 1, 0) - (max(len(plan) - 1, 0) if stride == window else 0)
    for w in plan:
        logits = model(input_ids=ids[w.begin : w.end].unsqueeze(0)).logits[0]
        # Logit row i of this window predicts absolute position w.begin + i + 1.
        rows = logits[w.score_from - 1 - w.begin : w.end - 1 - w.begin].float()
        targets = ids[w.score_from : w.end]
        logp = torch.log_softmax(rows, dim=-1).gather(1, targets.unsqueeze(1)).squeeze(1)
        nll_sum -= float(logp.double().sum())
        scored += len(targets)
    if scored != expected:
        raise AssertionError(f"scored {scored} targets, expected {expected}")
    return SlidingWindowResult(len(ids), scored, window, stride, nll_sum)
