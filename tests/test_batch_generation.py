"""generate/stream over a list of prompts, n samples from one prefill, and logprobs."""

from __future__ import annotations

from typing import Any, assert_type

import gpt2cpu
import numpy as np
import pytest
from gpt2cpu.generation.batch import BatchStream
from gpt2cpu.generation.loop import GenerationResult, GenerationStream
from gpt2cpu.generation.sampling import sample_seed

PROMPTS = ["ROMEO:", "JULIET: O Romeo", "First Citizen:\nWe are", ""]


@pytest.fixture(scope="module")
def model() -> gpt2cpu.Model:
    return gpt2cpu.Model.from_pretrained()


def many(model: gpt2cpu.Model, prompt: Any, **options: Any) -> list[GenerationResult]:
    results = model.generate(prompt, **options)
    assert isinstance(results, list)
    return results


def one(model: gpt2cpu.Model, prompt: Any, **options: Any) -> GenerationResult:
    result = model.generate(prompt, **options)
    assert isinstance(result, GenerationResult)
    return result


@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_a_batch_gives_each_prompt_its_tokens_alone(model: gpt2cpu.Model,
                                                    temperature: float) -> None:
    # Different lengths, one that stops early on a stop string: prompts leave the step at
    # different times, and the rest must not notice.
    options: dict[str, Any] = dict(max_new_tokens=24, temperature=temperature, stop="\n\n")
    alone = [one(model, p, seed=10 + i, **options) for i, p in enumerate(PROMPTS)]
    together = many(model, PROMPTS, seed=[10 + i for i in range(len(PROMPTS))], **options)
    assert [r.token_ids for r in together] == [r.token_ids for r in alone]
    assert [r.text for r in together] == [r.text for r in alone]
    assert [r.finish_reason for r in together] == [r.finish_reason for r in alone]


def test_id_prompts_and_one_seed_for_all(model: gpt2cpu.Model) -> None:
    tok = model.tokenizer
    assert tok is not None
    ids = [tok.encode(p) for p in PROMPTS[:3]]
    together = many(model, ids, max_new_tokens=8, seed=4)
    assert [r.token_ids for r in together] == [
        one(model, i, max_new_tokens=8, seed=4).token_ids for i in ids
    ]


def test_n_samples_run_one_prefill(model: gpt2cpu.Model) -> None:
    before = model.stats.prefills
    samples = many(model, "ROMEO:", n=4, max_new_tokens=12, seed=5, ignore_eos=True)
    assert model.stats.prefills - before == 1
    assert len(samples) == 4
    # Sample k is a plain call with sample_seed(5, k); k=0 is the seed itself.
    for k, sample in enumerate(samples):
        seed = sample_seed(5, k)
        assert seed is not None
        assert sample.token_ids == one(model, "ROMEO:", max_new_tokens=12, seed=seed,
                                       ignore_eos=True).token_ids
    assert len({tuple(s.token_ids) for s in samples}) > 1


def test_n_with_a_batch_is_prompt_major(model: gpt2cpu.Model) -> None:
    before = model.stats.prefills
    results = many(model, PROMPTS[:2], n=3, max_new_tokens=6, seed=[1, 2])
    assert model.stats.prefills - before == 2
    assert results[3].token_ids == one(model, PROMPTS[1], max_new_tokens=6, seed=2).token_ids


def test_sample_seed() -> None:
    assert sample_seed(7, 0) == 7
    assert sample_seed(None, 3) is None
    seeds = {sample_seed(7, k) for k in range(100)}
    assert len(seeds) == 100
    assert all(s is not None and 0 <= s < 2**63 for s in seeds)
    assert sample_seed(7, 1) == sample_seed(7, 1) != sample_seed(8, 1)


def test_stream_yields_index_and_piece(model: gpt2cpu.Model) -> None:
    run = model.stream(PROMPTS[:3], max_new_tokens=10, seed=1)
    pieces: dict[int, str] = {}
    for index, piece in run:
        pieces[index] = pieces.get(index, "") + piece
    results = run.results
    assert results is not None
    assert [pieces.get(i, "") for i in range(3)] == [r.text for r in results]
    assert [r.text for r in results] == [one(model, p, max_new_tokens=10, seed=1).text
                                         for p in PROMPTS[:3]]


def test_stream_is_typed_as_it_runs(model: gpt2cpu.Model) -> None:
    """Model.stream's overloads follow batch.wants_batch: mypy checks the assert_type calls
    (this file is in its files) and the run checks that each type is the one returned."""
    single = model.stream("ROMEO:", max_new_tokens=2, seed=1)
    assert_type(single, GenerationStream)
    listed = model.stream(PROMPTS[:2], max_new_tokens=2)
    assert_type(listed, BatchStream)
    either = model.stream("ROMEO:", max_new_tokens=2, n=2)
    assert_type(either, GenerationStream | BatchStream)
    assert isinstance(single, GenerationStream) and isinstance(listed, BatchStream)
    assert isinstance(either, BatchStream)
    for run in (single, listed, either):
        run.close()


def test_one_prompt_takes_the_batch_options_at_their_defaults(model: gpt2cpu.Model) -> None:
    """n=1, logprobs=None and a logprobs_mode leave one prompt on the one-prompt path with
    its plain result (they once reached GenerationConfig, a TypeError), and are checked."""
    plain = model.generate("ROMEO:", max_new_tokens=4, temperature=0)
    given = model.generate("ROMEO:", max_new_tokens=4, temperature=0, n=1, logprobs=None,
                           logprobs_mode="processed")
    assert given.token_ids == plain.token_ids and given.text == plain.text
    streamed = model.stream("ROMEO:", max_new_tokens=4, temperature=0, n=1, logprobs=None,
                            logprobs_mode="processed")
    assert "".join(streamed) == plain.text
    with pytest.raises(ValueError, match="logprobs_mode"):
        model.generate("ROMEO:", max_new_tokens=4,
                       logprobs_mode="bad")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="n must be"):
        model.generate("ROMEO:", max_new_tokens=4, n=True)


def _log_softmax(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    x = x.astype(np.float64)
    x = x - x.max()
    logprobs: np.ndarray[Any, Any] = x - np.log(np.exp(x).sum())
    return logprobs


def test_raw_logprobs_are_log_softmax_of_forward(model: gpt2cpu.Model) -> None:
    tok = model.tokenizer
    assert tok is not None
    prompt = tok.encode("ROMEO:")
    result = one(model, prompt, logprobs=5, max_new_tokens=6, temperature=0.7, seed=2,
                 repetition_penalty=1.3)
    assert result.logprobs is not None and len(result.logprobs) == len(result.token_ids)
    # The logits of every generated position, from one forward pass over it all.
    logits = model.forward(prompt + result.token_ids[:-1])[len(prompt) - 1 :]
    for row, entry, token in zip(logits, result.logprobs, result.token_ids, strict=True):
        expected = _log_softmax(row)
        assert entry.token == token
        assert entry.logprob == pytest.approx(expected[token], abs=1e-4)
        best = np.argsort(-expected, kind="stable")[:5]
        assert [t for t, _ in entry.top] == best.tolist()
        assert [v for _, v in entry.top] == pytest.approx(expected[best], abs=1e-4)


def test_processed_logprobs_follow_the_sampler(model: gpt2cpu.Model) -> None:
    raw = one(model, "ROMEO:", logprobs=0, max_new_tokens=4, temperature=0.5, seed=3)
    processed = one(model, "ROMEO:", logprobs=2, logprobs_mode="processed",
                    max_new_tokens=4, temperature=0.5, top_k=2, seed=3)
    assert raw.logprobs is not None and processed.logprobs is not None
    assert raw.logprobs[0].top == []
    # top_k=2 leaves two candidates: their probabilities add up to one.
    for entry in processed.logprobs:
        assert sum(np.exp(v) for _, v in entry.top) == pytest.approx(1.0, abs=1e-5)
        # The temperature sharpens the raw distribution: the chosen token is likelier.
    assert processed.logprobs[0].logprob > raw.logprobs[0].logprob


def test_tied_alternatives_go_lowest_id_first() -> None:
    from gpt2cpu.generation.decoding import token_logprob

    # argpartition alone picks any of the tied values at the k-th place.
    assert [t for t, _ in token_logprob(np.zeros(4096, np.float32), 7, 5).top] == [0, 1, 2, 3, 4]
    row = np.full(300, -np.inf, np.float32)
    row[[250, 40]] = (1.0, 2.0)
    assert [t for t, _ in token_logprob(row, 40, 4).top] == [40, 250, 0, 1]
    noisy = np.random.default_rng(1).standard_normal(5000).astype(np.float32)
    noisy[100:140] = noisy.max()
    best = np.argsort(-noisy, kind="stable")[:20]
    assert [t for t, _ in token_logprob(noisy, 3, 20).top] == best.tolist()


def test_without_logprobs_there_are_none(model: gpt2cpu.Model) -> None:
    assert one(model, "ROMEO:", max_new_tokens=2).logprobs is None


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"n": 0}, "n"),
        ({"n": 1.5}, "n"),
        ({"logprobs": 21}, "logprobs"),
        ({"logprobs": -1}, "logprobs"),
        ({"logprobs": 2, "logprobs_mode": "cooked"}, "logprobs_mode"),
        ({"seed": [1]}, "seed"),
    ],
)
def test_bad_batch_options_name_the_argument(model: gpt2cpu.Model, options: dict[str, Any],
                                             named: str) -> None:
    with pytest.raises(ValueError, match=rf"^{named} "):
        model.generate(PROMPTS[:2], **options)


def test_a_prompt_that_does_not_fit_is_named_before_anything_runs(
        model: gpt2cpu.Model) -> None:
    tok = model.tokenizer
    assert tok is not None
    too_long = [1] * (model.config.n_positions + 5)
    before = model.stats.steps
    with pytest.raises(ValueError, match=r"^prompts\[1\]: .*context"):
        model.generate([tok.encode("ROMEO:"), too_long], max_new_tokens=4)
    assert model.stats.steps == before
    # max_new_tokens=None runs each prompt until its context is full: "length".
    near = [1] * (model.config.n_positions - 2)
    results = many(model, [near, tok.encode("ROMEO:")], max_new_tokens=None,
                   ignore_eos=True, temperature=0)
    assert len(results[0].token_ids) == 3 and results[0].finish_reason == "length"


def test_bad_prompts_and_seeds_are_named_by_index(model: gpt2cpu.Model) -> None:
    bad: list[Any] = [[1, "x"], 5, None]
    for last in bad:
        with pytest.raises(TypeError, match=r"^prompts\[3\]: "):
            model.generate(["a", "b", "c", last], max_new_tokens=2)
    class Unreadable:  # as a file of invalid UTF-8 read as ids: its own exception type
        def __iter__(self) -> Any:
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    with pytest.raises(ValueError, match=r"^prompts\[1\]: .*invalid start byte"):
        model.generate(["a", Unreadable()], max_new_tokens=2)
    with pytest.raises(ValueError, match=r"^seed\[1\]: "):
        model.generate(["a", "b"], seed=[1, -1], max_new_tokens=2)


def test_options_given_as_iterators_serve_every_prompt(model: gpt2cpu.Model) -> None:
    options: dict[str, Any] = dict(seed=1, max_new_tokens=40)
    listed = many(model, ["ROMEO:"] * 3, stop=["\n"], **options)
    assert [r.finish_reason for r in listed] == ["stop"] * 3
    once = many(model, ["ROMEO:"] * 3, stop=iter(["\n"]), **options)
    assert [r.token_ids for r in once] == [r.token_ids for r in listed]


def test_sequence_goes_with_one_prompt_only(model: gpt2cpu.Model) -> None:
    with model.new_sequence() as chat, pytest.raises(ValueError, match="^sequence continues"):
        model.generate(PROMPTS[:2], sequence=chat)


def test_a_stream_closed_early_has_no_results(model: gpt2cpu.Model) -> None:
    run = model.stream(PROMPTS[:2], max_new_tokens=30, ignore_eos=True, seed=1)
    first = next(run)
    assert first[0] in (0, 1)
    run.close()
    assert run.results is None
    with pytest.raises(StopIteration):
        next(run)


def test_numpy_integers_serve_as_counts(model: gpt2cpu.Model) -> None:
    plain = many(model, PROMPTS[:2], n=2, logprobs=3, max_new_tokens=3, seed=4)
    numpy = many(model, PROMPTS[:2], n=np.int64(2), logprobs=np.int32(3),
                 max_new_tokens=np.int64(3), seed=np.int64(4))
    assert [r.token_ids for r in numpy] == [r.token_ids for r in plain]
    assert one(model, "ROMEO:", max_new_tokens=np.int16(2), seed=1).token_ids == \
        one(model, "ROMEO:", max_new_tokens=2, seed=1).token_ids


def test_counts_are_bounded_and_errors_during_the_run_name_the_prompt(
        model: gpt2cpu.Model) -> None:
    with pytest.raises(ValueError, match=r"^n must be an integer in \[1, 1024\], got 10000000000$"):
        model.generate("ROMEO:", max_new_tokens=1, n=10**10)
    # A temperature so small that "ROMEO:"'s logits overflow to inf, where "the"'s do not:
    # the sampling error names the prompt (and sample) that met it.
    assert model.generate("the", max_new_tokens=1, temperature=2e-38, seed=1)
    with pytest.raises(ValueError, match=r"^prompts\[1\]: logits hold NaN or \+inf"):
        model.generate(["the", "ROMEO:"], max_new_tokens=1, temperature=2e-38, seed=1)
    with pytest.raises(ValueError, match=r"^prompts\[1\] \(sample 0\): logits hold"):
        model.generate(["the", "ROMEO:"], max_new_tokens=1, temperature=2e-38, seed=1, n=2)


def test_numpy_integers_are_integers(model: gpt2cpu.Model) -> None:
    seq = model.new_sequence(np.int64(8))
    assert seq.capacity == 8
    logits = seq.append([1, 2, 3], last_n=np.int64(2))
    assert logits.shape[0] == 2
    seq.truncate(np.int32(1))
    assert seq.length == 1
    twin = model.new_sequence()
    out = gpt2cpu.engine.step([twin], [[1, 2]], output="hidden", layer=np.int64(1))
    assert out.outputs[0].shape == (1, model.config.n_embd)
    for bad in (True, 1.0, "1"):
        with pytest.raises(ValueError, match="length must be an integer"):
            seq.truncate(bad)  # type: ignore[arg-type]


def test_a_large_batch_prefills_in_bounded_steps(model: gpt2cpu.Model) -> None:
    """Prompts of 1200 tokens in all prefill in two steps (of at most 1024 prompt tokens),
    each prompt's tokens what it gets alone."""
    from gpt2cpu.generation.batch import PREFILL_ROWS

    prompts = [[(7 * i + j) % 60 + 1 for j in range(200)] for i in range(6)]
    assert sum(map(len, prompts)) > PREFILL_ROWS
    before = model.stats.steps
    results = model.generate(prompts, max_new_tokens=1, temperature=0)
    assert model.stats.steps - before == 2  # the prefill's steps; one new token each
    for prompt, result in zip(prompts, results, strict=True):
        alone = model.generate(prompt, max_new_tokens=1, temperature=0)
        assert result.token_ids == alone.token_ids
