"""Samplers and logits processors against transformers' own, on random logits."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import pytest
from gpt2cpu.generation.loop import GenerationConfig
from gpt2cpu.generation.sampling import NOT_FINITE, Sampler, SamplingParams

torch = pytest.importorskip("torch")
logits_process = pytest.importorskip("transformers.generation.logits_process")

# Shapes of logits rows: GPT-2's vocabulary at a random model's spread (nearly flat) and a
# trained model's (peaked), the small test vocabulary, and a tiny one.
# (50257, 0.05) is nearly uniform, like the logits of `bench --shape`'s random-weight models:
# there top-p finds its cut from the least likely end.
ROWS = [(50257, 1.0), (50257, 6.0), (50257, 0.05), (1001, 2.0), (10, 1.0)]


def random_logits(vocab: int, scale: float, seed: int) -> np.ndarray[Any, Any]:
    return (np.random.default_rng(seed).standard_normal(vocab) * scale).astype(np.float32)


def hf_filtered(processors: list[Any], logits: np.ndarray[Any, Any],
                input_ids: list[int] | None = None) -> np.ndarray[Any, Any]:
    ids = torch.tensor([input_ids or [0]], dtype=torch.long)
    scores = torch.from_numpy(logits.copy())[None]
    for processor in processors:
        scores = processor(ids, scores)
    filtered: np.ndarray[Any, Any] = scores[0].numpy()
    return filtered


def ours(logits: np.ndarray[Any, Any], prompt_ids: Iterable[int] = (), **params: Any
         ) -> np.ndarray[Any, Any]:
    return Sampler(SamplingParams(**params), logits.size, prompt_ids).filtered_logits(logits)


def assert_same_filter(mine: np.ndarray[Any, Any], theirs: np.ndarray[Any, Any],
                       logits: np.ndarray[Any, Any] | None = None, top_p: float | None = None
                       ) -> None:
    """Same tokens removed and the same values kept. For top-p, a token may differ only
    where the probability above it is within rounding of top_p (float32 in HF, float64
    here, summed in other orders)."""
    kept, their_kept = np.isfinite(mine), np.isfinite(theirs)
    differ = np.flatnonzero(kept != their_kept)
    if differ.size:
        assert top_p is not None and logits is not None, f"masks differ at {differ[:10]}"
        probs = np.exp(logits.astype(np.float64) - logits.max())
        probs /= probs.sum()
        for j in differ:
            above = probs[probs > probs[j]].sum()
            assert abs(above - top_p) < 1e-5, (j, above, top_p)
        assert differ.size <= 2
    both = kept & their_kept
    np.testing.assert_array_equal(mine[both], theirs[both])


@pytest.mark.parametrize("temperature", [0.3, 0.7, 1.5, 4.0])
def test_temperature_matches_transformers(temperature: float) -> None:
    x = random_logits(1001, 2.0, 0)
    want = hf_filtered([logits_process.TemperatureLogitsWarper(temperature)], x)
    np.testing.assert_array_equal(ours(x, temperature=temperature), want)


@pytest.mark.parametrize("penalty", [0.5, 1.3, 2.0])
def test_repetition_penalty_matches_transformers(penalty: float) -> None:
    x = random_logits(1001, 2.0, 1)
    prompt = [5, 17, 17, 900, 3, 5]  # repeats count once, as in HF
    generated = [42, 17, 1000]
    sampler = Sampler(SamplingParams(repetition_penalty=penalty), x.size, prompt)
    for token in generated:
        sampler.observe(token)
    processor = logits_process.RepetitionPenaltyLogitsProcessor(penalty)
    want = hf_filtered([processor], x, prompt + generated)
    np.testing.assert_array_equal(sampler.filtered_logits(x), want)


@pytest.mark.parametrize(("vocab", "scale"), ROWS)
@pytest.mark.parametrize("top_k", [1, 2, 7, 50, 2000])
def test_top_k_matches_transformers(vocab: int, scale: float, top_k: int) -> None:
    x = random_logits(vocab, scale, top_k)
    want = hf_filtered([logits_process.TopKLogitsWarper(top_k)], x)
    assert_same_filter(ours(x, top_k=top_k), want)


def test_top_k_keeps_ties_like_transformers() -> None:
    x = np.array([1.0, 3.0, 2.0, 3.0, 2.0, 2.0, 0.5], dtype=np.float32)
    for top_k in range(1, 8):
        want = hf_filtered([logits_process.TopKLogitsWarper(top_k)], x)
        assert_same_filter(ours(x, top_k=top_k), want)


@pytest.mark.parametrize(("vocab", "scale"), ROWS)
@pytest.mark.parametrize("top_p", [0.05, 0.5, 0.9, 0.95, 0.999])
@pytest.mark.parametrize("seed", [0, 1])
def test_top_p_matches_transformers(vocab: int, scale: float, top_p: float, seed: int) -> None:
    x = random_logits(vocab, scale, seed)
    want = hf_filtered([logits_process.TopPLogitsWarper(top_p)], x)
    assert_same_filter(ours(x, top_p=top_p), want, x, top_p)


@pytest.mark.parametrize(("vocab", "scale"), ROWS)
@pytest.mark.parametrize("min_p", [0.01, 0.1, 0.5, 1.0])
def test_min_p_matches_transformers(vocab: int, scale: float, min_p: float) -> None:
    x = random_logits(vocab, scale, 3)
    want = hf_filtered([logits_process.MinPLogitsWarper(min_p)], x)
    assert_same_filter(ours(x, min_p=min_p), want)


@pytest.mark.parametrize(("vocab", "scale"), ROWS)
@pytest.mark.parametrize(
    "params",
    [
        dict(temperature=0.7, top_k=50, top_p=0.9, min_p=0.05),
        dict(temperature=1.3, top_p=0.8, min_p=0.02, repetition_penalty=1.2),
        dict(temperature=0.5, top_k=5, top_p=0.5),
    ],
)
def test_processor_chain_matches_transformers(vocab: int, scale: float,
                                              params: dict[str, Any]) -> None:
    """In HF's order: repetition penalty, temperature, top-k, top-p, min-p."""
    x = random_logits(vocab, scale, 4)
    prompt = [1, 2, 3, 2, vocab - 1]
    chain: list[Any] = []
    if "repetition_penalty" in params:
        chain.append(logits_process.RepetitionPenaltyLogitsProcessor(params["repetition_penalty"]))
    chain.append(logits_process.TemperatureLogitsWarper(params["temperature"]))
    if "top_k" in params:
        chain.append(logits_process.TopKLogitsWarper(params["top_k"]))
    chain.append(logits_process.TopPLogitsWarper(params["top_p"]))
    if "min_p" in params:
        chain.append(logits_process.MinPLogitsWarper(params["min_p"]))
    want = hf_filtered(chain, x, prompt)
    mine = ours(x, prompt, **params)
    # top-p's boundary check needs the distribution top-p saw: after the steps before it.
    before_top_p = hf_filtered(chain[:-2] if "min_p" in params else chain[:-1], x, prompt)
    assert_same_filter(mine, want, before_top_p, params["top_p"])


def test_presence_and_frequency_penalties_follow_openai() -> None:
    x = random_logits(50, 1.0, 5)
    sampler = Sampler(SamplingParams(presence_penalty=0.5, frequency_penalty=0.25), 50,
                      prompt_ids=[9, 9, 10])
    for token in [3, 3, 7, 3]:
        sampler.observe(token)
    want = x.copy()
    want[3] -= 3 * 0.25 + 0.5
    want[7] -= 1 * 0.25 + 0.5  # prompt tokens 9 and 10 are not penalised
    np.testing.assert_allclose(sampler.penalized(x), want, rtol=0, atol=1e-6)


def test_logit_bias_adds_and_bans() -> None:
    x = random_logits(100, 1.0, 6)
    sampler = Sampler(SamplingParams(logit_bias={4: 2.5, 8: -1.0}), 100)
    want = x.copy()
    want[4] += 2.5
    want[8] -= 1.0
    np.testing.assert_array_equal(sampler.penalized(x), want)
    banned = {i: -math.inf for i in range(100) if i != 13}
    sampler = Sampler(SamplingParams(logit_bias=banned, seed=0), 100)
    assert {sampler.sample(random_logits(100, 5.0, s)) for s in range(20)} == {13}
    everything = Sampler(SamplingParams(logit_bias=dict.fromkeys(range(100), -math.inf)), 100)
    with pytest.raises(ValueError, match="every candidate.s logit is -inf"):
        everything.sample(x)
    greedy = Sampler(SamplingParams(temperature=0, logit_bias=dict.fromkeys(range(100), -math.inf)),
                     100)
    with pytest.raises(ValueError, match="every candidate.s logit is -inf"):
        greedy.sample(x)
    with pytest.raises(ValueError, match="logit_bias key 100 is outside"):
        Sampler(SamplingParams(logit_bias={100: 1.0}), 100)


def test_greedy_is_argmax_after_penalties() -> None:
    x = random_logits(1001, 2.0, 7)
    best = int(np.argmax(x))
    assert Sampler(SamplingParams(temperature=0), 1001).sample(x) == best
    # A strong repetition penalty on the best token moves greedy off it.
    penalised = Sampler(SamplingParams(temperature=0, repetition_penalty=1e6), 1001, [best])
    assert penalised.sample(x) != best
    # The row's argmax a batched step hands over stands for the row only where nothing
    # changed it: a penalty or bias makes greedy look again.
    assert penalised.sample(x, best) != best
    biased = Sampler(SamplingParams(temperature=0, logit_bias={3: 100.0}), 1001)
    assert biased.sample(x, best) == 3


@pytest.mark.parametrize(("vocab", "scale"), ROWS)
def test_top_k_1_equals_greedy(vocab: int, scale: float) -> None:
    sampler = Sampler(SamplingParams(top_k=1, temperature=1.7, seed=3), vocab)
    for seed in range(20):
        x = random_logits(vocab, scale, seed)
        assert sampler.sample(x) == int(np.argmax(x))


def draws(params: SamplingParams, rows: list[np.ndarray[Any, Any]]) -> list[int]:
    sampler = Sampler(params, rows[0].size)
    return [sampler.sample(row) for row in rows]


@pytest.mark.parametrize(("vocab", "scale"), ROWS)
def test_seeded_sampling_is_reproducible(vocab: int, scale: float) -> None:
    rows = [random_logits(vocab, scale, s) for s in range(30)]
    params = SamplingParams(temperature=0.9, top_p=0.95, seed=1234)
    first = draws(params, rows)
    assert draws(params, rows) == first
    assert draws(SamplingParams(temperature=0.9, top_p=0.95, seed=1235), rows) != first


# Upper 0.1% points of the chi-square distribution, by degrees of freedom.
CHI2_999 = {4: 18.47, 6: 22.46, 11: 31.26, 20: 45.31}


def chi_square(counts: np.ndarray[Any, Any], probs: np.ndarray[Any, Any]) -> float:
    expected = probs * counts.sum()
    return float(((counts - expected) ** 2 / expected).sum())


def test_sampling_draws_from_softmax() -> None:
    """At temperature 1 with no filter the draws follow softmax(logits)."""
    x = random_logits(12, 1.5, 8)
    probs = np.exp(x.astype(np.float64) - x.max())
    probs /= probs.sum()
    sampler = Sampler(SamplingParams(seed=99), 12)
    counts = np.bincount([sampler.sample(x) for _ in range(20000)], minlength=12)
    assert chi_square(counts, probs) < CHI2_999[11]


def test_sampling_over_a_large_vocabulary_draws_from_softmax() -> None:
    """The block-wise search over 50257 weights: 20 likely tokens spread over the
    vocabulary, the rest binned together."""
    rng = np.random.default_rng(9)
    x = np.full(50257, -4.0, dtype=np.float32) + rng.standard_normal(50257).astype(np.float32)
    likely = rng.choice(50257, 20, replace=False)
    x[likely] = rng.uniform(3.0, 6.0, 20).astype(np.float32)
    probs = np.exp(x.astype(np.float64) - x.max())
    probs /= probs.sum()
    sampler = Sampler(SamplingParams(seed=7), 50257)
    picks = np.array([sampler.sample(x) for _ in range(8000)])
    counts = np.array([(picks == t).sum() for t in likely] + [(~np.isin(picks, likely)).sum()])
    binned = np.append(probs[likely], 1 - probs[likely].sum())
    assert chi_square(counts, binned) < CHI2_999[20]


def test_filtered_sampling_draws_from_the_renormalised_distribution() -> None:
    x = random_logits(1001, 2.0, 10)
    top5 = np.argsort(x)[::-1][:5]
    probs = np.exp(x[top5].astype(np.float64) / 0.8 - x[top5].max() / 0.8)
    probs /= probs.sum()
    sampler = Sampler(SamplingParams(temperature=0.8, top_k=5, seed=11), 1001)
    picks = [sampler.sample(x) for _ in range(10000)]
    assert set(picks) <= set(top5.tolist())
    counts = np.array([picks.count(int(t)) for t in top5])
    assert chi_square(counts, probs) < CHI2_999[4]


@pytest.mark.parametrize(("vocab", "scale"), ROWS)
@pytest.mark.parametrize("params", [dict(top_p=0.5), dict(top_p=0.9, min_p=0.3)])
def test_filtered_draws_come_from_the_candidates(vocab: int, scale: float,
                                                 params: dict[str, Any]) -> None:
    """A flat row keeps most tokens (the draw zeroes the rest), a peaked one few (the draw
    gathers them): either way no filtered token is drawn."""
    x = random_logits(vocab, scale, 12)
    sampler = Sampler(SamplingParams(seed=5, **params), vocab)
    ids, _ = sampler.candidates(x)
    allowed = set(range(vocab)) if ids is None else set(ids.tolist())
    assert {sampler.sample(x) for _ in range(300)} <= allowed


def test_top_p_draws_from_the_renormalised_nucleus() -> None:
    """Most of the row survives top-p here, so the draw runs over zeroed weights."""
    x = random_logits(12, 0.7, 13)
    sampler = Sampler(SamplingParams(top_p=0.8, seed=21), 12)
    ids, kept = sampler.candidates(x)
    assert ids is not None and 4 * ids.size >= 12 and ids.size < 12
    probs = np.exp(kept.astype(np.float64) - kept.max())
    probs /= probs.sum()
    picks = [sampler.sample(x) for _ in range(20000)]
    assert set(picks) <= set(ids.tolist())
    counts = np.array([picks.count(int(t)) for t in ids])
    assert chi_square(counts, probs) < CHI2_999[ids.size - 1]


BAD_CONTROLS = [
    (dict(temperature=-0.1), "temperature"),
    (dict(temperature=math.nan), "temperature"),
    (dict(temperature=math.inf), "temperature"),
    (dict(temperature="hot"), "temperature"),
    (dict(top_k=-1), "top_k"),
    (dict(top_k=2.5), "top_k"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.01), "top_p"),
    (dict(min_p=-0.01), "min_p"),
    (dict(min_p=1.5), "min_p"),
    (dict(repetition_penalty=0.0), "repetition_penalty"),
    (dict(repetition_penalty=-1.0), "repetition_penalty"),
    (dict(presence_penalty=2.5), "presence_penalty"),
    (dict(frequency_penalty=-3), "frequency_penalty"),
    (dict(logit_bias={1: math.inf}), "logit_bias"),
    (dict(logit_bias={-1: 0.0}), "logit_bias"),
    (dict(logit_bias={1: "x"}), "logit_bias"),
    (dict(logit_bias=[1, 2]), "logit_bias"),
    (dict(seed=-5), "seed"),
    (dict(seed=1.5), "seed"),
    # Valid as Python floats, not in float32: 0 or infinite once converted.
    (dict(temperature=1e-40), "temperature"),
    (dict(temperature=1e-46), "temperature"),
    (dict(temperature=1e39), "temperature"),
    (dict(repetition_penalty=1e-40), "repetition_penalty"),
    (dict(repetition_penalty=1e39), "repetition_penalty"),
    (dict(logit_bias={1: 1e39}), r"logit_bias\[1\]"),
    (dict(logit_bias={1: -1e39}), r"logit_bias\[1\]"),
]


@pytest.mark.parametrize(("controls", "name"), BAD_CONTROLS)
def test_bad_sampling_controls_name_the_argument(controls: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        SamplingParams(**controls)
    with pytest.raises(ValueError, match=name):
        GenerationConfig(**controls)


@pytest.mark.parametrize(
    ("controls", "name"),
    [
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(max_new_tokens=-3), "max_new_tokens"),
        (dict(max_new_tokens=2.0), "max_new_tokens"),
        (dict(stop=""), "stop"),
        (dict(stop=["ok", 3]), "stop"),
        (dict(stop=5), "stop must be a string or a list of strings, got 5"),
        (dict(stop=b"ok"), "stop must be a string or a list of strings"),
        (dict(stop="x" * (1 << 20 | 1)), "stop strings must hold at most 1,048,576 char"),
        (dict(stop=["x" * (1 << 19)] * 1 + ["y" * (1 << 19 | 1)]), "got 1,048,577"),
        (dict(ignore_eos="yes"), "ignore_eos"),
        (dict(truncate=1), "truncate"),
    ],
)
def test_bad_generation_controls_name_the_argument(controls: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        GenerationConfig(**controls)


def test_float32_extremes_that_pass_are_usable() -> None:
    tiny = float(np.finfo(np.float32).tiny)
    assert SamplingParams(temperature=tiny).temperature == tiny
    assert SamplingParams(logit_bias={3: -math.inf, 4: 3e38}).logit_bias == {3: -math.inf, 4: 3e38}


@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize("params", [
    dict(temperature=0.0), dict(), dict(top_k=5), dict(top_p=0.9), dict(min_p=0.1),
    dict(temperature=0.5, top_k=3, top_p=0.5),
], ids=str)
def test_nan_or_inf_logits_are_one_error_greedy_or_not(params: dict[str, Any], bad: float) -> None:
    """Greedy used to return token 0 for a row of NaN (argmax's first NaN), silently."""
    sampler = Sampler(SamplingParams(seed=0, **params), 50)
    for where in (0, 7, 49):
        row = random_logits(50, 1.0, where)
        row[where] = bad
        with pytest.raises(ValueError, match=rf"^{re.escape(NOT_FINITE)}$"):
            sampler.sample(row)
    with pytest.raises(ValueError, match="^logits hold NaN or"):
        sampler.sample(np.full(50, math.nan, dtype=np.float32))


def test_an_overflow_the_controls_cause_names_them() -> None:
    row = random_logits(50, 1.0, 0) * np.float32(1e3)
    sampler = Sampler(SamplingParams(temperature=1.5e-38, seed=0), 50)
    with pytest.raises(ValueError, match=r"NaN or \+inf.*temperature=1.5e-38 is too small"):
        sampler.sample(row)
    row[7] = 1e38
    biased = Sampler(SamplingParams(logit_bias={7: 3e38}, seed=0), 50)
    with pytest.raises(ValueError, match=r"NaN or \+inf.*logit_bias or a penalty overflowed"):
        biased.sample(row)


@pytest.mark.parametrize(("vocab", "top_p"), [(10, 1e-6), (10, 0.35), (10, 0.999), (7, 0.5),
                                              (100, 0.05), (1000, 0.3)])
def test_top_p_with_tied_probabilities_keeps_as_few_as_transformers(vocab: int,
                                                                    top_p: float) -> None:
    """All-equal logits with top_p=1e-6 kept the whole row; HF's sort puts the ties in a
    row and keeps the fewest tokens whose probability reaches top_p."""
    flat = np.zeros(vocab, dtype=np.float32)
    theirs = hf_filtered([logits_process.TopPLogitsWarper(top_p)], flat)
    mine = ours(flat, top_p=top_p)
    # HF sums float32 probabilities: where the cut falls exactly on a token (1000 x 0.001
    # against 0.7) its rounding may keep one more.
    assert abs(np.isfinite(mine).sum() - np.isfinite(theirs).sum()) <= (vocab > 16)
    if vocab <= 16:  # HF's sort is stable on rows this short: the same tokens, the last ones
        np.testing.assert_array_equal(mine, theirs)
    # Ties at the cut under a distinct top: 3 tokens at 0.3, and the rest lower.
    row = np.concatenate([np.full(3, 2.0), np.full(vocab - 3, -1.0)]).astype(np.float32)
    theirs = hf_filtered([logits_process.TopPLogitsWarper(top_p)], row)
    assert abs(np.isfinite(ours(row, top_p=top_p)).sum() - np.isfinite(theirs).sum()) <= 1
    # The draw keeps to the kept tokens.
    sampler = Sampler(SamplingParams(top_p=top_p, seed=1), vocab)
    kept = set(np.flatnonzero(np.isfinite(mine)).tolist())
    assert {sampler.sample(flat) for _ in range(50)} <= kept


def test_controls_are_normalised() -> None:
    config = GenerationConfig(temperature=1, top_p=1, stop="x", seed=np.int64(3))  # type: ignore[arg-type]
    assert isinstance(config.temperature, float) and config.stop == ("x",)
    assert config.seed == 3 and type(config.seed) is int
    assert GenerationConfig(stop=["a", "b", "a"]).stop == ("a", "b")


