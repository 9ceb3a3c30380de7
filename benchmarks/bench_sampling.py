"""Picking one token from GPT-2's 50257 logits, the Python work between two decode steps.

    pytest benchmarks/bench_sampling.py

Rows as a random-weight model gives them (nearly flat: top-p cuts deep into the vocabulary)
and as a trained one might (peaked). These run warm, one after another; between decode steps
the caches are cold and each costs more (README, Performance).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from gpt2cpu.generation.sampling import Sampler, SamplingParams

VOCAB = 50257
CONTROLS: dict[str, dict[str, Any]] = {
    "greedy": dict(temperature=0.0),
    "top_k": dict(temperature=0.8, top_k=50),
    "top_p": dict(top_p=0.95),
    "top_p_penalty": dict(top_p=0.95, repetition_penalty=1.2),
    "min_p": dict(min_p=0.05),
}


@pytest.mark.parametrize("spread", [0.5, 4.0], ids=["flat", "peaked"])
@pytest.mark.parametrize("name", list(CONTROLS))
def test_sample(benchmark: Any, name: str, spread: float) -> None:
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal(VOCAB) * spread).astype(np.float32)
    sampler = Sampler(SamplingParams(seed=0, **CONTROLS[name]), VOCAB, range(0, 3000, 10))
    benchmark(sampler.sample, logits)
