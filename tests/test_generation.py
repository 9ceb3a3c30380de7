"""Generation end to end on random-weight models: greedy parity with transformers, stop
conditions, streaming, context limits, seeds, and the cost of the Python side."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gpt2cpu
import numpy as np
import pytest
from gpt2cpu.generation.batch import BATCH_OPTIONS
from gpt2cpu.generation.loop import GenerationConfig
from gpt2cpu.generation.options import (
    OneSampleOptions,
    Options,
    UnbatchedOptions,
    option_names,
)
from gpt2cpu.generation.stopping import StopMatcher
from hf_models import GPT2_124M, SMALL, hf_logits
from hypothesis import example, given, settings
from hypothesis import strategies as st
from text_models import (  # noqa: F401  (fixtures)
    gpt2_text_model_fixture,
    small_text_model_fixture,
    text_model_dir_fixture,
)

torch = pytest.importorskip("torch")

EOS = SMALL["vocab_size"] - 1  # the random models' EOS (and BOS)
NO_EOS = {EOS: -math.inf}
PROMPT = "def parse(self, args):\n    return"


@pytest.fixture(scope="module")
def small(small_text_model: tuple[Path, Any]) -> gpt2cpu.Model:
    return gpt2cpu.Model.from_pretrained(small_text_model[0], threads=1)


@pytest.fixture(scope="module")
def gpt2(gpt2_text_model: tuple[Path, Any]) -> gpt2cpu.Model:
    """The 124M shape with GPT-2's tokenizer, on one thread: the tests share a machine, and
    a second busy core slows a two-thread decode step more than it speeds it."""
    return gpt2cpu.Model.from_pretrained(gpt2_text_model[0], threads=1)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch on one thread: with other work on the machine, a second thread's waits make a
    124M generate several times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def hf_greedy(torch_model: Any, prompt: list[int], n: int, **kwargs: Any) -> list[int]:
    eos = torch_model.config.eos_token_id
    with torch.no_grad(), torch_threads(1):
        out = torch_model.generate(
            torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
            do_sample=False, max_new_tokens=n, min_new_tokens=n, suppress_tokens=[eos],
            pad_token_id=eos, **kwargs,
        )
    return [int(t) for t in out[0, len(prompt):]]


def assert_same_greedy(ours: list[int], theirs: list[int], torch_model: Any, prompt: list[int],
                       suppress: int) -> None:
    """Equal, or parted where the reference's two candidates were within 1e-4."""
    for step, (a, b) in enumerate(zip(ours, theirs, strict=False)):
        if a != b:
            logits = hf_logits(torch_model, prompt + ours[:step])[-1]
            logits[suppress] = -np.inf
            gap = abs(float(logits[a]) - float(logits[b]))
            assert gap < 1e-4, f"step {step}: chose {a}, transformers {b}, logit gap {gap}"
            return
    assert len(ours) == len(theirs)


@pytest.mark.parametrize("shape", ["small", "124M"])
def test_greedy_matches_transformers(hf_model_dir: Any, request: pytest.FixtureRequest,
                                     shape: str) -> None:
    dims = SMALL if shape == "small" else GPT2_124M
    torch_model = hf_model_dir(**dims)[1]
    model = request.getfixturevalue("small" if shape == "small" else "gpt2")
    eos = dims["vocab_size"] - 1
    prompt = np.random.default_rng(0).integers(0, eos, 8).tolist()
    n = 64 if shape == "124M" else min(64, dims["n_positions"] - len(prompt))
    result = model.generate(prompt, max_new_tokens=n, temperature=0, logit_bias={eos: -math.inf})
    assert result.finish_reason == "length"
    assert_same_greedy(result.token_ids, hf_greedy(torch_model, prompt, n), torch_model, prompt,
                       eos)


def penalised(logits: np.ndarray[Any, Any], history: list[int], penalty: float
              ) -> np.ndarray[Any, Any]:
    seen = np.unique(history)
    out = logits.copy()
    out[seen] = np.where(out[seen] < 0, out[seen] * np.float32(penalty),
                         out[seen] / np.float32(penalty))
    return out


def test_greedy_with_repetition_penalty_matches_transformers(hf_model_dir: Any) -> None:
    """Random models repeat one token under plain greedy; a penalty makes every step count."""
    directory, torch_model = hf_model_dir(**SMALL)
    model = gpt2cpu.Model.from_pretrained(directory, threads=1)
    prompt = [5, 6, 7, 5, 900, 12]
    ours = model.generate(prompt, max_new_tokens=40, temperature=0, repetition_penalty=1.5,
                          logit_bias=NO_EOS).token_ids
    assert len(set(ours)) > 10
    theirs = hf_greedy(torch_model, prompt, 40, repetition_penalty=1.5)
    for step, (a, b) in enumerate(zip(ours, theirs, strict=False)):
        if a != b:
            history = prompt + ours[:step]
            logits = penalised(hf_logits(torch_model, history)[-1], history, 1.5)
            assert abs(float(logits[a]) - float(logits[b])) < 1e-4
            return
    assert ours == theirs


def test_greedy_with_repetition_penalty_at_124m_is_transformers_argmax(
    gpt2: gpt2cpu.Model, gpt2_text_model: tuple[Path, Any]
) -> None:
    """Each token is the argmax of transformers' penalised logits after the same prefix,
    checked with one forward pass over the whole output (teacher forcing) rather than a
    second slow generate."""
    torch_model = gpt2_text_model[1]
    eos = GPT2_124M["vocab_size"] - 1
    prompt = np.random.default_rng(1).integers(0, eos, 8).tolist()
    ours = gpt2.generate(prompt, max_new_tokens=32, temperature=0, repetition_penalty=1.3,
                          logit_bias={eos: -math.inf}).token_ids
    assert len(set(ours)) > 16
    reference = hf_logits(torch_model, prompt + ours[:-1])[len(prompt) - 1 :]
    for step, token in enumerate(ours):
        logits = penalised(reference[step], prompt + ours[:step], 1.3)
        logits[eos] = -np.inf
        best = int(np.argmax(logits))
        if best != token:
            gap = float(logits[best] - logits[token])
            assert gap < 1e-4, f"step {step}: chose {token}, transformers {best}, gap {gap}"
            return


def test_empty_prompt_starts_from_bos_like_transformers(small: gpt2cpu.Model,
                                                        small_text_model: tuple[Path, Any]
                                                        ) -> None:
    torch_model = small_text_model[1]
    result = small.generate("", max_new_tokens=12, temperature=0, logit_bias=NO_EOS)
    assert result.prompt_tokens == 1
    assert result.token_ids == small.generate([EOS], max_new_tokens=12, temperature=0,
                                              logit_bias=NO_EOS).token_ids
    with torch.no_grad():  # no input ids: HF starts from bos_token_id
        out = torch_model.generate(do_sample=False, max_new_tokens=12, min_new_tokens=12,
                                   suppress_tokens=[EOS], pad_token_id=EOS)
    assert out[0, 0] == EOS
    assert_same_greedy(result.token_ids, out[0, 1:].tolist(), torch_model, [EOS], EOS)


def test_generation_runs_the_prompt_once_then_one_token_a_step(
    small: gpt2cpu.Model, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    capacities: list[int] = []
    new_sequence = small.new_sequence

    def recording(capacity: int | None = None, **options: Any) -> gpt2cpu.Sequence:
        sequence = new_sequence(capacity, **options)
        capacities.append(sequence.capacity)
        append, append_sampled = sequence.append, sequence._append_sampled

        def counted(ids: Any, **kwargs: Any) -> Any:
            sizes.append(len(ids))
            return append(ids, **kwargs)

        def counted_sampled(token: int) -> Any:
            sizes.append(1)
            return append_sampled(token)

        sequence.append = counted  # type: ignore[method-assign]
        sequence._append_sampled = counted_sampled  # type: ignore[method-assign]
        return sequence

    monkeypatch.setattr(small, "new_sequence", recording)
    assert small.tokenizer is not None
    prompt = small.tokenizer.encode(PROMPT)
    result = small.generate(prompt, max_new_tokens=10, seed=0, logit_bias=NO_EOS)
    assert sizes == [len(prompt)] + [1] * 9
    assert capacities == [len(prompt) + 9]
    assert result.decode_steps == 9 and len(result.token_ids) == 10


def test_the_cache_is_freed_when_a_stream_ends_or_is_dropped(
    small: gpt2cpu.Model, monkeypatch: pytest.MonkeyPatch
) -> None:
    sequences: list[gpt2cpu.Sequence] = []
    new_sequence = small.new_sequence

    def keep(capacity: int | None = None, **options: Any) -> gpt2cpu.Sequence:
        sequences.append(new_sequence(capacity, **options))
        return sequences[-1]

    monkeypatch.setattr(small, "new_sequence", keep)
    small.generate(PROMPT, max_new_tokens=5, seed=0)
    assert sequences[-1].closed
    stream = small.stream(PROMPT, max_new_tokens=30, seed=0, logit_bias=NO_EOS)
    next(stream)
    assert not sequences[-1].closed
    stream.close()
    assert sequences[-1].closed and stream.result is None


def test_stream_equals_generate(small: gpt2cpu.Model) -> None:
    options: dict[str, Any] = dict(max_new_tokens=40, temperature=0.9, top_k=100, seed=21,
                                   stop=["\n\n", "zz"])
    result = small.generate(PROMPT, **options)
    stream = small.stream(PROMPT, **options)
    pieces = list(stream)
    assert "".join(pieces) == result.text
    assert all(pieces)
    assert stream.result is not None
    timing = dict(prefill_seconds=result.prefill_seconds, decode_seconds=result.decode_seconds)
    assert dataclasses.replace(stream.result, **timing) == result
    assert small.tokenizer is not None
    assert result.text == small.tokenizer.decode(result.token_ids)[: len(result.text)]


def boundary_stop(model: gpt2cpu.Model, token_ids: list[int], text: str) -> str:
    """A piece of text that spans several tokens: from inside one to inside a later one."""
    tokenizer = model.tokenizer
    assert tokenizer is not None
    for k in range(3, len(token_ids) - 3):
        head = tokenizer.decode(token_ids[:k])
        p = len(head)
        if text.startswith(head) and "\ufffd" not in text[p - 2 : p + 4] and len(text) > p + 4:
            return text[p - 2 : p + 4]
    raise AssertionError("no clean token boundary in the output")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_stop_string_spanning_tokens(small: gpt2cpu.Model, seed: int) -> None:
    options: dict[str, Any] = dict(max_new_tokens=40, seed=seed, logit_bias=NO_EOS)
    full = small.generate(PROMPT, **options)
    stop = boundary_stop(small, full.token_ids, full.text)
    expected = full.text[: full.text.find(stop)]

    result = small.generate(PROMPT, stop=["never-there", stop], **options)
    assert (result.text, result.finish_reason, result.stop) == (expected, "stop", stop)
    assert result.token_ids == full.token_ids[: len(result.token_ids)]
    assert small.tokenizer is not None
    decode = small.tokenizer.decode
    assert stop in decode(result.token_ids) and stop not in decode(result.token_ids[:-1])
    stream = small.stream(PROMPT, stop=stop, **options)
    assert "".join(stream) == expected


def test_a_stop_prefix_is_held_back_then_released(small: gpt2cpu.Model) -> None:
    options: dict[str, Any] = dict(max_new_tokens=30, seed=4, logit_bias=NO_EOS)
    full = small.generate(PROMPT, **options)
    near_miss = boundary_stop(small, full.token_ids, full.text) + "\x00never"
    stream = small.stream(PROMPT, stop=near_miss, **options)
    assert "".join(stream) == full.text
    assert stream.result is not None and stream.result.finish_reason == "length"


def test_eos_ends_generation_unless_ignored(small: gpt2cpu.Model) -> None:
    result = small.generate(PROMPT, max_new_tokens=10, temperature=0, logit_bias={EOS: 100.0})
    assert (result.finish_reason, result.token_ids, result.text) == ("eos", [], "")
    likely = small.generate(PROMPT, max_new_tokens=40, seed=8, logit_bias={EOS: 6.0})
    assert likely.finish_reason == "eos" and EOS not in likely.token_ids
    assert 0 < len(likely.token_ids) < 40
    ignored = small.generate(PROMPT, max_new_tokens=3, temperature=0, logit_bias={EOS: 100.0},
                             ignore_eos=True)
    assert ignored.finish_reason == "length" and ignored.token_ids == [EOS] * 3
    assert ignored.text == "<|endoftext|>" * 3


def test_length_limit(small: gpt2cpu.Model) -> None:
    result = small.generate(PROMPT, max_new_tokens=7, seed=0, logit_bias=NO_EOS)
    assert result.finish_reason == "length" and len(result.token_ids) == 7
    assert small.tokenizer is not None
    assert result.prompt_tokens == len(small.tokenizer.encode(PROMPT))
    assert result.prefill_tokens_per_second and result.prefill_tokens_per_second > 0
    assert result.decode_tokens_per_second and result.decode_tokens_per_second > 0


def test_context_overflow_raises_caps_or_truncates(small: gpt2cpu.Model) -> None:
    # The last new token comes from the logits of the context's last position and is never
    # run, as in transformers: n prompt tokens leave room for 64 + 1 - n new ones. More
    # new tokens than that are capped to it ("length"); a longer prompt is an error.
    context = SMALL["n_positions"]  # 64
    prompt = list(range(100, 160))  # 60 tokens
    capped = small.generate(prompt, max_new_tokens=10, seed=1, logit_bias=NO_EOS)
    assert len(capped.token_ids) == 5 and capped.finish_reason == "length"
    assert capped.token_ids == small.generate(prompt, max_new_tokens=5, seed=1,
                                              logit_bias=NO_EOS).token_ids
    cut = small.generate(prompt, max_new_tokens=10, truncate=True, seed=1, logit_bias=NO_EOS)
    assert cut.prompt_tokens == context + 1 - 10 and len(cut.token_ids) == 10
    assert cut.token_ids == small.generate(prompt[5:], max_new_tokens=10, seed=1,
                                           logit_bias=NO_EOS).token_ids
    to_the_end = small.generate(prompt, max_new_tokens=None, seed=1, logit_bias=NO_EOS)
    assert len(to_the_end.token_ids) == 5 and to_the_end.finish_reason == "length"
    assert len(small.generate([1], max_new_tokens=64, logit_bias=NO_EOS).token_ids) == 64
    beyond = small.generate([1], max_new_tokens=65, truncate=True, logit_bias=NO_EOS)
    assert len(beyond.token_ids) == 64 and beyond.finish_reason == "length"
    full = small.generate(list(range(64)), max_new_tokens=None, logit_bias=NO_EOS)
    assert len(full.token_ids) == 1
    with pytest.raises(ValueError, match="65 tokens, more than the model's context of 64"):
        small.generate(list(range(65)), max_new_tokens=None)
    filled = small.generate(list(range(70)), max_new_tokens=None, truncate=True)
    assert filled.prompt_tokens == 64 and len(filled.token_ids) <= 1


def test_generation_reaches_the_last_position_as_transformers_does(
    hf_model_dir: Callable[..., tuple[Path, Any]],
) -> None:
    """A 5-token prompt on a 32-position model: transformers generates 28 tokens, the last
    from the logits of position 31; so does gpt2cpu, and the same ones (greedy)."""
    import torch

    directory, hf = hf_model_dir(n_positions=32, vocab_size=50, n_layer=1, n_embd=16, n_head=2)
    model = gpt2cpu.Model.from_pretrained(directory)
    prompt = [3, 1, 4, 1, 5]
    ours = model.generate(prompt, max_new_tokens=None, temperature=0, ignore_eos=True)
    assert len(ours.token_ids) == 28 and ours.finish_reason == "length"
    hf.generation_config.eos_token_id = None  # as ignore_eos
    with torch.no_grad():
        theirs = hf.generate(torch.tensor([prompt]), max_new_tokens=28, do_sample=False,
                             min_new_tokens=28, pad_token_id=0)
    assert theirs.shape[1] == 33
    assert ours.token_ids == theirs[0, 5:].tolist()
    assert ours.token_ids == model.generate(prompt, max_new_tokens=28, temperature=0,
                                            ignore_eos=True).token_ids
    # One more than the room left is capped to it, as everywhere: the same 28 tokens.
    capped = model.generate(prompt, max_new_tokens=29, temperature=0, ignore_eos=True)
    assert capped.token_ids == ours.token_ids and capped.finish_reason == "length"
    # A one-position model still generates a token.
    one, _ = hf_model_dir(n_positions=1, vocab_size=50, n_layer=1, n_embd=16, n_head=2)
    tiny = gpt2cpu.Model.from_pretrained(one)
    assert len(tiny.generate([7], max_new_tokens=None, temperature=0).token_ids) == 1
    assert len(tiny.generate([7], max_new_tokens=1, temperature=0).token_ids) == 1


def test_same_seed_same_output_on_any_thread_count(small_text_model: tuple[Path, Any]) -> None:
    """The engine's logits are bit-identical across thread counts (rows are split between
    threads, never a sum), so a seed fixes the text."""
    options: dict[str, Any] = dict(max_new_tokens=30, temperature=1.2, top_p=0.98, seed=5)
    outputs = set()
    for threads in (1, 2, 3):
        model = gpt2cpu.Model.from_pretrained(small_text_model[0], threads=threads)
        outputs.add(tuple(model.generate(PROMPT, **options).token_ids))
    assert len(outputs) == 1
    model = gpt2cpu.Model.from_pretrained(small_text_model[0], threads=1)
    assert tuple(model.generate(PROMPT, **{**options, "seed": 6}).token_ids) not in outputs


def test_all_controls_together(small: gpt2cpu.Model) -> None:
    result = small.generate(
        PROMPT, max_new_tokens=20, temperature=0.7, top_k=40, top_p=0.9, min_p=0.05,
        repetition_penalty=1.3, presence_penalty=0.5, frequency_penalty=0.5,
        logit_bias={EOS: -math.inf, 10: 2.0}, stop=["\n\n\n"], seed=3,
    )
    assert result.finish_reason in ("length", "stop")
    assert len(result.token_ids) <= 20


@pytest.mark.parametrize(
    ("controls", "name"),
    [
        (dict(temperature=-1), "temperature"),
        (dict(top_p=0), "top_p"),
        (dict(top_k=-2), "top_k"),
        (dict(min_p=2), "min_p"),
        (dict(repetition_penalty=0), "repetition_penalty"),
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(logit_bias={SMALL["vocab_size"]: 1.0}), "logit_bias"),
    ],
)
def test_bad_controls_raise_value_error(small: gpt2cpu.Model, controls: dict[str, Any],
                                        name: str) -> None:
    with pytest.raises(ValueError, match=name):
        small.generate(PROMPT, **{"max_new_tokens": 8, **controls})
    with pytest.raises(ValueError, match=name):
        list(small.stream(PROMPT, **{"max_new_tokens": 8, **controls}))


def test_bad_prompts(small: gpt2cpu.Model) -> None:
    with pytest.raises(ValueError, match="outside the vocabulary"):
        small.generate([1, SMALL["vocab_size"]], max_new_tokens=8)
    with pytest.raises(TypeError):
        small.generate([1.5], max_new_tokens=8)  # type: ignore[list-item]


def test_a_model_without_tokenizer_generates_ids(hf_model_dir: Any) -> None:
    model = gpt2cpu.Model.from_pretrained(hf_model_dir(**SMALL)[0], threads=1)
    assert model.tokenizer is None
    result = model.generate([1, 2, 3], max_new_tokens=5, seed=0, logit_bias=NO_EOS)
    assert len(result.token_ids) == 5 and result.text == ""
    with pytest.raises(ValueError, match="no tokenizer"):
        model.generate("text", max_new_tokens=8)
    with pytest.raises(ValueError, match="no tokenizer"):
        model.stream([1, 2, 3], max_new_tokens=8)
    with pytest.raises(ValueError, match="tokenizer"):
        model.generate([1, 2, 3], max_new_tokens=8, stop="x")


def test_model_methods_and_config_agree(small_text_model: tuple[Path, Any]) -> None:
    """Model.generate and Model.stream list GenerationConfig's options with its defaults
    (and the sequence to continue), so an unknown option fails before anything runs."""
    config = inspect.signature(GenerationConfig)
    params = dict(inspect.signature(gpt2cpu.Model.generate).parameters)
    assert params == dict(inspect.signature(gpt2cpu.Model.stream).parameters)
    del params["self"], params["prompt"], params["sequence"]
    for name in BATCH_OPTIONS:  # the batch's, not GenerationConfig's
        del params[name]
    assert sorted(params) == sorted(config.parameters)
    for name, param in params.items():
        assert param.kind is inspect.Parameter.KEYWORD_ONLY
        assert param.default == config.parameters[name].default, name
    model = gpt2cpu.Model.from_pretrained(small_text_model[0])
    with pytest.raises(TypeError, match="top_q"):
        model.stream("text", top_q=0.5)  # type: ignore[call-overload]


def test_type_checkers_read_the_same_options() -> None:
    """Options and UnbatchedOptions (the overloads' **options) name what signature (help,
    the run-time check) does; OneSampleOptions all but n."""
    assert set(Options.__annotations__) == set(option_names())
    assert set(UnbatchedOptions.__annotations__) == set(option_names())
    assert set(OneSampleOptions.__annotations__) == set(option_names()) - {"n"}


# -- stop strings over arbitrary text ---------------------------------------------------


def feed_all(stops: list[str], pieces: list[str]) -> Iterator[str]:
    matcher = StopMatcher(stops)
    for piece in pieces:
        yield matcher.feed(piece)
        if matcher.matched is not None:
            return
    yield matcher.flush()


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(st.text(alphabet="abc\n", max_size=4), max_size=12),
    stops=st.lists(st.text(alphabet="abc\n", min_size=1, max_size=4), min_size=1, max_size=3),
)
@example(pieces=["\nc", "a"], stops=["c", "\nca"])  # "c" completes first though "\nca" starts first
def test_stop_matcher_cuts_at_the_first_stop_and_never_leaks(pieces: list[str],
                                                             stops: list[str]) -> None:
    # Generation stops after the first piece that completes a stop string, so later pieces
    # never exist; the cut is at the earliest start among the stops in the text so far
    # (a longer stop that began earlier but would end later does not count).
    text = ""
    expected = None
    for piece in pieces:
        text += piece
        found = [i for i in (text.find(s) for s in stops) if i >= 0]
        if found:
            expected = text[: min(found)]
            break
    if expected is None:
        expected = text
    shown = ""
    for out in feed_all(stops, pieces):
        shown += out
        assert expected.startswith(shown)
    assert shown == expected


def test_stop_matcher_holds_back_only_possible_starts() -> None:
    matcher = StopMatcher(["\n\nEND"])
    assert matcher.feed("Hello\n") == "Hello"
    assert matcher.feed("\nEN") == ""
    assert matcher.feed("X and") == "\n\nENX and"
    assert matcher.feed("\n\nE") == ""
    assert matcher.feed("ND more") == ""
    assert matcher.matched == "\n\nEND"


def test_a_long_stop_string_costs_linear_memory_and_time() -> None:
    """A set of every prefix made one stop string of 100,000 characters cost 4.7 GiB and
    15 s; the matcher's tables are linear in the stop strings now."""
    import tracemalloc

    stop = "ab" * 10_000 + "c"  # 20,001 characters: every prefix would be 200 MB
    text = "ab" * 9_999
    tracemalloc.start()
    try:
        started = time.perf_counter()
        config = GenerationConfig(stop=[stop, "zz"])
        matcher = StopMatcher(config.stop_strings)
        shown = "".join(matcher.feed(text[i : i + 7]) for i in range(0, len(text), 7))
        assert shown == "" and matcher.matched is None  # all of it may start the stop string
        shown += matcher.feed("abx")  # one pair short of the stop string, then not it
        assert shown == text + "abx" and matcher.matched is None
        pieces = [stop[i : i + 5] for i in range(0, len(stop), 5)]
        shown += "".join(matcher.feed(piece) for piece in pieces[:-1])
        assert matcher.matched is None
        shown += matcher.feed(pieces[-1] + "def")
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert matcher.matched == stop and shown == text + "abx"
    assert peak < 5 << 20, f"{peak / 2**20:.1f} MiB"
    assert elapsed < 2.0


# -- the cost of the Python side ----------------------------------------------------------


def test_python_overhead_per_token_is_small(gpt2: gpt2cpu.Model) -> None:
    """Sampling, detokenising and stop checks cost under 5% of a 124M decode step. Timed
    between real steps, as in generation, so that the caches are as cold as they will be;
    medians of the two, interleaved, so that other load on the machine weighs on both."""
    from gpt2cpu.generation.sampling import Sampler

    model = gpt2
    tokenizer = model.tokenizer
    assert tokenizer is not None
    prompt = tokenizer.encode("It was a bright cold day in April, and the clocks were")
    config = GenerationConfig(temperature=0.8, top_k=50, top_p=0.95, repetition_penalty=1.1,
                              presence_penalty=0.3, stop=["\n\n", "THE END"], seed=0)
    sampler = Sampler(config, model.config.vocab_size, prompt)
    decoder = tokenizer.stream_decoder()
    matcher = StopMatcher(config.stop_strings)
    sequence = model.new_sequence(len(prompt) + 16)
    logits = sequence.append(prompt)
    overheads, steps = [], []
    for _ in range(16):
        started = time.perf_counter()
        token = sampler.sample(logits)
        sampler.observe(token)
        matcher.feed(decoder.push(token))
        sampled = time.perf_counter()
        logits = sequence.append([token])
        overheads.append(sampled - started)
        steps.append(time.perf_counter() - sampled)
    overhead, step = float(np.median(overheads)), float(np.median(steps))
    assert overhead < 0.05 * step, f"{overhead * 1e6:.0f} us a token, {step * 1e3:.1f} ms a step"


def test_a_text_prompt_beyond_the_models_vocabulary_is_named(tmp_path: Path) -> None:
    """A tokenizer with more tokens than the model (4096 against 300 here): a text prompt
    that encodes past the vocabulary is a ValueError naming the token, not an IndexError
    from the sampler, in every generation path."""
    import shutil

    from model_files import TINY, model_dir

    directory = model_dir(tmp_path, {**TINY, "vocab_size": 300, "bos_token_id": 0,
                                     "eos_token_id": 0})
    bundled = Path(gpt2cpu.__file__).parent / "models" / "tiny-shakespeare"
    for name in ("vocab.json", "merges.txt"):
        shutil.copyfile(bundled / name, directory / name)
    model = gpt2cpu.Model.from_pretrained(directory, threads=1)
    tokenizer = model.require_tokenizer("the test encodes text")
    text = "ROMEO: zebra quixotic"
    assert max(tokenizer.encode(text)) >= 300
    calls: list[Callable[[], object]] = [
        lambda: model.generate(text, max_new_tokens=2),
        lambda: model.stream(text, max_new_tokens=2),
        lambda: model.generate([text, "a"], max_new_tokens=2),
        lambda: model.generate(text, n=2, max_new_tokens=2),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=r"encodes to token \d+, outside the model's "
                                             r"vocabulary \[0, 300\)"):
            call()
