"""The kernels alone at GPT-2 124M's matrix shapes.

    pytest benchmarks/bench_kernels.py

GEMV (one token, decode) is memory-bound: judge it by GB/s of weights streamed. GEMM (a
prompt) is compute-bound: judge it by GFLOP/s. Both are in each case's extra_info, computed
from the median time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from gpt2cpu import _core
from rates import record_rate

K = _core.testing
C = 768
# (name, k, n) of the 124M model's projections.
PROJECTIONS = [
    ("c_attn", C, 3 * C),
    ("attn.c_proj", C, C),
    ("c_fc", C, 4 * C),
    ("mlp.c_proj", 4 * C, C),
    ("lm_head", C, 50257),
]


def _weights(k: int, n: int) -> Any:
    rng = np.random.default_rng(k * n)
    return K.PackedWeight(rng.standard_normal((k, n), dtype=np.float32) * 0.02)


@pytest.mark.parametrize("name,k,n", PROJECTIONS, ids=[p[0] for p in PROJECTIONS])
def test_gemv(benchmark: Any, threads: int, name: str, k: int, n: int) -> None:
    w = _weights(k, n)
    x = np.random.default_rng(0).standard_normal((1, k), dtype=np.float32)
    benchmark(w.matmul, x, threads=threads)
    record_rate(benchmark, "GB/s", k * n * 4 / 1e9)


@pytest.mark.parametrize("rows", [128, 512])
@pytest.mark.parametrize("name,k,n", PROJECTIONS[:4], ids=[p[0] for p in PROJECTIONS[:4]])
def test_gemm(benchmark: Any, threads: int, rows: int, name: str, k: int, n: int) -> None:
    w = _weights(k, n)
    x = np.random.default_rng(0).standard_normal((rows, k), dtype=np.float32)
    benchmark(w.matmul, x, threads=threads)
    record_rate(benchmark, "GFLOP/s", 2 * rows * k * n / 1e9)


@pytest.mark.parametrize("context", [16, 256, 1000])
def test_attention_decode(benchmark: Any, threads: int, context: int) -> None:
    """One new token attending over `context` cached positions, 12 heads of 64."""
    rng = np.random.default_rng(context)
    q = rng.standard_normal((1, C), dtype=np.float32)
    k = rng.standard_normal((12, context + 1, 64), dtype=np.float32)
    v = rng.standard_normal((12, context + 1, 64), dtype=np.float32)
    benchmark(K.attention, q, k, v, context, 0.125, threads)


def test_attention_prompt(benchmark: Any, threads: int) -> None:
    """A 512-token prompt's causal attention, 12 heads of 64."""
    rng = np.random.default_rng(512)
    q = rng.standard_normal((512, C), dtype=np.float32)
    k = rng.standard_normal((12, 512, 64), dtype=np.float32)
    v = rng.standard_normal((12, 512, 64), dtype=np.float32)
    benchmark(K.attention, q, k, v, 0, 0.125, threads)


DTYPES = list(_core.DTYPES)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,k,n", PROJECTIONS[2:4], ids=[p[0] for p in PROJECTIONS[2:4]])
def test_typed_gemv(benchmark: Any, threads: int, dtype: str, name: str, k: int, n: int) -> None:
    """One token's product with each weight type: GB/s of the bytes the type stores."""
    rng = np.random.default_rng(k * n)
    w = K.PackedWeight(rng.standard_normal((k, n), dtype=np.float32) * 0.02, dtype)
    x = rng.standard_normal((1, k), dtype=np.float32)
    benchmark(w.matmul, x, threads=threads)
    record_rate(benchmark, "GB/s", w.nbytes / 1e9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_typed_gemm(benchmark: Any, threads: int, dtype: str) -> None:
    """A 512-token prompt's c_fc product with each weight type: GFLOP/s."""
    rng = np.random.default_rng(1)
    w = K.PackedWeight(rng.standard_normal((C, 4 * C), dtype=np.float32) * 0.02, dtype)
    x = rng.standard_normal((512, C), dtype=np.float32)
    benchmark(w.matmul, x, threads=threads)
    record_rate(benchmark, "GFLOP/s", 2 * 512 * C * 4 * C / 1e9)
