"""Each C++ kernel against a numpy reference, on every ISA this CPU has, on several thread
counts, with shapes that are not multiples of the SIMD width or the matmul tile."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from gpt2cpu import _core
from reference import causal_attention, gelu, layer_norm
from scipy_free_erf import erf

K = _core.testing
THREADS = [1, 2, 3]


def with_team(cases: list[tuple[int, ...]]) -> list[tuple[int | bool, ...]]:
    """Each case run by an operator of its own, then (team=True), where it has few enough
    rows, as one of a decode step's operators inside a team."""
    return [(*c, False) for c in cases] + [(*c, True) for c in cases if c[0] < K.TEAM_ROWS]


def rand(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def close(a: np.ndarray, b: np.ndarray, rtol: float = 1e-5, atol: float = 1e-5) -> None:
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol * max(1.0, float(np.abs(b).max())))


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize(
    "t,k,n,team",
    with_team([
        (1, 1, 1),
        (1, 7, 17),
        (1, 72, 216),
        (1, 768, 2304),
        # One row reads weight panels in groups of 4: here groups of 4 and 3 (the last
        # panel 4 columns wide), and many groups split unevenly between threads.
        (1, 100, 100),
        (1, 300, 1000),
        (2, 33, 15),
        (5, 16, 16),
        (6, 64, 48),
        (7, 100, 33),
        (11, 300, 20),
        (12, 257, 17),
        (13, 72, 288),
        (97, 50, 31),
        (200, 130, 70),
        (130, 513, 33),
        (37, 600, 50),
        # Several 120-row blocks a thread, each deeper than one depth block.
        (701, 300, 20),
        (1000, 300, 20),
    ]),
)
def test_matmul(isa: str, threads: int, t: int, k: int, n: int, team: bool) -> None:
    rng = np.random.default_rng(t * 1000 + k * 10 + n)
    a, w, b = rand(rng, t, k), rand(rng, k, n), rand(rng, n)
    expect = a.astype(np.float64) @ w.astype(np.float64)
    run: dict[str, Any] = {"threads": threads, "team": team}
    close(K.matmul(a, w, **run), expect, atol=1e-5 * np.sqrt(k))
    close(K.matmul(a, w, b, **run), expect + b, atol=1e-5 * np.sqrt(k))
    out = rand(rng, t, n)
    out_before = out.copy()
    close(K.matmul(a, w, b, out, **run), out + expect + b, atol=1e-5 * np.sqrt(k))
    assert np.array_equal(out, out_before), "the caller's out array must not be modified"


@pytest.mark.parametrize("k,n", [(100, 100), (300, 1000), (768, 2304)])
def test_one_row_is_the_same_bits_on_any_thread_count(isa: str, k: int, n: int) -> None:
    """A decode step's product reads weight panels in groups handed out by thread count;
    every output must still be summed the same way."""
    rng = np.random.default_rng(k + n)
    a, w, b = rand(rng, 1, k), rand(rng, k, n), rand(rng, n)
    first, *rest = (K.matmul(a, w, b, threads=threads) for threads in (1, 2, 3, 4))
    for other in rest:
        assert np.array_equal(first, other)


@pytest.mark.parametrize("t", [2, 5, 7, 13, 47])
def test_a_row_alone_gets_the_bits_it_gets_among_others(isa: str, t: int) -> None:
    """One row (a decode step) and the same row in a product of a few rows (the
    streaming path, below the blocked GEMM's rows) are summed the same way."""
    rng = np.random.default_rng(t)
    a, w, b = rand(rng, t, 300), rand(rng, 300, 100), rand(rng, 100)
    together = K.matmul(a, w, b, threads=2)
    for r in (0, t // 2, t - 1):
        assert np.array_equal(K.matmul(a[r : r + 1], w, b, threads=2)[0], together[r])


ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "gelu_tanh": gelu,
    "gelu_erf": lambda x: 0.5 * x * (1 + erf(x / np.sqrt(2))),
    "relu": lambda x: np.maximum(x, 0),
}


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize(
    "t,k,n,team", with_team([(1, 72, 216), (7, 100, 33), (97, 50, 31), (130, 513, 33)])
)
def test_matmul_then_activation(isa: str, threads: int, activation: str, t: int, k: int,
                                n: int, team: bool) -> None:
    """act(inp @ W + b): a prompt's gelu_new is applied inside the GEMM, after every depth
    block (k = 513 spans three) has been summed, and only there."""
    rng = np.random.default_rng(t * 1000 + k * 10 + n)
    a, w, b = rand(rng, t, k), rand(rng, k, n), rand(rng, n)
    x = a.astype(np.float64) @ w.astype(np.float64) + b
    act = getattr(_core.Activation, activation)
    got = K.matmul(a, w, b, threads=threads, activation=act, team=team)
    close(got, ACTIVATIONS[activation](x), atol=1e-5 * np.sqrt(k))


def test_a_team_refuses_a_prompt_sized_operator() -> None:
    """A team's operators must not allocate, which only the few-rows paths promise."""
    rows = K.TEAM_ROWS
    with pytest.raises(ValueError, match="team"):
        K.matmul(np.ones((rows, 3), np.float32), np.ones((3, 4), np.float32), team=True)
    with pytest.raises(ValueError, match="team"):
        qk = np.ones((1, rows, 4), np.float32)
        K.attention(np.ones((rows, 4), np.float32), qk, qk, 0, 1.0, 2, True)


@pytest.mark.parametrize("threads", [1, 2, 3, 4])
@pytest.mark.parametrize("delay_us", [0, 1000])
def test_team_barrier_waits_for_every_thread(threads: int, delay_us: int) -> None:
    """Each operator in a team ends only when every thread has finished it, and the next
    starts its work counter from 0, whether the late thread is met spinning (no delay) or
    after the others went to sleep (1 ms, past the barrier's spin)."""
    rounds = 50 if delay_us else 2000
    assert K.check_team(threads, rounds, delay_us) == 0


def test_matmul_activation_excludes_out() -> None:
    a = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="activation"):
        K.matmul(a, np.ones((3, 4), np.float32), out=np.ones((2, 4), np.float32),
                 activation=_core.Activation.relu)


def test_matmul_accepts_float64_and_strided_inputs_without_modifying_them() -> None:
    rng = np.random.default_rng(1)
    a = rng.standard_normal((10, 20))  # float64
    w = rng.standard_normal((40, 9))[::2]  # non-contiguous
    a0, w0 = a.copy(), w.copy()
    close(K.matmul(a, w), a @ w, atol=1e-4)
    assert np.array_equal(a, a0) and np.array_equal(w, w0)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize(
    "t,n,team",
    # (13, 1600): enough for a team to share the rows out.
    with_team([(1, 1), (1, 7), (3, 72), (5, 768), (13, 1600), (200, 13), (64, 1600)]),
)
def test_layernorm(isa: str, threads: int, t: int, n: int, team: bool) -> None:
    rng = np.random.default_rng(n)
    x, g, b = rand(rng, t, n) * 3 + 1, rand(rng, n), rand(rng, n)
    close(K.layernorm(x, g, b, 1e-5, threads, team), layer_norm(x.astype(np.float64), g, b))


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("n,team", with_team([(1,), (7,), (8,), (9,), (100,), (3072,), (70001,)]))
def test_activations(isa: str, threads: int, n: int, team: bool) -> None:
    rng = np.random.default_rng(n)
    x = rand(rng, n) * 4
    x[:3] = [0.0, -20.0, 20.0][: min(3, n)]
    x64 = x.astype(np.float64)
    tanh = K.activation(x, _core.Activation.gelu_tanh, threads, team)
    close(tanh, gelu(x64), rtol=2e-6, atol=2e-6)
    close(
        K.activation(x, _core.Activation.gelu_erf, threads, team),
        0.5 * x64 * (1 + erf(x64 / np.sqrt(2))),
        rtol=2e-6,
        atol=2e-6,
    )
    close(K.activation(x, _core.Activation.relu, threads, team), np.maximum(x, 0))


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize(
    "t,pos0,heads,d,team",
    with_team([
        (1, 0, 1, 1),
        (1, 9, 3, 7),
        (1, 100, 12, 64),
        (4, 0, 2, 8),
        (5, 3, 6, 12),
        (17, 30, 2, 72),
        (33, 0, 4, 40),
        (1, 1000, 2, 64),
        # Enough keys (>= 64K floats) for one token's heads to be split among threads.
        (1, 700, 12, 64),
        (7, 333, 12, 24),
        (1, 50, 12, 64),
        # Decode queries whose keys run past the 4 KB that attend fetches ahead, with a
        # head width that is no whole number of vectors.
        (3, 250, 5, 20),
        # attend's score groups (a vector's lanes of keys): exactly one, several with and
        # without a tail of keys, head widths with and without a tail of lanes.
        (1, 15, 2, 64),
        (1, 47, 3, 72),
        (1, 31, 4, 20),
        (1, 40, 2, 9),
        # From 16 new tokens on, blocks of queries (whole 16-column panels when d % 16 == 0).
        (16, 0, 2, 16),
        (23, 37, 3, 64),
        (40, 0, 2, 32),
        (61, 500, 1, 128),
    ]),
)
def test_attention(isa: str, threads: int, t: int, pos0: int, heads: int, d: int,
                   team: bool) -> None:
    rng = np.random.default_rng(t + pos0 + heads + d)
    capacity = pos0 + t + 3  # slack past the end, which must never be read
    q = rand(rng, t, heads * d)
    k, v = rand(rng, heads, capacity, d), rand(rng, heads, capacity, d)
    k[:, pos0 + t :] = np.nan
    v[:, pos0 + t :] = np.nan
    scale = 1 / np.sqrt(d)
    out = K.attention(q, k, v, pos0, scale, threads, team)
    n = pos0 + t
    expect = np.hstack(
        [
            causal_attention(
                q[:, h * d : (h + 1) * d].astype(np.float64), k[h, :n], v[h, :n], pos0, scale
            )
            for h in range(heads)
        ]
    )
    close(out, expect)


def test_attention_large_scores_do_not_overflow(isa: str) -> None:
    rng = np.random.default_rng(0)
    q = rand(rng, 1, 16) * 100
    k, v = rand(rng, 1, 20, 16) * 100, rand(rng, 1, 20, 16)
    out = K.attention(q, k, v, 19, 1.0)
    assert np.isfinite(out).all()
    close(out, causal_attention(q.astype(np.float64), k[0], v[0], 19, 1.0))


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: K.matmul(np.ones((2, 3), np.float32), np.ones((4, 5), np.float32)), "rows"),
        (
            lambda: K.matmul(
                np.ones((2, 3), np.float32), np.ones((3, 5), np.float32), np.ones(4, np.float32)
            ),
            "bias",
        ),
        (
            lambda: K.matmul(np.ones((2, 3), np.float32), np.ones((3, 5), np.float32), threads=0),
            "threads",
        ),
        (
            lambda: K.layernorm(
                np.ones((2, 3), np.float32), np.ones(2, np.float32), np.ones(3, np.float32)
            ),
            "weight",
        ),
        (
            lambda: K.attention(
                np.ones((2, 8), np.float32),
                np.ones((2, 4, 4), np.float32),
                np.ones((2, 4, 4), np.float32),
                3,
                1.0,
            ),
            "capacity",
        ),
        (
            lambda: K.attention(
                np.ones((2, 8), np.float32),
                np.ones((2, 4, 4), np.float32),
                np.ones((2, 5, 4), np.float32),
                0,
                1.0,
            ),
            "v must have shape",
        ),
    ],
)
def test_kernels_reject_bad_shapes(call: Callable[[], object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("streams", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("n", [0, 1, 7, 63, 64, 65, 1000, 100_003])
def test_sum(isa: str, n: int, streams: int) -> None:
    # Every element once, whichever parts the streams take and whatever is left past them.
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    expected = float(x.astype(np.float64).sum())
    assert K.sum(x, streams) == pytest.approx(expected, abs=1e-5 * max(1, n) ** 0.5)


def test_sum_rejects_bad_streams() -> None:
    with pytest.raises(ValueError, match="streams"):
        K.sum(np.ones(8, np.float32), 0)


@pytest.mark.parametrize("rounds", [0, 1, 2, 7, 40])
@pytest.mark.parametrize("x", [-3.0, 0.0, 100.0])
def test_multiply_add(isa: str, rounds: int, x: float) -> None:
    # Value j starts at x + j and goes through v = v / 2 + 1, so approaches 2 by halves.
    lanes = K.multiply_add_lanes()
    expected = sum(2 + (x + j - 2) / 2**rounds for j in range(lanes))
    assert K.multiply_add(rounds, x) == pytest.approx(expected, rel=1e-6, abs=1e-4)


def test_multiply_add_peak(isa: str) -> None:
    one = K.multiply_add_peak(1, 100_000, 2)
    two = K.multiply_add_peak(2, 100_000, 2)
    # Only that a rate comes back, on 1 and 2 threads: speed is for benchmarks and
    # `gpt2cpu bench`.
    assert 1e8 < one < 1e13 and 1e8 < two < 1e13
    with pytest.raises(ValueError, match="rounds"):
        K.multiply_add_peak(1, 0)
    with pytest.raises(ValueError, match="repeats"):
        K.multiply_add_peak(1, 10, 0)
    with pytest.raises(ValueError, match="threads"):
        K.multiply_add_peak(0)
    with pytest.raises(ValueError, match="rounds"):
        K.multiply_add(-1, 0.0)


def test_isa_selection() -> None:
    available = K.available_isas()
    assert available[0] == "generic"
    with pytest.raises(ValueError, match="unknown ISA"):
        K.set_isa("sse9")
    assert K.isa() in available
