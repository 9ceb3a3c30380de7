"""Logits from gpt2cpu against transformers' GPT2LMHeadModel (PyTorch, CPU) on random-weight
models: full sequences, incremental decoding through the KV cache, checkpoint layouts and
dtypes, on every ISA and with 1 and 2 threads.

Tolerance: max |diff| <= 1e-4 * max(1, max |logit|). Both engines compute in float32 with
different summation orders, so the error grows with the logits' magnitude; scaling by it
keeps the bound meaningful for small logits and fair for large ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gpt2cpu
import numpy as np
import pytest
from gpt2cpu import _core
from hf_models import GPT2_124M, SMALL, HfModelDir, hf_logits


def assert_logits_close(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape and ours.dtype == np.float32
    tol = 1e-4 * max(1.0, float(np.abs(ref).max()))
    diff = float(np.abs(ours - ref).max())
    assert diff <= tol, f"max |diff| {diff:.3g} > {tol:.3g}"


def random_ids(n: int, vocab: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, n)


@pytest.mark.parametrize("threads", [1, 2])
def test_small_full_sequence(hf_model_dir: HfModelDir, isa: str, threads: int) -> None:
    directory, ref_model = hf_model_dir(**SMALL)
    model = gpt2cpu.Model.from_pretrained(directory, threads=threads)
    ids = random_ids(SMALL["n_positions"], SMALL["vocab_size"])
    assert_logits_close(model.forward(ids), hf_logits(ref_model, ids))


@pytest.mark.parametrize("threads", [1, 2])
def test_small_incremental_matches_forward_at_every_position(
    hf_model_dir: HfModelDir, isa: str, threads: int
) -> None:
    directory, ref_model = hf_model_dir(**SMALL)
    model = gpt2cpu.Model.from_pretrained(directory, threads=threads)
    ids = random_ids(SMALL["n_positions"], SMALL["vocab_size"], seed=1)
    full = model.forward(ids)
    assert_logits_close(full, hf_logits(ref_model, ids))
    seq = model.new_sequence()
    np.testing.assert_allclose(seq.append(ids[:5]), full[4], atol=1e-5)
    for i in range(5, len(ids)):
        np.testing.assert_allclose(
            seq.append([int(ids[i])]), full[i], atol=1e-5, err_msg=f"position {i}"
        )
    assert seq.length == len(ids)
    with pytest.raises(ValueError, match="capacity"):
        seq.append([0])


def test_124m_full_context(hf_model_dir: HfModelDir, isa: str) -> None:
    """The GPT-2 124M shape over the full 1024-token context, then the same positions fed
    in uneven chunks through the cache (batched and one-token appends mixed)."""
    directory, ref_model = hf_model_dir(**GPT2_124M)
    model = gpt2cpu.Model.from_pretrained(directory, threads=2)
    n = GPT2_124M["n_positions"] if isa != "generic" else 96  # the portable path is slow
    ids = random_ids(n, GPT2_124M["vocab_size"], seed=2)
    full = model.forward(ids)
    assert_logits_close(full, hf_logits(ref_model, ids))

    seq = model.new_sequence(n)
    pos = 0
    for size in [1, 1, 7, 64, 1, 3] * 100:
        size = min(size, n - pos)
        if size == 0:
            break
        chunk = seq.append(ids[pos : pos + size], all_logits=True)
        np.testing.assert_allclose(
            chunk,
            full[pos : pos + size],
            atol=2e-5 * np.abs(full).max(),
            err_msg=f"positions {pos}..{pos + size}",
        )
        pos += size
    assert pos == n


@pytest.mark.parametrize("threads", [1, 2])
def test_124m_threads_agree(hf_model_dir: HfModelDir, threads: int) -> None:
    directory, ref_model = hf_model_dir(**GPT2_124M)
    model = gpt2cpu.Model.from_pretrained(directory, threads=threads)
    ids = random_ids(40, GPT2_124M["vocab_size"], seed=3)
    assert_logits_close(model.forward(ids), hf_logits(ref_model, ids))


@pytest.mark.parametrize(
    "variant",
    [
        dict(hub_layout=True),
        dict(dtype="float16"),
        dict(dtype="bfloat16"),
        dict(tie_word_embeddings=False),
        dict(activation_function="gelu"),
        dict(activation_function="relu", n_inner=100),
        dict(scale_attn_by_inverse_layer_idx=True),
        dict(scale_attn_weights=False),
    ],
    ids=lambda v: "-".join(f"{k}={val}" for k, val in v.items()),
)
def test_checkpoint_variants(hf_model_dir: HfModelDir, variant: dict[str, Any]) -> None:
    directory, ref_model = hf_model_dir(**SMALL, **variant)
    model = gpt2cpu.Model.from_pretrained(directory, threads=2)
    ids = random_ids(SMALL["n_positions"], SMALL["vocab_size"], seed=4)
    assert_logits_close(model.forward(ids), hf_logits(ref_model, ids))


def test_sharded_checkpoint(hf_model_dir: HfModelDir, tmp_path: Path) -> None:
    _, ref_model = hf_model_dir(**SMALL)
    ref_model.save_pretrained(tmp_path, safe_serialization=True, max_shard_size="100KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    model = gpt2cpu.Model.from_pretrained(tmp_path)
    ids = random_ids(30, SMALL["vocab_size"], seed=5)
    assert_logits_close(model.forward(ids), hf_logits(ref_model, ids))


def test_numpy_reference_agrees_with_transformers(hf_model_dir: HfModelDir) -> None:
    """The small numpy GPT-2 used as a kernel reference is itself right."""
    from reference import gpt2_forward

    _, ref_model = hf_model_dir(**SMALL)
    params = {
        k.removeprefix("transformer."): v.detach().double().numpy()
        for k, v in ref_model.state_dict().items()
    }
    ids = random_ids(20, SMALL["vocab_size"], seed=6)
    np.testing.assert_allclose(
        gpt2_forward(ids, params, SMALL["n_head"]), hf_logits(ref_model, ids), atol=1e-4
    )


def test_sequences_are_independent(hf_model_dir: HfModelDir) -> None:
    directory, _ = hf_model_dir(**SMALL)
    model = gpt2cpu.Model.from_pretrained(directory, threads=1)
    a_ids, b_ids = random_ids(20, 1001, seed=7), random_ids(20, 1001, seed=8)
    a, b = model.new_sequence(), model.new_sequence()
    for i in range(20):  # interleaved
        la = a.append([int(a_ids[i])])
        lb = b.append([int(b_ids[i])])
    np.testing.assert_allclose(la, model.forward(a_ids)[-1], atol=1e-5)
    np.testing.assert_allclose(lb, model.forward(b_ids)[-1], atol=1e-5)


def test_truncate_reuses_prefix(hf_model_dir: HfModelDir) -> None:
    directory, _ = hf_model_dir(**SMALL)
    model = gpt2cpu.Model.from_pretrained(directory)
    ids = random_ids(30, 1001, seed=9)
    seq = model.new_sequence()
    seq.append(ids[:20])
    seq.truncate(10)
    np.testing.assert_allclose(seq.append(ids[10:30]), model.forward(ids)[-1], atol=1e-5)
    assert seq.tokens == ids.tolist()


def test_logits_are_bit_identical_on_any_thread_count(hf_model_dir: HfModelDir) -> None:
    """Seeded sampling gives the same text on any thread count only if the logits are the
    same bits: every prompt length, whichever matmul path it takes, on every ISA."""
    directory, _ = hf_model_dir(**SMALL)
    for isa in gpt2cpu.available_isas():
        models = [gpt2cpu.Model.from_pretrained(directory, threads=n, isa=isa) for n in (1, 2, 3)]
        for n in (1, 5, 7, 13, 25, 31, 37, 47, 49, 55, 64):
            ids = random_ids(n, SMALL["vocab_size"], seed=n)
            first, *rest = (m.forward(ids) for m in models)
            for other in rest:
                assert np.array_equal(first, other), f"{isa}, {n} tokens"


def test_models_with_different_kernel_sets_run_side_by_side(hf_model_dir: HfModelDir) -> None:
    """Each model keeps the set it was loaded with, whatever the process default is since:
    every set's logits match transformers', interleaved in one process."""
    directory, ref_model = hf_model_dir(**SMALL)
    isas = gpt2cpu.available_isas()
    models = {isa: gpt2cpu.Model.from_pretrained(directory, threads=2, isa=isa) for isa in isas}
    _core.testing.set_isa("generic")
    try:
        ids = random_ids(SMALL["n_positions"], SMALL["vocab_size"], seed=3)
        ref = hf_logits(ref_model, ids)
        sequences = {isa: m.new_sequence() for isa, m in models.items()}
        for isa, m in models.items():
            assert m.isa == isa and m.kernel_info()["isa"] == isa
            assert_logits_close(m.forward(ids), ref)
        for i in range(len(ids)):  # one-token appends, alternating between the sets
            for isa, seq in sequences.items():
                np.testing.assert_allclose(
                    seq.append([int(ids[i])]),
                    ref[i],
                    atol=1e-4 * max(1.0, np.abs(ref).max()),
                    err_msg=f"{isa}, position {i}",
                )
    finally:
        _core.testing.set_isa("auto")
    with pytest.raises(ValueError, match="unknown ISA 'avx9000'"):
        gpt2cpu.Model.from_pretrained(directory, isa="avx9000")
