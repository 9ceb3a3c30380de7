"""Weight precisions: each stored type's packing against a numpy reference of its scheme,
each type's products against numpy on the weights as stored (dequantize, then multiply) on
every kernel set, and the accuracy of whole models in each type against float32, with the
bounds docs/precisions.md states."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from gpt2cpu import Model, _core
from hf_models import HfModelDir
from reference import bfloat16_rounded

K = _core.testing
DTYPES = ["float32", "bfloat16", "float16", "int8", "int4"]
GROUP_ROWS = {"int8": 128, "int4": 32}


def rand(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def reference_dequantized(w: np.ndarray, dtype: str) -> np.ndarray:
    """(k, n) float32: w rounded to dtype by the scheme docs/precisions.md describes."""
    if dtype == "float32":
        return w.copy()
    if dtype == "float16":
        with np.errstate(over="ignore"):  # past 65504 is inf, as the engine rounds it
            return w.astype(np.float16).astype(np.float32)
    if dtype == "bfloat16":
        return bfloat16_rounded(w)
    g = GROUP_ROWS[dtype]
    out = np.empty_like(w)
    for r0 in range(0, w.shape[0], g):
        block = w[r0 : r0 + g]
        if dtype == "int8":
            scale = np.abs(block).max(axis=0) / np.float32(127)
            lo, hi = -127, 127
        else:  # the signed value of largest magnitude maps to -8
            extreme = block[np.abs(block).argmax(axis=0), np.arange(block.shape[1])]
            scale = extreme / np.float32(-8)
            lo, hi = -8, 7
        inv = np.where(scale != 0, np.float32(1) / np.where(scale != 0, scale, 1), 0)
        q = np.clip(np.rint(block * inv.astype(np.float32)), lo, hi)
        out[r0 : r0 + g] = q.astype(np.float32) * scale.astype(np.float32)
    return out


def quantized_rows(x: np.ndarray, group: int) -> tuple[np.ndarray, np.ndarray]:
    """The integer products' input: per row and group of columns, scale = max |x| / 127 and
    q = round(x / scale), clamped to [-127, 127]. Returns q (float64) and scales (t, groups)."""
    t, k = x.shape
    q = np.zeros((t, k))
    scales = np.zeros((t, -(-k // group)), np.float32)
    for g, c0 in enumerate(range(0, k, group)):
        block = x[:, c0 : c0 + group]
        most = np.abs(block).max(axis=1)
        inv = np.where(most > 0, np.float32(127) / np.where(most > 0, most, 1), 0)
        q[:, c0 : c0 + group] = np.clip(np.rint(block * inv.astype(np.float32)[:, None]), -127, 127)
        scales[:, g] = most / np.float32(127)
    return q, scales


def reference_product(x: np.ndarray, stored: np.ndarray, dtype: str) -> np.ndarray:
    """x @ W in float64 by the type's scheme: W as stored; for integer types, x quantized
    per row and group too, each group's product (exact in integers) times its scales."""
    if dtype not in GROUP_ROWS:
        return x.astype(np.float64) @ stored.astype(np.float64)
    g = GROUP_ROWS[dtype]
    q, scales = quantized_rows(x, g)
    out = np.zeros((x.shape[0], stored.shape[1]))
    for i, c0 in enumerate(range(0, x.shape[1], g)):
        out += (q[:, c0 : c0 + g] @ stored[c0 : c0 + g].astype(np.float64)) * scales[:, i : i + 1]
    return out


# Not multiples of the 16-wide panel, of the 8 or 16 SIMD lanes, nor of a scale group;
# past one depth block (256) and one group; one row (decode), a few (streaming) and many
# (the blocked GEMM, which converts weights a block at a time).
SHAPES = [
    (1, 1, 1),
    (1, 77, 45),
    (1, 300, 1000),
    (3, 130, 33),
    (6, 64, 16),
    (7, 65, 17),
    # A decode step of many sequences: rows in balanced register tiles (16 on avx512;
    # 20 rows as 10 + 10, 33 as 11 + 11 + 11).
    (16, 200, 50),
    (20, 70, 33),
    (33, 129, 40),
    (47, 129, 40),
    (50, 300, 70),
    (130, 513, 33),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k,n", [(1, 1), (31, 17), (64, 16), (65, 33), (200, 50)])
def test_packing_matches_the_numpy_scheme(dtype: str, k: int, n: int) -> None:
    rng = np.random.default_rng(k * 100 + n)
    w = rand(rng, k, n) * rng.uniform(0.01, 10, n).astype(np.float32)  # columns of all scales
    w[:, 0] = 0.0  # a column of zeros: scale 0, no division by it
    packed = K.PackedWeight(w, dtype)
    assert packed.dtype == dtype
    got, expect = packed.dequantized(), reference_dequantized(w, dtype)
    if dtype in ("int8", "int4"):
        # The scale and a quantized value may differ by one rounding from numpy's order of
        # operations; the dequantized weight then differs by at most one step of the grid.
        step = np.abs(expect).max(axis=0, keepdims=True) / (127 if dtype == "int8" else 7)
        assert np.all(np.abs(got - expect) <= step * 1.001 + 1e-30)
        assert np.mean(got == expect) > 0.99
    else:
        assert np.array_equal(got, expect)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_types_round_special_values_as_numpy(dtype: str) -> None:
    special = np.array(
        [0.0, -0.0, 1e-8, 6e-8, 3e-5, 65504.0, 65519.0, 65520.0, 1e6, -1e6, 3.4e38, np.inf,
         -np.inf, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-11, 1 + 3 * 2**-11, np.nan],
        dtype=np.float32,
    ).reshape(-1, 1)
    got = K.PackedWeight(special, dtype).dequantized()
    expect = reference_dequantized(special, dtype)
    np.testing.assert_array_equal(got, expect)


def test_a_bad_dtype_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="int4"):
        K.PackedWeight(np.ones((2, 2), np.float32), "int3")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("t,k,n", SHAPES)
def test_products_match_numpy_on_the_stored_weights(
    isa: str, dtype: str, threads: int, t: int, k: int, n: int
) -> None:
    rng = np.random.default_rng(t * 7919 + k * 31 + n)
    a, w, b, c = rand(rng, t, k), rand(rng, k, n), rand(rng, n), rand(rng, t, n)
    packed = K.PackedWeight(w, dtype, threads)
    expect = reference_product(a, packed.dequantized(), dtype) + b
    tol = {"rtol": 1e-5, "atol": 1e-5 * np.sqrt(k) * max(1.0, float(np.abs(expect).max()))}
    got = packed.matmul(a, b, threads=threads)
    np.testing.assert_allclose(got, expect, **tol)
    np.testing.assert_allclose(packed.matmul(a, b, c, threads=threads), c + expect, **tol)
    if t < K.TEAM_ROWS:  # as one of a decode step's operators
        assert np.array_equal(packed.matmul(a, b, threads=threads, team=True), got)
    # Batch invariance: a row alone gets the bits it gets among any number of rows.
    for r in {0, t // 2, t - 1}:
        assert np.array_equal(packed.matmul(a[r : r + 1], b, threads=threads)[0], got[r])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("t", [1, 5, 200])
def test_products_are_the_same_bits_on_any_thread_count(isa: str, dtype: str, t: int) -> None:
    rng = np.random.default_rng(t)
    a, w, b = rand(rng, t, 300), rand(rng, 300, 1000), rand(rng, 1000)
    packed = K.PackedWeight(w, dtype)
    first, *rest = (packed.matmul(a, b, threads=threads) for threads in (1, 2, 3))
    for other in rest:
        assert np.array_equal(first, other)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_row_gets_the_same_bits_at_every_row_count(isa: str, dtype: str) -> None:
    """Past the row count where float types switch to the blocked GEMM too (48), with
    the residual's accumulate and the MLP's activation."""
    rng = np.random.default_rng(3)
    a, w, b, c = rand(rng, 130, 520), rand(rng, 520, 70), rand(rng, 70), rand(rng, 130, 70)
    packed = K.PackedWeight(w, dtype)
    alone = [packed.matmul(a[r : r + 1], b, c[r : r + 1])[0] for r in (0, 47, 129)]
    act = [packed.matmul(a[r : r + 1], b, activation=_core.Activation.gelu_tanh)[0]
           for r in (0, 47, 129)]
    for t in (1, 2, 15, 16, 17, 20, 33, 47, 48, 49, 130):
        rows = packed.matmul(a[:t], b, c[:t], threads=2)
        activated = packed.matmul(a[:t], b, threads=2, activation=_core.Activation.gelu_tanh)
        for i, r in enumerate((0, 47, 129)):
            if r < t:
                assert np.array_equal(rows[r], alone[i]), (t, r)
                assert np.array_equal(activated[r], act[i]), (t, r)


@pytest.mark.parametrize("dtype", DTYPES)
def test_packing_is_the_same_on_any_thread_count(dtype: str) -> None:
    w = rand(np.random.default_rng(1), 130, 100)
    one = K.PackedWeight(w, dtype, 1).dequantized()
    assert np.array_equal(one, K.PackedWeight(w, dtype, 3).dequantized())


@pytest.mark.parametrize("dtype", DTYPES)
def test_stored_bytes(dtype: str) -> None:
    k, n = 100, 40  # 3 panels; int8 1 group, int4 4 groups
    bits = {"float32": 32, "bfloat16": 16, "float16": 16, "int8": 8, "int4": 4}[dtype]
    groups = -(-k // GROUP_ROWS[dtype]) if dtype in GROUP_ROWS else 0
    expect = 3 * k * 16 * bits // 8 + 3 * groups * 16 * 4
    assert K.PackedWeight(np.ones((k, n), np.float32), dtype).nbytes == expect


# ---- whole models ------------------------------------------------------------------------

# Perplexity of the bundled model on its held-out text against float32: the bounds.
PERPLEXITY_BOUND = {"bfloat16": 0.001, "float16": 0.001, "int8": 0.005, "int4": 0.04}


@pytest.mark.parametrize("dtype", sorted(PERPLEXITY_BOUND))
def test_bundled_model_perplexity_within_bound(heldout: tuple[Model, str, dict[str, float]],
                                               dtype: str) -> None:
    from gpt2cpu.tasks.perplexity import perplexity

    fp32, text, base = heldout
    model = Model.from_pretrained(fp32.path, dtype=dtype)
    assert model.dtype == dtype
    ppl = perplexity(model, text).perplexity
    assert ppl <= base["float32"] * (1 + PERPLEXITY_BOUND[dtype]), (ppl, base["float32"])


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "int8"])
def test_bundled_model_greedy_agrees_with_float32(heldout: tuple[Model, str, dict[str, float]],
                                                  dtype: str) -> None:
    fp32 = heldout[0]
    model = Model.from_pretrained(fp32.path, dtype=dtype)
    for prompt in ("ROMEO:", "First Citizen:\nBefore we proceed"):
        run: dict[str, Any] = {"max_new_tokens": 32, "temperature": 0.0, "ignore_eos": True}
        assert model.generate(prompt, **run).token_ids == fp32.generate(prompt, **run).token_ids


# Logits of a random-weight model in each type against float32: relative RMS error and the
# largest error relative to the largest logit. Random Gaussian weights are quantization's
# worst case (no structure, every layer's error compounding): trained weights do far
# better (see the perplexities above). Measured at the 124M shape (gpt2cpu's random model):
# bf16 4.6e-3 / 5.1e-3, f16 5.4e-4 / 6.0e-4, int8 2.4e-2 / 2.9e-2, int4 0.22 / 0.23.
LOGIT_BOUND = {
    "bfloat16": (0.01, 0.01),
    "float16": (0.002, 0.002),
    "int8": (0.04, 0.05),
    "int4": (0.35, 0.35),
}


def logit_errors(got: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    rel_rms = float(np.sqrt(((got - ref) ** 2).mean() / (ref**2).mean()))
    return rel_rms, float(np.abs(got - ref).max() / np.abs(ref).max())


# The parity tests' small shapes: head widths of 8 and 12, an MLP width of no whole panel.
ODD_SHAPES: list[dict[str, Any]] = [
    {"n_layer": 2, "n_embd": 24, "n_head": 3, "n_positions": 40, "vocab_size": 101},
    {"n_layer": 3, "n_embd": 72, "n_head": 6, "n_positions": 64, "vocab_size": 250,
     "n_inner": 100},
]


def odd_shape_errors(hf_model_dir: HfModelDir, shape: dict[str, Any],
                     **options: Any) -> tuple[float, float]:
    """logit_errors of a model of `shape` loaded with `options` against float32, over 30
    random tokens."""
    directory, _ = hf_model_dir(**shape)
    ids = np.random.default_rng(0).integers(0, shape["vocab_size"], 30)
    ref = Model.from_pretrained(directory, threads=2).forward(ids)
    return logit_errors(Model.from_pretrained(directory, threads=2, **options).forward(ids), ref)


@pytest.mark.parametrize("shape", ODD_SHAPES)
def test_small_odd_shapes_stay_within_the_logit_bounds(hf_model_dir: HfModelDir, isa: str,
                                                       shape: dict[str, Any]) -> None:
    for dtype, (rms_bound, max_bound) in LOGIT_BOUND.items():
        rms, worst = odd_shape_errors(hf_model_dir, shape, dtype=dtype)
        assert rms <= rms_bound and worst <= max_bound * 2, (dtype, rms, worst)


def test_124m_logits_weight_bytes_and_one_precision_per_matrix(hf_model_dir: HfModelDir) -> None:
    directory, _ = hf_model_dir(n_layer=12, n_embd=768, n_head=12, n_positions=1024,
                                vocab_size=50257)
    ids = np.random.default_rng(0).integers(0, 50257, 64)
    fp32 = Model.from_pretrained(directory, threads=2)
    ref = fp32.forward(ids)
    most = {"bfloat16": 260e6, "float16": 260e6, "int8": 140e6, "int4": 90e6}
    for dtype, (rms_bound, max_bound) in LOGIT_BOUND.items():
        model = Model.from_pretrained(directory, threads=2, dtype=dtype)
        assert model.weight_bytes <= most[dtype], (dtype, model.weight_bytes)
        rms, worst = logit_errors(model.forward(ids), ref)
        assert rms <= rms_bound and worst <= max_bound, (dtype, rms, worst)
    assert fp32.weight_bytes > 494e6


def test_from_pretrained_rejects_a_bad_dtype() -> None:
    from gpt2cpu import BUNDLED_MODEL_DIR

    with pytest.raises(ValueError, match="dtype must be one of float32, bfloat16"):
        Model.from_pretrained(BUNDLED_MODEL_DIR, dtype="fp8")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_non_finite_weight_or_input_is_not_rounded_away(isa: str, dtype: str, bad: float) -> None:
    """As in float32, a NaN or infinite weight or input gives non-finite outputs (which
    generation then reports), never a quantized number."""
    rng = np.random.default_rng(5)
    a, w = rand(rng, 3, 100), rand(rng, 100, 40)
    w[70, 17] = bad
    out = K.PackedWeight(w, dtype).matmul(a)
    assert not np.isfinite(out[:, 17]).any()
    assert np.isfinite(np.delete(out, 17, axis=1)).all()
    w[70, 17] = 1.0
    a[1, 33] = bad
    out = K.PackedWeight(w, dtype).matmul(a)
    assert not np.isfinite(out[1]).any()
    assert np.isfinite(out[[0, 2]]).all()


def test_the_cli_lists_the_engines_dtypes() -> None:
    from gpt2cpu.cli.common import DTYPE_NAMES

    assert tuple(_core.DTYPES) == DTYPE_NAMES
