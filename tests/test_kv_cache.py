"""The bfloat16 and int8 KV caches (kv_dtype="bfloat16", "int8"): their attention kernels
against numpy on caches rounded (quantized) as the engine stores them, on every kernel
set; results that stay the same bits on any thread count and in any batch; whole models
within the accuracy bounds docs/precisions.md states; forks, truncation, growth and batched
generation over them; the memory they save; and the option's checks in the API and the
CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gpt2cpu
import numpy as np
import pytest
from gpt2cpu import Model, _core
from hf_models import HfModelDir
from model_files import model_dir
from reference import bfloat16_rounded, causal_attention
from test_batch_step import SHAPE, alone, prompts
from test_weight_types import LOGIT_BOUND, ODD_SHAPES, logit_errors, odd_shape_errors

K = _core.testing


# ---- kernels ------------------------------------------------------------------------------


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    "t,pos0,heads,d",
    [
        # Decode queries: key counts with and without a tail past the score groups, head
        # widths of whole vectors (64) and not (24, 72); one past the 64K floats from
        # which a token's heads are split between threads.
        (1, 0, 2, 64),
        (1, 47, 3, 72),
        (3, 29, 2, 24),
        (1, 700, 12, 64),
        # Prompt blocks of 16 queries (whole 16-column panels when d % 16 == 0; query by
        # query otherwise), lengths not multiples of 16.
        (16, 0, 2, 64),
        (23, 37, 3, 64),
        (37, 5, 2, 24),
        (19, 40, 2, 72),
    ],
)
@pytest.mark.parametrize("kv_dtype", ["bfloat16", "int8"])
def test_attention_over_a_narrow_cache(isa: str, threads: int, t: int, pos0: int, heads: int,
                                       d: int, kv_dtype: str) -> None:
    rng = np.random.default_rng(t + pos0 + heads + d)
    capacity = pos0 + t + 3  # slack past the end, which must never be read
    q = rng.standard_normal((t, heads * d)).astype(np.float32)
    k = rng.standard_normal((heads, capacity, d)).astype(np.float32)
    v = rng.standard_normal((heads, capacity, d)).astype(np.float32)
    k[:, pos0 + t :] = np.nan
    v[:, pos0 + t :] = np.nan
    scale = 1 / np.sqrt(d)
    out = K.attention(q, k, v, pos0, scale, threads, kv_dtype=kv_dtype)
    n = pos0 + t
    k16, v16 = stored(k[:, :n], kv_dtype), stored(v[:, :n], kv_dtype)
    expect = np.hstack([
        causal_attention(q[:, h * d : (h + 1) * d].astype(np.float64), k16[h], v16[h], pos0, scale)
        for h in range(heads)
    ])
    np.testing.assert_allclose(out, expect, rtol=1e-5, atol=1e-5 * float(np.abs(expect).max()))


def stored(x: np.ndarray[Any, Any], kv_dtype: str) -> np.ndarray[Any, Any]:
    """x (..., d) as a cache of kv_dtype holds it, widened to float64."""
    if kv_dtype == "bfloat16":
        return bfloat16_rounded(x)
    q, scales = K.kv_int8_rows(x.reshape(-1, x.shape[-1]))
    out: np.ndarray[Any, Any] = (q.astype(np.float64) * scales[:, None]).reshape(x.shape)
    return out


@pytest.mark.parametrize("d", [64, 72, 5])
def test_int8_rows_are_symmetric_with_a_scale_each(isa: str, d: int) -> None:
    # Every set quantizes a cache row to the same bits: float32's x * (127 / max |x|)
    # rounded to nearest even (ties included), scale max |x| / 127; rows of whole vectors
    # and with a tail.
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((40, d)) * rng.uniform(0.01, 30, (40, 1))).astype(np.float32)
    x[3] = 0.0
    x[7] = (np.arange(d) % 9 - 4.5).astype(np.float32)
    x[7, 0] = 127.0  # 127 / max = 1: the halves are ties
    q, scales = K.kv_int8_rows(x)
    most = np.abs(x).max(axis=1)
    np.testing.assert_array_equal(scales, most / np.float32(127))
    assert scales[3] == 0 and not q[3].any()
    live = np.arange(40) != 3
    inv = np.float32(127) / most[live, None]
    np.testing.assert_array_equal(q[live], np.clip(np.rint(x[live] * inv), -127, 127))
    assert np.abs(q).max() <= 127 and np.array_equal(q, np.rint(q))
    # A row with NaN or infinity: a NaN scale, which makes its scores NaN.
    bad = np.ones((2, 8), np.float32)
    bad[0, 2], bad[1, 5] = np.nan, np.inf
    assert np.isnan(K.kv_int8_rows(bad)[1]).all()
    # Rows too small for float's reciprocal (subnormals): quantized all the same.
    tiny = np.array([[1e-40, -3e-41, 0.0, 5e-41]], np.float32)
    q, scales = K.kv_int8_rows(tiny)
    assert np.array_equal(q[0], [127, -38, 0, 64]) and scales[0] == np.float32(1e-40) / 127


def test_an_int8_cache_needs_a_head_size_a_multiple_of_4(tmp_path: Path) -> None:
    odd = dict(SHAPE, n_embd=30, n_head=5)  # head size 6: the rows' scales would not align
    with pytest.raises(ValueError, match="kv_dtype 'int8' needs a head size .* this model's is 6"):
        Model.from_pretrained(model_dir(tmp_path, odd), kv_dtype="int8")
    assert Model.from_pretrained(model_dir(tmp_path, odd), kv_dtype="bfloat16").kv_dtype


def test_a_bad_kv_dtype_is_refused_by_the_kernels() -> None:
    x = np.ones((1, 4), np.float32)
    with pytest.raises(ValueError, match="valid kv_dtypes: 'float32', 'bfloat16', 'int8'"):
        K.attention(x, x.reshape(1, 1, 4), x.reshape(1, 1, 4), 0, 1.0, kv_dtype="fp8")


# ---- invariance ---------------------------------------------------------------------------

# test_batch_step's model, with a bfloat16 or an int8 cache.
@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model_dir(tmp_path_factory.mktemp("m"), SHAPE, seed=3)


@pytest.fixture(scope="module", params=["bfloat16", "int8"])
def model(directory: Path, request: pytest.FixtureRequest) -> Model:
    return Model.from_pretrained(directory, threads=2, kv_dtype=request.param)


@pytest.mark.parametrize("kv_dtype", ["bfloat16", "int8"])
def test_the_same_bits_on_any_thread_count(directory: Path, kv_dtype: str) -> None:
    ps = prompts(7, 12)

    def run(threads: int) -> list[np.ndarray[Any, Any]]:
        model = Model.from_pretrained(directory, threads=threads, kv_dtype=kv_dtype)
        sequences = [model.new_sequence() for _ in ps]
        first = model.step(sequences, ps)
        second = model.step(sequences, [[int(np.argmax(f[0]))] for f in first])
        return first + second

    reference = run(1)
    for a, b in zip(run(2), reference, strict=True):
        assert np.array_equal(a, b)


def test_the_same_bits_in_any_batch(model: Model) -> None:
    """Prompts (some wanting all their logits) and decode steps after prompts of their own
    lengths, in one step: each gets the bits it gets stepping alone."""
    rng = np.random.default_rng(11)
    prefixes, news, last_ns = [], [], []
    for i in range(12):
        if i % 3 == 0:
            prefixes.append(np.zeros(0, dtype=np.int64))
            n = int(rng.integers(2, 40))
            news.append(rng.integers(0, SHAPE["vocab_size"], size=n))
            last_ns.append(n if i % 2 else 1)
        else:
            prefixes.append(rng.integers(0, SHAPE["vocab_size"], size=int(rng.integers(1, 70))))
            news.append(rng.integers(0, SHAPE["vocab_size"], size=1))
            last_ns.append(1)
    sequences = [model.new_sequence() for _ in prefixes]
    for seq, p in zip(sequences, prefixes, strict=True):
        if p.size:
            seq.append(p)
    got = model.step(sequences, news, last_n=last_ns)
    for i in range(len(prefixes)):
        assert np.array_equal(got[i], alone(model, prefixes[i], news[i], last_ns[i])), i


# ---- sequences ----------------------------------------------------------------------------


def test_fork_and_truncate(model: Model) -> None:
    prefix = prompts(4, 1, longest=50)[0]
    with model.new_sequence() as seq:
        seq.append(prefix)
        twin = seq.fork()
        a = seq.append([5])
        b = twin.append([6])
        seq.truncate(prefix.size - 3)
        c = seq.append([7])
    assert np.array_equal(a, alone(model, prefix, np.array([5]), 1)[0])
    assert np.array_equal(b, alone(model, prefix, np.array([6]), 1)[0])
    assert np.array_equal(c, alone(model, prefix[:-3], np.array([7]), 1)[0])


def test_growth_keeps_what_the_cache_holds(model: Model) -> None:
    with model.new_sequence() as seq:
        seq.append([1] * 10)
        before = seq._open_core().allocated
        logits = [seq.append([2]) for _ in range(before)]  # crosses the first growth
        assert seq._open_core().allocated > before
    # A prompt of it all attends in blocks, a decode step query by query: the same stored
    # keys and values, up to the arithmetic's rounding.
    with model.new_sequence() as ref:
        want = ref.append([1] * 10 + [2] * before, all_logits=True)
    np.testing.assert_allclose(np.stack(logits), want[10:], atol=1e-5)


@pytest.mark.parametrize("kv_dtype", ["float32", "bfloat16", "int8"])
def test_room_reserved_ahead_changes_no_bit(directory: Path, kv_dtype: str) -> None:
    m = Model.from_pretrained(directory, threads=2, kv_dtype=kv_dtype)
    with m.new_sequence(100) as grown, m.new_sequence(100) as reserved:
        grown.append([1] * 10)
        reserved.reserve(3)  # less than it will hold: grows from there as usual
        reserved.append([1] * 10)
        reserved.reserve(100)
        assert reserved.cache_bytes == 100 * m.kv_bytes_per_position
        assert grown.cache_bytes < reserved.cache_bytes
        for t in range(60):  # across grown's growths
            assert np.array_equal(grown.append([t]), reserved.append([t]))
        with m.new_sequence(100, reserve=True) as ahead:
            assert ahead.cache_bytes == reserved.cache_bytes
        reserved.reserve(0)  # never shrinks
        assert reserved.cache_bytes == 100 * m.kv_bytes_per_position
        for bad in (-1, 101):
            with pytest.raises(ValueError, match="tokens must be"):
                reserved.reserve(bad)
        with pytest.raises(IndexError, match="capacity 100"):
            reserved._open_core().reserve(101)  # the core checks it again
        # A fork has the room as well as the tokens: it need not grow (copy) again.
        twin = reserved.fork()
        assert twin.cache_bytes == reserved.cache_bytes
        assert np.array_equal(twin.append([3]), reserved.append([3]))
    with pytest.raises(ValueError, match="closed"):
        reserved.reserve(5)


def test_batched_generation_is_each_prompt_alone(model: Model) -> None:
    ps = [p.tolist() for p in prompts(9, 5)]
    run: dict[str, Any] = {"max_new_tokens": 12, "temperature": 0.0, "ignore_eos": True}
    together = model.generate(ps, **run)
    for p, result in zip(ps, together, strict=True):
        assert result.token_ids == model.generate(p, **run).token_ids


def test_the_cache_takes_half_or_about_a_quarter_of_the_bytes(directory: Path,
                                                                model: Model) -> None:
    fp32 = Model.from_pretrained(directory, threads=2)
    rows = SHAPE["n_layer"] * 2 * SHAPE["n_head"]  # (layer, keys or values, head) a position
    per_position = SHAPE["n_layer"] * 2 * SHAPE["n_embd"]
    assert fp32.kv_bytes_per_position == per_position * 4
    # int8: a float scale a row beside its bytes.
    want = per_position * 2 if model.kv_dtype == "bfloat16" else per_position + 4 * rows
    assert model.kv_bytes_per_position == want
    sizes = []
    for m in (fp32, model):
        with m.new_sequence() as seq:
            seq.append(list(range(100)))
            sizes.append(seq.cache_bytes)
            assert seq.cache_bytes == seq._open_core().allocated * m.kv_bytes_per_position
            assert seq.fork().cache_bytes == seq.cache_bytes
    assert sizes[0] * want == sizes[1] * per_position * 4


# ---- accuracy -----------------------------------------------------------------------------

# Logits with a bfloat16 or int8 cache against float32 (relative RMS error, largest error
# relative to the largest logit). Measured, bfloat16: 124M random weights 2.2e-4 / 7.5e-4;
# the odd shapes below 3.0e-5 / 8.5e-5 and 5.6e-5 / 1.4e-4. int8: 7.9e-4 / 2.5e-3, and
# 7.3e-5 / 1.5e-4 and 1.3e-4 / 3.4e-4.
KV_LOGIT_BOUND = {"bfloat16": (1e-3, 2e-3), "int8": (2e-3, 5e-3)}


@pytest.mark.parametrize("kv_dtype", ["bfloat16", "int8"])
@pytest.mark.parametrize("shape", ODD_SHAPES)
def test_small_odd_shapes_stay_within_the_bounds(hf_model_dir: HfModelDir, isa: str,
                                                 shape: dict[str, Any], kv_dtype: str) -> None:
    rms, worst = odd_shape_errors(hf_model_dir, shape, kv_dtype=kv_dtype)
    bound = KV_LOGIT_BOUND[kv_dtype]
    assert rms <= bound[0] and worst <= bound[1], (rms, worst)


@pytest.mark.parametrize("kv_dtype", ["bfloat16", "int8"])
def test_124m_logits_alone_and_with_int8_weights(hf_model_dir: HfModelDir, kv_dtype: str) -> None:
    directory, _ = hf_model_dir(n_layer=12, n_embd=768, n_head=12, n_positions=1024,
                                vocab_size=50257)
    ids = np.random.default_rng(0).integers(0, 50257, 64)
    ref = Model.from_pretrained(directory, threads=2).forward(ids)
    got = Model.from_pretrained(directory, threads=2, kv_dtype=kv_dtype).forward(ids)
    rms, worst = logit_errors(got, ref)
    bound = KV_LOGIT_BOUND[kv_dtype]
    assert rms <= bound[0] and worst <= bound[1], (rms, worst)
    both = Model.from_pretrained(directory, threads=2, dtype="int8", kv_dtype=kv_dtype)
    rms, worst = logit_errors(both.forward(ids), ref)
    assert rms <= LOGIT_BOUND["int8"][0] and worst <= LOGIT_BOUND["int8"][1], (rms, worst)


def test_bundled_model_perplexity_and_greedy_decoding(
    heldout: tuple[Model, str, dict[str, float]],
) -> None:
    from gpt2cpu.tasks.perplexity import perplexity

    fp32, text, base = heldout
    for kv_dtype, most in (("bfloat16", 1.001), ("int8", 1.003)):
        model = Model.from_pretrained(fp32.path, kv_dtype=kv_dtype)
        assert model.kv_dtype == kv_dtype
        ppl = perplexity(model, text).perplexity
        assert ppl <= base["float32"] * most, (ppl, base["float32"])
        for prompt in ("ROMEO:", "First Citizen:\nBefore we proceed"):
            run: dict[str, Any] = {"max_new_tokens": 32, "temperature": 0.0, "ignore_eos": True}
            want = fp32.generate(prompt, **run).token_ids
            assert model.generate(prompt, **run).token_ids == want, kv_dtype


# ---- the option ---------------------------------------------------------------------------


def test_the_default_is_float32_and_a_bad_value_names_the_valid_ones(directory: Path) -> None:
    assert Model.from_pretrained(directory).kv_dtype == "float32"
    assert gpt2cpu.KV_DTYPES == ("float32", "bfloat16", "int8")
    for bad in ("float16", "bf16", 2):
        with pytest.raises(ValueError, match="kv_dtype must be one of float32, bfloat16, int8"):
            Model.from_pretrained(directory, kv_dtype=bad)  # type: ignore[arg-type]


def test_the_cli_takes_kv_dtype_where_it_loads_a_model() -> None:
    from gpt2cpu.cli import build_parser
    from gpt2cpu.cli.common import KV_DTYPE_NAMES

    assert tuple(_core.KV_DTYPES) == KV_DTYPE_NAMES
    parser = build_parser()
    commands = (["generate", "x"], ["perplexity", "f"], ["bench"], ["score", "f"], ["embed", "f"],
                ["classify", "f"], ["serve"], ["batch", "i", "o", "--task", "score"])
    for command in commands:
        assert parser.parse_args(command).kv_dtype == "float32", command
        args = parser.parse_args([*command, "--kv-dtype", "bfloat16"])
        assert args.kv_dtype == "bfloat16", command


def test_the_cli_refuses_a_bad_kv_dtype(capsys: pytest.CaptureFixture[str]) -> None:
    from gpt2cpu.cli import build_parser

    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["generate", "x", "--kv-dtype", "fp8"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--kv-dtype" in err and "'float32', 'bfloat16'" in err, err


def test_a_batch_job_runs_with_the_cache_it_names(tmp_path: Path) -> None:
    from gpt2cpu.jobs import JobSpec, run_job
    from job_data import MODEL, good_rows, read_jsonl, write_jsonl

    rows = good_rows(4)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    job = JobSpec(source, tmp_path / "out.jsonl", "score", model=Path(MODEL), threads=1,
                  kv_dtype="bfloat16")
    run_job(job)
    got = [r["token_logprobs"] for r in read_jsonl(tmp_path / "out.jsonl")]
    texts = [r["text"] for r in rows]
    for kv_dtype, same in (("bfloat16", True), ("float32", False)):
        model = Model.from_pretrained(MODEL, threads=1, kv_dtype=kv_dtype)
        want = [s.logprobs.tolist() for s in model.score(texts)]
        assert (got == want) == same, kv_dtype
    # A job's parts resume only under its own kv_dtype; float32's identity is what it was
    # before there was a choice.
    assert job.identity()["kv_dtype"] == "bfloat16"
    assert "kv_dtype" not in JobSpec(source, tmp_path / "o2.jsonl", "score").identity()
    # None is float32, as in from_pretrained: the same job, the same identity.
    unset = JobSpec(source, tmp_path / "o2.jsonl", "score", dtype=None, kv_dtype=None)  # type: ignore[arg-type]
    assert unset.identity() == JobSpec(source, tmp_path / "o2.jsonl", "score").identity()


def test_a_batch_job_refuses_a_bad_kv_dtype_before_anything_is_written(tmp_path: Path) -> None:
    from gpt2cpu.jobs import JobSpec, run_job
    from job_data import good_rows, write_jsonl

    source = write_jsonl(tmp_path / "in.jsonl", good_rows(2))
    # A remote cluster's client that lacks the model's directory loads no model of its own:
    # the option is still checked here, not in the actors after the parts directory exists.
    job = JobSpec(source, tmp_path / "out.jsonl", "score", model=tmp_path / "elsewhere",
                  kv_dtype="fp8", ray="ray://127.0.0.1:1")
    with pytest.raises(ValueError, match="kv_dtype must be one of float32, bfloat16"):
        run_job(job)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_the_cli_hands_kv_dtype_to_the_model(hf_model_dir: HfModelDir) -> None:
    from hf_models import SMALL
    from test_bench import bench

    directory, _ = hf_model_dir(**SMALL)
    out = bench("--model", str(directory), "--threads", "1", "--prompt-tokens", "8",
                "--new-tokens", "3", "--repeats", "1", "--positions", "5",
                "--kv-dtype", "bfloat16")
    assert out.returncode == 0, out.stderr
    assert "bfloat16 KV cache" in out.stdout, out.stdout
