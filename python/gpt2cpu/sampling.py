"""Choosing the next token from a row of logits: penalties, warpers and a seeded draw.

The processors follow Hugging Face `transformers` (RepetitionPenaltyLogitsProcessor,
TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, MinPLogitsWarper) and apply in
its order: logit bias, repetition penalty, presence/frequency penalties, then - unless the
temperature is 0, which means greedy - temperature, top-k, top-p and min-p.
Presence and frequency penalties follow OpenAI: they count generated tokens only.

Nothing here knows the model or the tokenizer: a `Sampler` sees logits and token ids.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

FloatArray = np.ndarray[Any, np.dtype[np.float32]]
IntArray = np.ndarray[Any, np.dtype[np.int64]]
BoolArray = np.ndarray[Any, np.dtype[np.bool_]]

# Two-level prefix-sum search: numpy's cumsum is a sequential loop (about 5 ns an element),
# while summing fixed blocks is vectorised, so the vocabulary is searched a block at a time.
_BLOCK = 256
# top-p estimates where its cut lies from a sorted sample of every this many weights.
_SAMPLE_STRIDE = 16


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    result = float(value)
    if math.isnan(result):
        raise ValueError(f"{name} must be a number, got nan")
    return result


def _integer(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class SamplingParams:
    """How to pick each token. Checked on construction; each bad value raises ValueError
    naming the argument.

    temperature: 0 picks the most likely token (greedy); otherwise logits are divided by it.
    top_k: keep the k most likely tokens (0: all). Ties with the k-th are kept, as in HF.
    top_p: keep the fewest most likely tokens whose probability adds up to top_p, in (0, 1].
    min_p: drop tokens less likely than min_p times the most likely one, in [0, 1].
    repetition_penalty: HF/CTRL semantics, > 0: a positive logit of any token already in the
        prompt or the output is divided by it, a negative one multiplied.
    presence_penalty, frequency_penalty: OpenAI semantics, in [-2, 2]: subtracted from the
        logit of each generated token once, and once per occurrence.
    logit_bias: token id -> value added to its logit (-inf bans the token).
    seed: seeds the draw; the same seed gives the same tokens. None: fresh entropy.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: Mapping[int, float] | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        def fix(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        temperature = _number("temperature", self.temperature)
        if not 0.0 <= temperature < math.inf:
            raise ValueError(f"temperature must be >= 0 and finite (0: greedy), got {temperature}")
        fix("temperature", temperature)
        top_k = _integer("top_k", self.top_k)
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0: no limit), got {top_k}")
        fix("top_k", top_k)
        top_p = _number("top_p", self.top_p)
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        fix("top_p", top_p)
        min_p = _number("min_p", self.min_p)
        if not 0.0 <= min_p <= 1.0:
            raise ValueError(f"min_p must be in [0, 1], got {min_p}")
        fix("min_p", min_p)
        penalty = _number("repetition_penalty", self.repetition_penalty)
        if not 0.0 < penalty < math.inf:
            raise ValueError(f"repetition_penalty must be > 0 and finite, got {penalty}")
        fix("repetition_penalty", penalty)
        for name in ("presence_penalty", "frequency_penalty"):
            value = _number(name, getattr(self, name))
            if not -2.0 <= value <= 2.0:
                raise ValueError(f"{name} must be in [-2, 2], got {value}")
            fix(name, value)
        if self.logit_bias is not None:
            if not isinstance(self.logit_bias, Mapping):
                kind = type(self.logit_bias).__name__
                raise ValueError(f"logit_bias must map token ids to numbers, got a {kind}")
            bias: dict[int, float] = {}
            for key, value in self.logit_bias.items():
                token = _integer("logit_bias key", key)
                if token < 0:
                    raise ValueError(f"logit_bias key must be a token id >= 0, got {token}")
                number = _number(f"logit_bias[{token}]", value)
                if number == math.inf:
                    raise ValueError(f"logit_bias[{token}] must not be +inf")
                bias[token] = number
            fix("logit_bias", bias)
        if self.seed is not None:
            seed = _integer("seed", self.seed)
            if seed < 0:
                raise ValueError(f"seed must be >= 0, got {seed}")
            fix("seed", seed)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass
class _Counts:
    """The distinct ids seen so far, in order of first appearance, with a count for each,
    so that a penalty touches only those ids instead of the whole vocabulary."""

    vocab_size: int
    ids: list[int] = field(default_factory=list)
    counts: np.ndarray[Any, np.dtype[np.float32]] = field(init=False)
    _array: IntArray | None = None

    def __post_init__(self) -> None:
        self.counts = np.zeros(self.vocab_size, dtype=np.float32)

    def add(self, token: int) -> None:
        if self.counts[token] == 0:
            self.ids.append(token)
            self._array = None
        self.counts[token] += 1

    def array(self) -> IntArray:
        if self._array is None:
            self._array = np.array(self.ids, dtype=np.int64)
        return self._array


class Sampler:
    """Picks tokens for one sequence under `params`, tracking the ids the penalties need.

    `prompt_ids` count for the repetition penalty (as in HF); only ids passed to `observe`
    count for the presence and frequency penalties (as in OpenAI).
    """

    def __init__(
        self, params: SamplingParams, vocab_size: int, prompt_ids: Iterable[int] = ()
    ) -> None:
        self.params = params
        self.vocab_size = vocab_size
        self._rng = np.random.default_rng(params.seed)
        self._seen = _Counts(vocab_size)  # prompt and output: repetition penalty
        self._generated = _Counts(vocab_size)  # output only: presence and frequency
        for token in prompt_ids:
            self._seen.add(int(token))
        self._bias_ids: IntArray | None = None
        self._bias_values: FloatArray | None = None
        if params.logit_bias:
            for token in params.logit_bias:
                if token >= vocab_size:
                    raise ValueError(
                        f"logit_bias key {token} is outside the vocabulary [0, {vocab_size})"
                    )
            self._bias_ids = np.fromiter(params.logit_bias, dtype=np.int64)
            self._bias_values = np.fromiter(params.logit_bias.values(), dtype=np.float32)

    def observe(self, token: int) -> None:
        """Records a generated token for the penalties of later steps."""
        self._seen.add(token)
        self._generated.add(token)

    # -- the pipeline -----------------------------------------------------------------------

    def penalized(self, logits: np.ndarray[Any, Any]) -> FloatArray:
        """Logits after bias and penalties (a new float32 array when any applies)."""
        p = self.params
        x: FloatArray = np.asarray(logits, dtype=np.float32)
        if x.shape != (self.vocab_size,):
            raise ValueError(f"logits must have shape ({self.vocab_size},), got {x.shape}")
        repeat = p.repetition_penalty != 1.0 and bool(self._seen.ids)
        presence = bool(p.presence_penalty or p.frequency_penalty) and bool(self._generated.ids)
        if self._bias_ids is None and not repeat and not presence:
            return x
        x = x.copy()  # the caller's logits stay as they were
        if self._bias_ids is not None and self._bias_values is not None:
            x[self._bias_ids] += self._bias_values
        if repeat:
            ids = self._seen.array()
            score = x[ids]
            penalty = np.float32(p.repetition_penalty)
            x[ids] = np.where(score < 0, score * penalty, score / penalty)
        if presence:
            ids = self._generated.array()
            x[ids] -= (self._generated.counts[ids] * np.float32(p.frequency_penalty)
                       + np.float32(p.presence_penalty))
        return x

    def candidates(self, logits: np.ndarray[Any, Any]) -> tuple[IntArray | None, FloatArray]:
        """The tokens sampling may pick and their processed logits: (ids, values), or
        (None, all values) when nothing was filtered. Greedy keeps only the argmax."""
        ids, x, _, keep = self._filter(logits)
        if keep is not None:
            ids, x = _keep(ids, x, keep)
        return ids, x

    def _filter(
        self, logits: np.ndarray[Any, Any]
    ) -> tuple[IntArray | None, FloatArray, FloatArray | None, BoolArray | None]:
        """The filters' verdict on a row: (ids, x, weights, keep). ids and x are the
        candidates top-k (or greedy) left, as in candidates(); weights are exp(x - max x)
        when top-p or min-p computed them; keep says which of x those two keep (None: all).
        They leave the row whole: when the logits are flat the survivors are most of it,
        and a draw over zeroed weights costs less than gathering them. Neither drops the top
        token, so the weights stay the ones the draw needs."""
        p = self.params
        x = self.penalized(logits)
        if p.greedy:
            best = int(np.argmax(x))
            if x[best] == -np.inf:
                raise ValueError("no token can be picked: logit_bias bans every candidate")
            return np.array([best], dtype=np.int64), x[best : best + 1], None, None
        if p.temperature != 1.0:
            x = x / np.float32(p.temperature)
        ids: IntArray | None = None
        if 0 < p.top_k < x.size:
            kth = np.partition(x, x.size - p.top_k)[x.size - p.top_k]
            ids, x = _keep(ids, x, x >= kth)
        weights: FloatArray | None = None
        keep: BoolArray | None = None
        if p.top_p < 1.0:
            weights = _weights(x)
            cut = _top_p_cut(weights, p.top_p)
            if cut is not None:
                keep = weights >= cut
        if p.min_p > 0.0:
            # exp(x - max) is the probability relative to the top token's, so HF's
            # `probs < min_p * max(probs)` is `weights < min_p`.
            if weights is None:
                weights = _weights(x)
            likely = weights >= np.float32(p.min_p)
            keep = likely if keep is None else keep & likely
        return ids, x, weights, keep

    def filtered_logits(self, logits: np.ndarray[Any, Any]) -> FloatArray:
        """The full row as HF's processors leave it: processed logits, -inf where filtered."""
        ids, values = self.candidates(logits)
        if ids is None:
            return values
        out = np.full(self.vocab_size, -np.inf, dtype=np.float32)
        out[ids] = values
        return out

    def sample(self, logits: np.ndarray[Any, Any]) -> int:
        """Picks the next token from one row of logits (vocab_size,)."""
        ids, values, weights, keep = self._filter(logits)
        if self.params.greedy:
            assert ids is not None
            return int(ids[0])
        if weights is None:
            weights = _weights(values)  # the top weight is 1, so the total is at least 1
        if keep is not None:
            if 4 * np.count_nonzero(keep) < keep.size:  # few survivors: gather them
                ids, weights = _keep(ids, weights, keep)
            else:  # most of the row: zeroing the rest costs less (exact: w * 1 or w * 0)
                weights = weights * keep
        index = _draw(weights, self._rng.random() * float(weights.sum(dtype=np.float64)))
        return index if ids is None else int(ids[index])


def _weights(x: FloatArray) -> FloatArray:
    """Unnormalised probabilities exp(x - max x), float32 like HF's softmax."""
    top = x.max()
    if top == -np.inf:
        raise ValueError("no token can be picked: logit_bias bans every candidate")
    weights: FloatArray = np.exp(x - top)
    return weights


def _keep(ids: IntArray | None, x: FloatArray, mask: BoolArray) -> tuple[IntArray, FloatArray]:
    """The candidates where mask holds: their ids and values (logits or weights)."""
    kept = np.flatnonzero(mask)
    return (kept if ids is None else ids[kept]), x[kept]


def _cumsum_search(w: FloatArray, target: float, side: Literal["left", "right"]) -> int:
    """np.searchsorted(np.cumsum(w), target, side) for non-negative w, summing blocks of
    _BLOCK at once and running the sequential prefix sum inside one block only."""
    n = w.size
    if n <= 4 * _BLOCK:
        return int(np.searchsorted(np.cumsum(w, dtype=np.float64), target, side))
    whole = n // _BLOCK
    ends = np.cumsum(w[: whole * _BLOCK].reshape(whole, _BLOCK).sum(axis=1, dtype=np.float64))
    block = int(np.searchsorted(ends, target, side))
    start = block * _BLOCK
    base = float(ends[block - 1]) if block else 0.0
    inside = np.cumsum(w[start : start + _BLOCK], dtype=np.float64) + base
    return start + int(np.searchsorted(inside, target, side))


def _draw(weights: FloatArray, target: float) -> int:
    """Inverse CDF: the first index whose prefix sum of weights exceeds target."""
    index = _cumsum_search(weights, target, "right")
    if index >= weights.size or weights[index] <= 0.0:
        # Block sums and in-block sums round differently; at a boundary that can land past
        # the end or on a zero weight. Redo it the slow, exact way.
        index = int(np.searchsorted(np.cumsum(weights, dtype=np.float64), target, "right"))
        index = min(index, weights.size - 1)
        while weights[index] <= 0.0:
            index -= 1
    return index


def _top_p_cut(weights: FloatArray, top_p: float) -> np.float32 | None:
    """The smallest weight in the nucleus, by HF's rule: sorted ascending, a token is
    removed while the prefix sum of weights up to it, itself included, is at most
    1 - top_p of the total. The top token is never removed. None when nothing is.

    Sorting the whole vocabulary costs about 0.25 ms, and only the few tokens around the
    cut need sorting. A sorted sample of every _SAMPLE_STRIDE-th weight says about where
    the cut lies; the weights in a band of values around that are sorted, on top of the
    sum of all the weights below the band. The band doubles if the cut lies outside it."""
    n = weights.size
    total = float(weights.sum(dtype=np.float64))
    rest = total - top_p * total
    sample = np.sort(weights[::_SAMPLE_STRIDE])
    guess = _cumsum_search(sample, rest * float(sample.sum(dtype=np.float64)) / total, "right")
    margin = 32  # sample positions each side: the guess is rarely further off
    while True:
        lo = sample[guess - margin] if guess - margin > 0 else None
        hi = sample[guess + margin] if guess + margin < sample.size else None
        in_band = np.ones(n, dtype=bool) if lo is None else weights >= lo
        n_below = n - int(np.count_nonzero(in_band))
        below = 0.0 if lo is None else total - float((weights * in_band).sum(dtype=np.float64))
        if hi is not None:
            in_band &= weights < hi
        band = np.sort(weights[np.flatnonzero(in_band)])
        removed = _cumsum_search(band, rest - below, "right")  # of the band's tokens
        # The cut lies in the band unless the band is too high (the tokens below it hold
        # more than rest) or too low (every token in it goes, and so does the next one,
        # the smallest weight >= hi).
        too_high = below > rest
        too_low = (removed == band.size and hi is not None
                   and below + float(band.sum(dtype=np.float64)) + float(hi) <= rest)
        if not (too_high or too_low):
            break
        margin *= 2
    if n_below + removed == 0:
        return None
    if removed == band.size and hi is not None:
        first_kept: np.float32 = hi
        return first_kept
    cut: np.float32 = band[min(removed, band.size - 1)]
    return cut
