"""End-to-end speed of a random-weight GPT-2 124M: one decode step, and prompts.

    pytest benchmarks/bench_model.py

The model is written once to the user's cache (gpt2cpu.bench.random_model). `gpt2cpu bench
--shape 124m --compare transformers` gives the same figures beside transformers.
"""

from __future__ import annotations

from typing import Any

import gpt2cpu
import numpy as np
import pytest
from gpt2cpu.bench.random_model import cached_random_model
from rates import record_rate


@pytest.fixture(scope="module")
def model_dir() -> Any:
    return cached_random_model("124m")


def _ids(n: int) -> list[int]:
    return [int(i) for i in np.random.default_rng(n).integers(0, 50257, n)]


@pytest.mark.parametrize("position", [16, 1000])
def test_decode_step(benchmark: Any, model_dir: Any, threads: int, position: int) -> None:
    """One token through the model with `position` tokens already cached."""
    model = gpt2cpu.Model.from_pretrained(model_dir, threads=threads)
    seq = model.new_sequence(position + 1)
    seq.append(_ids(position))

    def step() -> None:
        seq.append([42])
        seq.truncate(position)

    benchmark(step)
    record_rate(benchmark, "tokens/s", 1)


@pytest.mark.parametrize("tokens", [128, 512])
def test_prompt(benchmark: Any, model_dir: Any, threads: int, tokens: int) -> None:
    model = gpt2cpu.Model.from_pretrained(model_dir, threads=threads)
    ids = _ids(tokens)
    benchmark(lambda: model.new_sequence(tokens).append(ids))
    record_rate(benchmark, "tokens/s", tokens)
