"""The generation loop: prompt -> KV-cached sequence -> sampler -> stop checks -> text.

    config = GenerationConfig(max_new_tokens=32, temperature=0.8, top_p=0.95, seed=1)
    result = generate(model, "Once upon a time", config)
    for piece in stream(model, "Once upon a time", config): ...

`Model.generate` and `Model.stream` are the same functions with the options as keywords.
The prompt runs through the model once; each step then runs only the newest token.
"""

from __future__ import annotations

import contextlib
import numbers
import time
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..engine.ids import IdsLike, as_ids
from .decoding import Decoding
from .sampling import SamplingParams
from .stopping import stop_strings

if TYPE_CHECKING:
    from ..model import Model, Sequence
    from .decoding import TokenLogprob

FinishReason = Literal["length", "stop", "eos"]


@dataclass(frozen=True)
class GenerationConfig(SamplingParams):
    """Every control of a generation: the sampling controls of `SamplingParams` and these,
    checked on construction (ValueError naming the argument).

    max_new_tokens: at most this many new tokens; None: until the context is full.
    stop: a string or strings; the text ends just before the first one that appears.
    ignore_eos: keep going when the model produces its end-of-text token.
    truncate: when prompt + max_new_tokens exceed the context, drop the prompt's oldest
        tokens instead of raising ValueError.
    """

    max_new_tokens: int | None = 64
    stop: str | Iterable[str] | None = None
    ignore_eos: bool = False
    truncate: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        n = self.max_new_tokens
        if n is not None and (isinstance(n, bool) or not isinstance(n, numbers.Integral)
                              or n < 1):
            raise ValueError(f"max_new_tokens must be a positive integer or None, got {n!r}")
        if n is not None:
            object.__setattr__(self, "max_new_tokens", int(n))  # a numpy integer too
        object.__setattr__(self, "stop", stop_strings(self.stop))
        for name in ("ignore_eos", "truncate"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")

    @property
    def stop_strings(self) -> tuple[str, ...]:
        stops = self.stop
        assert isinstance(stops, tuple)
        return stops


@dataclass(frozen=True)
class GenerationResult:
    """What a generation produced.

    text: the new text only, ending before the stop string when one was found.
    token_ids: the new tokens only; with a stop string, up to and including the token that
        completed it; the end-of-text token that ended a generation is not included.
    finish_reason: "length" (max_new_tokens or the context ran out), "stop" (a stop string)
        or "eos" (the model's end-of-text token).
    stop: the stop string found, if any.
    prompt_tokens: tokens the model read before generating (after any truncation; an empty
        prompt reads one, the BOS/EOS token; continuing a sequence, the prompt's tokens).
    prefill_seconds: time to run the prompt. decode_seconds: time of the generating steps,
        sampling and decoding included, not counting time the caller held a stream.
    decode_steps: single-token model steps run (one fewer than the tokens sampled; as many
        when a sequence is continued, which runs the last one too). In a batch the steps are
        shared: prefill_seconds and decode_seconds are the wall time of the steps the
        sample took part in.
    logprobs: with logprobs=k, one TokenLogprob per token of token_ids: its log-probability
        and the k most likely ids; else None.
    """

    text: str
    token_ids: list[int]
    finish_reason: FinishReason
    prompt_tokens: int
    prefill_seconds: float
    decode_seconds: float
    decode_steps: int
    stop: str | None = None
    logprobs: list[TokenLogprob] | None = None

    @property
    def prefill_tokens_per_second(self) -> float | None:
        if self.prefill_seconds <= 0.0:
            return None
        return self.prompt_tokens / self.prefill_seconds

    @property
    def decode_tokens_per_second(self) -> float | None:
        if self.decode_steps == 0 or self.decode_seconds <= 0.0:
            return None
        return self.decode_steps / self.decode_seconds


def resolve(model: Model, options: Mapping[str, Any]) -> GenerationConfig:
    """The options a caller gave over the defaults of the model's generation_config.json,
    over GenerationConfig's own."""
    return GenerationConfig(**{**model.generation_defaults.options, **options})


def prompt_ids(model: Model, prompt: str | IdsLike, config: GenerationConfig,
               sequence: Sequence | None = None) -> list[int]:
    """The ids the model reads first: the encoded prompt, the BOS/EOS token for an empty
    one (as Hugging Face starts from bos_token_id), cut to fit the context if allowed.
    Continuing a non-empty sequence, an empty prompt stays empty."""
    if isinstance(prompt, str):
        ids = model.require_tokenizer("pass the prompt as a list of token ids").encode(prompt)
        vocab_size = model.config.vocab_size
        if ids and max(ids) >= vocab_size:  # a tokenizer with more tokens than the model
            raise ValueError(
                f"the prompt encodes to token {max(ids)}, outside the model's vocabulary "
                f"[0, {vocab_size}): its tokenizer has tokens the model does not"
            )
    else:
        ids = as_ids(prompt, model.config.vocab_size, "prompt").tolist()
    if sequence is not None:
        return _check_room(sequence, ids, config)
    if not ids:
        start = _first_known(
            model.config.vocab_size,
            model.generation_defaults.bos_token_id,
            model.config.bos_token_id,
            model.config.eos_token_id,
            model.tokenizer.bos_token_id if model.tokenizer else None,
            model.tokenizer.eos_token_id if model.tokenizer else None,
        )
        if start is None:
            raise ValueError("the prompt is empty and the model names no BOS or EOS token to "
                             "start from")
        ids = [start]

    # The project's rule for the context, here and only here: a prompt longer than the
    # context is an error (unless truncate); more new tokens than the room it leaves are
    # capped (new_token_budget), the generation then ending with finish reason "length".
    context = model.config.n_positions
    if not config.truncate:
        if len(ids) > context:
            raise ValueError(
                f"the prompt has {len(ids)} tokens, more than the model's context of {context} "
                "tokens; shorten it or pass truncate=True"
            )
        return ids
    # truncate: keep the prompt's newest tokens, as many as leave room for max_new_tokens
    # (at least one).
    wanted = config.max_new_tokens
    keep = context if wanted is None else max(1, min(context, context + 1 - wanted))
    return ids[max(0, len(ids) - keep) :]


def new_token_budget(model: Model, ids: list[int], config: GenerationConfig,
                     sequence: Sequence | None = None) -> int:
    """How many new tokens a generation from prompt ids may make: max_new_tokens, capped to
    the room left. The last new token is sampled from the last position's logits and never
    run, as in transformers, so a fresh sequence of n prompt tokens has room for context +
    1 - n; a continued sequence needs room for every new token in its cache."""
    if sequence is None:
        room = model.config.n_positions + 1 - len(ids)
    else:
        room = sequence.capacity - sequence.length - len(ids)
    wanted = config.max_new_tokens
    return room if wanted is None else min(wanted, room)


def _check_room(sequence: Sequence, ids: list[int], config: GenerationConfig) -> list[int]:
    if sequence.closed:
        raise ValueError("sequence is closed")
    if config.truncate:
        raise ValueError("truncate=True cannot drop the tokens a sequence has cached; "
                         "continue a sequence without it")
    if not ids and not sequence.length:
        raise ValueError("continuing an empty sequence needs a prompt")
    if sequence.capacity - sequence.length - len(ids) < 1:
        raise ValueError(
            f"the sequence holds {sequence.length} of its {sequence.capacity} tokens; "
            f"{len(ids)} prompt tokens leave no room for a new token"
        )
    return ids


def _first_known(vocab_size: int, *candidates: int | None) -> int | None:
    """The first candidate id that the model has (a tokenizer's may lie beyond it)."""
    return next((c for c in candidates if c is not None and c < vocab_size), None)


class GenerationStream:
    """An iterator over the text pieces of one generation, as they are produced.

    The pieces are whole characters (the tokenizer's streaming decoder holds back a split
    one) and never include any part of a stop string. Once the iterator is exhausted,
    `result` holds the `GenerationResult`; its text is the pieces joined.
    """

    def __init__(self, model: Model, prompt: str | IdsLike, config: GenerationConfig,
                 *, text: bool = True, sequence: Sequence | None = None) -> None:
        if text:
            model.require_tokenizer("it cannot stream text")
        if config.stop_strings:
            model.require_tokenizer("stop strings need one")
        if sequence is not None and sequence.model is not model:
            raise ValueError("sequence belongs to another model")
        self.model = model
        self.config = config
        self.prompt_ids = prompt_ids(model, prompt, config, sequence)
        ids = self.prompt_ids
        budget = new_token_budget(model, ids, config, sequence)
        seen = ids if sequence is None else sequence.tokens + ids
        # Built here rather than on the first step so that every bad argument raises now.
        decoding = Decoding(model, config, seen, budget)
        self._shared = StreamState()
        self._steps = _steps(model, ids, decoding, sequence, self._shared)

    @property
    def result(self) -> GenerationResult | None:
        return self._shared.result

    def __iter__(self) -> GenerationStream:
        return self

    def __next__(self) -> str:
        return next(self._steps)

    def close(self) -> None:
        """Stops a generation early; `result` stays None. Safe from any thread: while
        another thread is inside the stream, it stops before its next step and its
        iteration ends."""
        self._shared.closing = True
        close_generator(self._steps)


class StreamState:
    """What a stream and its steps' generator share. The generator holds this and never
    the stream: a stream it held would be a reference cycle, and a stream dropped part-way
    would keep its KV cache until the cycle collector happened to run."""

    def __init__(self) -> None:
        self.closing = False
        self.result: GenerationResult | None = None  # a GenerationStream's
        self.results: list[GenerationResult] | None = None  # a BatchStream's


def _steps(model: Model, ids: list[int], d: Decoding, continued: Sequence | None,
           shared: StreamState) -> Generator[str, None, None]:
    """GenerationStream's pieces: the prefill, then a step a token."""
    # The cache needs one place fewer than prompt and new tokens together.
    # Its room for the prompt and the budget taken at once, not grown as tokens come.
    sequence = continued or model.new_sequence(max(1, len(ids) + d.budget - 1), reserve=True)
    # Closed when the loop ends, or when the caller drops a stream part-way, so that the
    # cache's memory goes back at once rather than whenever the generator is collected.
    # A caller's sequence stays theirs, open.
    with sequence if continued is None else contextlib.nullcontext(sequence):
        started = time.perf_counter()
        if ids:
            logits = sequence.append(np.asarray(ids, dtype=np.int64))
        else:  # the cache holds no logits: the last token runs again for them
            last = sequence.tokens[-1]
            sequence.truncate(sequence.length - 1)
            logits = sequence.append([last])
        prefill = time.perf_counter() - started
        decode = 0.0
        steps = 0
        started = time.perf_counter()
        while True:
            piece = d.take(logits)
            if piece:
                decode += time.perf_counter() - started
                yield piece  # the caller's time between pieces is not ours
                started = time.perf_counter()
            if d.done:
                break
            if shared.closing:
                return
            logits = sequence._append_sampled(d.new[-1])
            steps += 1
        if continued is not None and d.unrun:
            sequence._append_sampled(d.new[-1])
            steps += 1
        decode += time.perf_counter() - started
    if tail := d.flush():
        yield tail
    shared.result = d.result(len(ids), prefill, decode, steps)


def close_generator(steps: Generator[Any, None, None]) -> None:
    """steps.close(), unless another thread is running it: that one then sees its stream's
    closing flag (set before this call) before its next step."""
    # "generator already executing" is close()'s only ValueError. The generator's state is
    # not checked after it: the other thread may have moved on since.
    with contextlib.suppress(ValueError):
        steps.close()


def stream(model: Model, prompt: str | IdsLike, config: GenerationConfig,
           sequence: Sequence | None = None) -> GenerationStream:
    """Generates from prompt (text or token ids), yielding text pieces as they come."""
    return GenerationStream(model, prompt, config, sequence=sequence)


def generate(model: Model, prompt: str | IdsLike, config: GenerationConfig,
             sequence: Sequence | None = None) -> GenerationResult:
    """Generates from prompt (text or token ids). Without a tokenizer, prompt must be ids
    and the result's text is empty."""
    run = GenerationStream(model, prompt, config, text=False, sequence=sequence)
    for _ in run:
        pass
    assert run.result is not None
    return run.result
