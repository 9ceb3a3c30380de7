"""Choosing the next token from a row of logits: penalties, warpers and a seeded draw.

The processors follow Hugging Face `transformers` (RepetitionPenaltyLogitsProcessor,
TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, MinPLogitsWarper) and apply in
its order: logit bias, repetition penalty, presence/frequency penalties, then - unless the
temperature is 0, which means greedy - temperature, top-k, top-p and min-p.
Presence and frequency penalties follow OpenAI: they count generated tokens only.

Nothing here knows the model or the tokenizer: a `Sampler` sees logits and token ids.
The passes over a whole row that run per token (the repetition penalty, softmax weights,
the top-k and top-p floors, the draw) are in C++ (`_core.sampling`): in numpy they took
several passes with temporaries, on the cold caches a decode step leaves, some 4% of it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._core import sampling as _native

# The arithmetic is float32, as in HF: a value is checked against float32's range, since one
# that passes as a Python float can still be 0 or infinite once converted (a temperature of
# 1e-46 would divide the logits by zero).
_F32_TINY = float(np.finfo(np.float32).tiny)
_F32_MAX = float(np.finfo(np.float32).max)
NOT_FINITE = "logits hold NaN or +inf: no distribution to sample"

FloatArray = np.ndarray[Any, np.dtype[np.float32]]
IntArray = np.ndarray[Any, np.dtype[np.int64]]
BoolArray = np.ndarray[Any, np.dtype[np.bool_]]


def sample_seed(seed: int | None, k: int) -> int | None:
    """The seed of the k-th of n samples drawn from one prompt with seed (generate's n=,
    the server and the dataset jobs all use this one derivation).

    k = 0 gives seed itself, so the first sample is what a plain call with seed gives; k > 0
    gives the first 63 bits of numpy's SeedSequence([seed, k]) state, a hash that keeps the
    samples' streams apart. seed None stays None: every sample draws fresh entropy.
    """
    if seed is None or k == 0:
        return seed
    state = np.random.SeedSequence([seed, k]).generate_state(1, np.uint64)[0]
    return int(state) >> 1


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
        if temperature != 0.0 and not _F32_TINY <= temperature <= _F32_MAX:
            raise ValueError(
                f"temperature must be 0 (greedy) or in [{_F32_TINY:.7g}, {_F32_MAX:.7g}] "
                f"(float32's normal range), got {temperature}"
            )
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
        if not _F32_TINY <= penalty <= _F32_MAX:
            raise ValueError(
                f"repetition_penalty must be in [{_F32_TINY:.7g}, {_F32_MAX:.7g}] (> 0 and "
                f"within float32's normal range), got {penalty}"
            )
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
                if number != -math.inf and not -_F32_MAX <= number <= _F32_MAX:
                    raise ValueError(
                        f"logit_bias[{token}] must be -inf (a ban) or within float32's range "
                        f"[{-_F32_MAX:.7g}, {_F32_MAX:.7g}], got {number}"
                    )
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


class _Counts:
    """The distinct ids seen so far, in order of first appearance, with a count for each,
    so that a penalty touches only those ids instead of the whole vocabulary. The ids live
    in a numpy buffer that doubles as it fills: a penalty reads them every token, and
    building an array from a list each time costs more than the penalty itself."""

    def __init__(self, vocab_size: int) -> None:
        self.counts: FloatArray = np.zeros(vocab_size, dtype=np.float32)
        self._ids: IntArray = np.empty(64, dtype=np.int64)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def add(self, token: int) -> None:
        if self.counts[token] == 0:
            if self._n == self._ids.size:
                self._ids = np.concatenate([self._ids, np.empty_like(self._ids)])
            self._ids[self._n] = token
            self._n += 1
        self.counts[token] += 1

    def array(self) -> IntArray:
        """The distinct ids so far: a view, valid until the next add."""
        return self._ids[: self._n]


class Sampler:
    """Picks tokens for one sequence under `params`, tracking the ids the penalties need.

    `prompt_ids` count for the repetition penalty (as in HF); only ids passed to `observe`
    count for the presence and frequency penalties (as in OpenAI). `banned` ids are never
    picked (the generation loop bans those its tokenizer cannot decode).
    """

    def __init__(
        self,
        params: SamplingParams,
        vocab_size: int,
        prompt_ids: Iterable[int] = (),
        *,
        banned: Iterable[int] = (),
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
        bias = dict(params.logit_bias or {})
        for token in bias:
            if token >= vocab_size:
                raise ValueError(
                    f"logit_bias key {token} is outside the vocabulary [0, {vocab_size})"
                )
        # A ban is a bias of -inf: one pass adds both (numpy adds one of two equal indices).
        bias.update(dict.fromkeys(banned, -math.inf))
        if bias:
            self._bias_ids = np.fromiter(bias, dtype=np.int64)
            self._bias_values = np.fromiter(bias.values(), dtype=np.float32)
        # min-p's floor on the weights, as the float32 the weights are compared in.
        self._min_p = float(np.float32(params.min_p))

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
        repeat = p.repetition_penalty != 1.0 and len(self._seen) > 0
        presence = bool(p.presence_penalty or p.frequency_penalty) and len(self._generated) > 0
        if self._bias_ids is None and not repeat and not presence:
            return x
        out = x
        if self._bias_ids is not None and self._bias_values is not None:
            out = out.copy()  # the caller's logits stay as they were
            with np.errstate(over="ignore"):  # reported as an error once it is sampled
                out[self._bias_ids] += self._bias_values
        if repeat:  # a new array: one pass in C++ instead of five numpy calls
            out = _native.repetition_penalty(out, self._seen.array(), p.repetition_penalty)
        if presence:
            if out is x:
                out = out.copy()
            ids = self._generated.array()
            out[ids] -= (self._generated.counts[ids] * np.float32(p.frequency_penalty)
                         + np.float32(p.presence_penalty))
        return out

    def candidates(self, logits: np.ndarray[Any, Any]) -> tuple[IntArray | None, FloatArray]:
        """The tokens sampling may pick and their processed logits: (ids, values), or
        (None, all values) when nothing was filtered. Greedy keeps only the argmax."""
        ids, x, weights, floor = self._filter(logits)
        if weights is not None and floor > 0.0:
            keep = weights >= np.float32(floor)
            if not keep.all():
                ids, x = _keep(ids, x, keep)
        return ids, x

    def _filter(
        self, logits: np.ndarray[Any, Any], argmax: int | None = None
    ) -> tuple[IntArray | None, FloatArray, FloatArray | None, float]:
        """The filters' verdict on a row: (ids, x, weights, floor). ids and x are the
        candidates top-k (or greedy) left, as in candidates(); weights are exp(x - max x)
        when top-p or min-p computed them, and those two keep the weights >= floor (0: all).
        They leave the row whole: when the logits are flat the survivors are most of it,
        and the draw skips the weights under the floor for less than gathering the rest
        costs. Neither drops the top token, whose weight is 1. argmax: logits' argmax, which
        greedy takes where no bias or penalty changed the row."""
        p = self.params
        x = self.penalized(logits)
        if p.greedy:
            # The first NaN if there is one, else the first +inf or largest value.
            best = argmax if argmax is not None and x is logits else int(np.argmax(x))
            if not x[best] < np.inf:
                raise self._not_finite(logits)
            if x[best] == -np.inf:
                raise _all_banned()
            return np.array([best], dtype=np.int64), x[best : best + 1], None, 0.0
        if p.temperature < 1.0:
            # An overflow to +inf is reported below as an error naming the temperature, not
            # as numpy's warning (an exception where warnings are errors).
            with np.errstate(over="ignore"):
                x = x / np.float32(p.temperature)
        elif p.temperature != 1.0:
            x = x / np.float32(p.temperature)
        ids: IntArray | None = None
        if 0 < p.top_k < x.size:
            try:
                kth = _native.kth_largest(x, p.top_k)  # ties with it are kept, as in HF
            except ValueError:  # NaN
                raise self._not_finite(logits) from None
            ids, x = _keep(ids, x, x >= np.float32(kth))
        weights: FloatArray | None = None
        floor = 0.0
        if p.top_p < 1.0 or p.min_p > 0.0:
            weights, total = self._weights(x, logits)
            if p.top_p < 1.0:
                floor, drop = _native.top_p_cut(weights, total - p.top_p * total)
                if drop:
                    # Tied with the floor, and dropped as HF's sort drops them: the first.
                    weights[np.flatnonzero(weights == np.float32(floor))[:drop]] = 0.0
            # exp(x - max) is the probability relative to the top token's, so HF's
            # `probs < min_p * max(probs)` is `weights < min_p`.
            floor = max(floor, self._min_p)
        return ids, x, weights, floor

    def filtered_logits(self, logits: np.ndarray[Any, Any]) -> FloatArray:
        """The full row as HF's processors leave it: processed logits, -inf where filtered."""
        ids, values = self.candidates(logits)
        if ids is None:
            return values
        out = np.full(self.vocab_size, -np.inf, dtype=np.float32)
        out[ids] = values
        return out

    def sample(self, logits: np.ndarray[Any, Any], argmax: int | None = None) -> int:
        """Picks the next token from one row of logits (vocab_size,). argmax: the row's
        np.argmax, where the caller has it (a batched decode step computes it while the
        logits are in cache): greedy sampling then skips its own pass over the row."""
        ids, values, weights, floor = self._filter(logits, argmax)
        if self.params.greedy:
            assert ids is not None
            return int(ids[0])
        if weights is None:
            weights, _ = self._weights(values, logits)
        index = _native.draw(weights, floor, self._rng.random())
        return index if ids is None else int(ids[index])

    def _weights(
        self, x: FloatArray, logits: np.ndarray[Any, Any]
    ) -> tuple[FloatArray, float]:
        """Unnormalised probabilities exp(x - max x), float32 like HF's softmax, and their
        sum. x: the processed logits; logits: the row they came from, to explain a NaN or
        +inf."""
        try:
            weights, total = _native.softmax_weights(x)
        except ValueError:  # NaN or +inf
            raise self._not_finite(logits) from None
        if total == 0.0:
            raise _all_banned()
        return weights, total

    def _not_finite(self, logits: np.ndarray[Any, Any]) -> ValueError:
        """The error for a row with NaN or +inf, greedy or not, saying where it came from.
        Only computed once the row has failed, so the normal path pays nothing for it."""

        def bad(x: FloatArray) -> bool:
            return bool(np.isnan(x).any() or np.isposinf(x).any())

        if bad(np.asarray(logits, dtype=np.float32)):
            return ValueError(NOT_FINITE)
        with np.errstate(over="ignore"):
            penalized = self.penalized(logits)
        if bad(penalized):
            return ValueError(f"{NOT_FINITE} (logit_bias or a penalty overflowed float32)")
        if self.params.temperature in (0.0, 1.0):
            return ValueError(NOT_FINITE)
        return ValueError(
            f"{NOT_FINITE} (temperature={self.params.temperature} is too small for these "
            "logits: dividing by it overflows float32; use temperature=0 for greedy decoding)"
        )


def _all_banned() -> ValueError:
    # -inf everywhere: from logit_bias, from the ban on ids the tokenizer cannot decode, or
    # in the logits themselves.
    return ValueError("no token can be picked: every candidate's logit is -inf (banned by "
                      "logit_bias, an id the tokenizer cannot decode, or the model's own)")


def _keep(ids: IntArray | None, x: FloatArray, mask: BoolArray) -> tuple[IntArray, FloatArray]:
    """The candidates where mask holds: their ids and values (logits or weights)."""
    kept = np.flatnonzero(mask)
    return (kept if ids is None else ids[kept]), x[kept]
