"""Sampling's C++ passes (`_core.sampling`) against plain numpy: softmax weights on every
kernel table, the top-p and top-k floors against a full sort, the draw against a
cumulative sum."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from gpt2cpu import _core
from hypothesis import given, settings
from hypothesis import strategies as st

S = _core.sampling

# Lengths around the 8- and 16-wide loops, the 4-way histograms and the draw's blocks of
# 256 (and 4 of them), and GPT-2's vocabulary.
LENGTHS = [1, 2, 3, 7, 8, 9, 17, 255, 1023, 1025, 5000, 50257]


def row(n: int, std: float, seed: int, banned: float = 0.0) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * std).astype(np.float32)
    if banned and n > 2:
        x[rng.integers(0, n, int(n * banned))] = -np.inf
    return x


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("std", [0.05, 1.0, 30.0])
def test_softmax_weights_match_numpy(isa: str, n: int, std: float) -> None:
    x = row(n, std, n, banned=0.2)
    x[0] = 0.5  # at least one finite logit
    before = x.copy()
    w, total = S.softmax_weights(x)
    np.testing.assert_array_equal(x, before)
    shifted = (x - x.max()).astype(np.float64)  # the difference rounded to float32, as used
    want = np.exp(shifted)
    zero = shifted < -87.3365478515625  # -inf included: exactly 0, not exp_ps's clamp
    assert w.dtype == np.float32 and w.shape == (n,)
    assert (w[zero] == 0).all()
    np.testing.assert_allclose(w[~zero], want[~zero], rtol=3e-7, atol=0)
    assert w[np.argmax(x)] == 1.0
    assert total == pytest.approx(float(w.astype(np.float64).sum()), rel=1e-12)


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize(
    "case",
    ["plain", "ties", "signed zeros", "last", "-inf", "all -inf", "+inf", "nan", "nan last"],
)
def test_argmax_is_numpys(isa: str, n: int, case: str) -> None:
    """The pass a step runs over each row of logits for greedy sampling (np.argmax's
    first-of-equals and first-NaN rules), on lengths around its chunks of 16 vectors: the
    largest in several chunks, in the tail only (past the last whole chunk where n has
    one), -0.0 tied with 0.0, infinities, NaN after an infinity."""
    x = row(n, 1.0, n)
    spots = sorted({int(f * (n - 1)) for f in (0.3, 0.7, 1.0)})
    if case == "ties":
        x[spots] = 9.0
    if case == "signed zeros":
        x[:] = -1.0
        x[spots[0]] = -0.0
        x[spots[-1]] = 0.0
    if case == "last":
        x[-1] = 9.0
    if case == "-inf":
        x[:] = -np.inf
        x[spots[-1]] = -3.0
    if case == "all -inf":
        x[:] = -np.inf
    if case == "+inf":
        x[spots] = np.inf
    if case == "nan":
        x[spots[0]] = np.inf
        x[spots[-1]] = np.nan
    if case == "nan last":  # finite whole chunks, then the NaN
        x[-1] = np.nan
    assert S.argmax(x) == int(np.argmax(x))


def test_softmax_weights_end_exactly_at_the_underflow_floor(isa: str) -> None:
    floor = np.float32(-87.3365478515625)
    x = np.array([0.0, floor, np.nextafter(floor, np.float32(-np.inf)), -np.inf] * 3,
                 dtype=np.float32)
    w, _ = S.softmax_weights(x)
    assert (w[1::4] > 0).all() and (w[2::4] == 0).all() and (w[3::4] == 0).all()


def test_softmax_weights_of_a_banned_row_are_zero(isa: str) -> None:
    w, total = S.softmax_weights(np.full(11, -np.inf, dtype=np.float32))
    assert total == 0.0 and (w == 0).all()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_softmax_weights_reject_nan_and_inf(isa: str, bad: float) -> None:
    x = row(100, 1.0, 1)
    x[57] = bad
    with pytest.raises(ValueError, match="NaN or \\+inf"):
        S.softmax_weights(x)


@pytest.mark.parametrize("penalty", [0.5, 1.2, 3.0])
def test_repetition_penalty_is_hf_rule_bit_for_bit(penalty: float) -> None:
    x = row(50257, 3.0, 2)
    x[:4] = [-0.0, -np.inf, np.inf, 0.0]
    rng = np.random.default_rng(3)
    ids = np.concatenate([[0, 1, 2, 3], rng.choice(np.arange(4, 50257), 300, replace=False)])
    ids = np.concatenate([ids, ids[::7]])  # listed twice: penalised once, as HF's scatter
    before = x.copy()
    got = S.repetition_penalty(x, ids, penalty)
    np.testing.assert_array_equal(x, before)
    want = x.copy()
    score = want[ids]
    p = np.float32(penalty)
    want[ids] = np.where(score < 0, score * p, score / p)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("bad", [-1, 10])
def test_repetition_penalty_rejects_ids_outside_the_row(bad: int) -> None:
    x = np.ones(10, np.float32)
    with pytest.raises(IndexError, match=f"token id {bad} is outside"):
        S.repetition_penalty(x, np.array([1, bad]), 1.2)


@pytest.mark.parametrize("ids", [np.array([1.7]), np.array([True]), [1.0]])
def test_repetition_penalty_takes_integer_ids_only(ids: Any) -> None:
    with pytest.raises(TypeError, match="^ids must hold integers"):
        S.repetition_penalty(np.ones(3, np.float32), ids, 1.2)


def test_repetition_penalty_reports_a_uint64_id_as_itself() -> None:
    x = np.ones(3, np.float32)
    np.testing.assert_array_equal(S.repetition_penalty(x, np.array([1], np.uint8), 2.0),
                                  [1, 0.5, 1])
    with pytest.raises(IndexError, match=r"^ids\[0\] = 18446744073709551615 is out of range"):
        S.repetition_penalty(x, np.array([2**64 - 1], np.uint64), 1.2)


def full_sort_floor(values: np.ndarray[Any, Any], mass: np.ndarray[Any, Any],
                    budget: float) -> float:
    """The floor rule on a full sort: drop from the smallest up while the running total,
    the dropped one included, stays <= budget; the first kept is the floor."""
    order = np.argsort(values, kind="stable")
    dropped = int(np.searchsorted(np.cumsum(mass[order], dtype=np.float64), budget, "right"))
    return float(values[order][min(dropped, values.size - 1)])


def weight_rows() -> list[np.ndarray[Any, Any]]:
    rows = []
    rng = np.random.default_rng(5)
    for _ in range(300):
        n = int(rng.choice([1, 2, 3, 5, 100, 1001, 5000, 50257]))
        std = float(rng.choice([0.0, 0.01, 0.05, 0.5, 1.0, 4.0, 8.0, 30.0]))
        x = (rng.standard_normal(n) * std).astype(np.float32)
        if n > 2 and rng.random() < 0.3:
            x[rng.integers(0, n, n // 3)] = -np.inf
        if n > 2 and rng.random() < 0.2:  # a few values many times: ties
            x = np.round(x, 1)
        x[0] = max(x[0], np.float32(0.0))  # at least one finite logit
        rows.append(np.exp(x - x.max()))
    return rows


def test_top_p_floor_matches_a_full_sort() -> None:
    """Flat and peaked rows, zeros (-inf logits), ties (all weights equal, rounded logits),
    and rows of a few tokens, at HF's budgets and at budgets that land exactly on a
    running total."""
    rng = np.random.default_rng(6)
    for w in weight_rows():
        total = float(w.sum(dtype=np.float64))
        exact = float(np.cumsum(np.sort(w), dtype=np.float64)[rng.integers(0, w.size)])
        for budget in [total - p * total for p in (0.05, 0.5, 0.9, 0.95, 0.999)] + [exact, 0.0]:
            want = full_sort_floor(w, w, budget)
            got = S.top_p_floor(w, budget)
            if got != want:
                # Bucket and sequential sums may round apart only where the budget is an
                # exact running total: then the floor is the value there or the next one.
                low = np.sort(w)
                sums = np.cumsum(low, dtype=np.float64)
                at = int(np.argmin(np.abs(sums - budget)))
                assert abs(sums[at] - budget) < 1e-9 * max(1.0, total), (w.size, budget)
                assert got in low[at : at + 2], (w.size, budget, got, want)


def test_top_p_floor_keeps_the_top_token() -> None:
    w = np.array([0.25, 1.0, 0.5], dtype=np.float32)
    assert S.top_p_floor(w, 1.75) == 1.0
    assert S.top_p_floor(w, 10.0) == 1.0  # a budget past the whole: only rounding gets there
    assert S.top_p_floor(w, 0.0) == 0.25


@pytest.mark.parametrize("n", LENGTHS)
def test_kth_largest_matches_a_sort(n: int) -> None:
    rng = np.random.default_rng(n)
    for std in (0.05, 1.0, 30.0):
        x = row(n, std, n + 1, banned=0.1)
        if rng.random() < 0.5:
            x = np.round(x, 1)  # ties, and signed zeros after rounding
        for k in {1, n, max(1, n // 2), int(rng.integers(1, n + 1)), min(n, 50)}:
            assert S.kth_largest(x, k) == np.sort(x)[n - k], (n, std, k)


def test_kth_largest_takes_negative_and_positive_zero_as_equal() -> None:
    x = np.array([-0.0, 0.0, -1.0, 2.0], dtype=np.float32)
    assert S.kth_largest(x, 2) == 0.0 and S.kth_largest(x, 3) == 0.0
    assert S.kth_largest(x, 4) == -1.0
    # k past the heap's limit: the radix selection, whose keys must not tell -0 from +0.
    x = np.array([0.0] + [-0.0] * 1000 + [1.0] * 1000, dtype=np.float32)
    assert S.kth_largest(x, 1500) == 0.0
    assert S.top_p_floor(np.abs(x), 999.5) == 1.0


@pytest.mark.parametrize("k", [3, 1500])  # the heap and the radix selection
@pytest.mark.parametrize("where", [0, 1999])
def test_selection_rejects_nan(k: int, where: int) -> None:
    x = row(2000, 1.0, 4)
    x[where] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        S.kth_largest(x, k)
    with pytest.raises(ValueError, match="NaN"):
        S.top_p_floor(np.abs(x), 1.0)


def test_top_p_floor_rejects_negative_weights() -> None:
    with pytest.raises(ValueError, match="weights must be >= 0"):
        S.top_p_floor(np.array([0.5, -0.1, 1.0], np.float32), 0.1)


@settings(max_examples=300, deadline=None)
@given(
    weights=st.lists(st.sampled_from([0.0, 0.0, 1e-6, 0.25, 0.5, 1.0, 3.0]), min_size=1,
                     max_size=3000),
    floor=st.sampled_from([0.0, 1e-6, 0.3, 1.0]),
    u=st.floats(0.0, 1.0, exclude_max=True),
)
def test_draw_is_the_inverse_cdf(weights: list[float], floor: float, u: float) -> None:
    w = np.array(weights, dtype=np.float32)
    kept = np.where(w >= np.float32(floor), w, np.float32(0.0)).astype(np.float64)
    if kept.sum() == 0:
        with pytest.raises(ValueError, match="no token left"):
            S.draw(w, floor, u)
        return
    got = S.draw(w, floor, u)
    assert kept[got] > 0  # never a token of weight 0 or under the floor
    sums = np.cumsum(kept)
    target = u * sums[-1]
    want = int(np.searchsorted(sums, target, "right"))
    if got != want:  # block and sequential sums may round apart at an exact boundary
        assert abs(sums[min(got, want)] - target) < 1e-9 * max(1.0, target)


def test_draw_covers_the_row_end_to_end() -> None:
    """u near 0 picks the first token with a weight, u near 1 the last one."""
    w = np.zeros(2000, dtype=np.float32)
    w[[3, 700, 1999]] = [1.0, 2.0, 1.0]
    assert S.draw(w, 0.0, 0.0) == 3
    assert S.draw(w, 0.0, 0.5) == 700
    assert S.draw(w, 0.0, np.nextafter(1.0, 0.0)) == 1999
    assert S.draw(w, 1.5, 0.0) == 700  # the floor leaves one


def test_passes_are_thread_safe() -> None:
    """Each thread keeps its own scratch: threads selecting at once get what one gets."""
    rows = weight_rows()[:40]
    want = [S.top_p_floor(w, 0.1 * float(w.sum())) for w in rows]
    failures: list[int] = []

    def work() -> None:
        for _ in range(5):
            for i, w in enumerate(rows):
                if S.top_p_floor(w, 0.1 * float(w.sum())) != want[i]:
                    failures.append(i)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: S.softmax_weights(np.zeros(0, np.float32)), "x must not be empty"),
        (lambda: S.softmax_weights(np.zeros((2, 3), np.float32)), "x must be one-dimensional"),
        (lambda: S.top_p_floor(np.ones(3, np.float32), float("nan")), "budget must be finite"),
        (lambda: S.top_p_floor(np.zeros(3, np.float32), 0.0), "no value holds"),
        (lambda: S.kth_largest(np.ones(3, np.float32), 0), "k must be in"),
        (lambda: S.kth_largest(np.ones(3, np.float32), 4), "k must be in"),
        (lambda: S.draw(np.ones(3, np.float32), -1.0, 0.5), "floor must be >= 0"),
        (lambda: S.draw(np.ones(3, np.float32), 0.0, 1.0), "u must be in"),
        (lambda: S.draw(np.ones(3, np.float32), 0.0, -0.1), "u must be in"),
        (lambda: S.draw(np.zeros(3, np.float32), 0.0, 0.5), "no token left"),
        (lambda: S.draw(np.array([1, np.inf], np.float32), 0.0, 0.5), "must be finite"),
        (lambda: S.repetition_penalty(np.ones(3, np.float32), np.array([0]), 0.0), "penalty"),
    ],
)
def test_bad_arguments_raise_value_error(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
