"""Many prompts generated together: every live sequence advances in one `engine.step`.

    results = model.generate(["ROMEO:", "JULIET:"], max_new_tokens=32, seed=[1, 2])
    results = model.generate("ROMEO:", n=4, seed=7)        # 4 samples, one prefill
    for index, piece in model.stream(["ROMEO:", "JULIET:"]): ...

The first step runs every prompt (the prefill); each later step runs the newest token of each
sequence that is still generating, and a finished one leaves the step. Because the step is
batch-invariant (a row's logits are the same bits whatever shares its step) and each sample
has its own Sampler and seed, a prompt gets exactly the tokens it gets alone.

`n` samples of one prompt share its prefill: the prefilled sequence is forked n - 1 times.
Sample k draws with `sample_seed(seed, k)` (k = 0: seed itself, so n=1 is a plain call).
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .decoding import MAX_LOGPROBS, Decoding, LogprobsMode, TokenLogprob
from .loop import (
    GenerationConfig,
    GenerationResult,
    StreamState,
    close_generator,
    new_token_budget,
    prompt_ids,
)
from .sampling import sample_seed

if TYPE_CHECKING:
    from ..engine.ids import IdsLike
    from ..model import Model
    from ..model import Sequence as ModelSequence

# generate/stream's options that are the batch's, not one sample's GenerationConfig.
BATCH_OPTIONS = ("n", "logprobs", "logprobs_mode")
# Samples of one prompt at most: each holds a sequence and a sampler from the start, so an
# unbounded n ran out of memory (or seemed to hang) before its first step.
MAX_SAMPLES = 1024
# Prompt tokens a prefill step runs at most (as score and embed bound theirs).
PREFILL_ROWS = 1024
__all__ = ["BATCH_OPTIONS", "BatchStream", "TokenLogprob", "sample_seed"]


def is_batch(prompt: object) -> bool:
    """Whether prompt is a list of prompts: a list or tuple whose first element is text or
    a list of ids. A list of ints (or []) stays one prompt of token ids."""
    if isinstance(prompt, (list, tuple)) and prompt:
        return isinstance(prompt[0], (str, list, tuple, np.ndarray))
    return False


def check_batch_options(n: object, logprobs: object, logprobs_mode: object) -> None:
    """ValueError naming the argument for n, logprobs and logprobs_mode."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 1 <= int(n) <= MAX_SAMPLES:
        raise ValueError(f"n must be an integer in [1, {MAX_SAMPLES}], got {n!r}")
    if (
        isinstance(logprobs, bool)
        or not isinstance(logprobs, numbers.Integral)
        or not 0 <= int(logprobs) <= MAX_LOGPROBS
    ) and logprobs is not None:
        raise ValueError(f"logprobs must be None or an integer in [0, {MAX_LOGPROBS}], "
                         f"got {logprobs!r}")
    if logprobs_mode not in ("raw", "processed"):
        raise ValueError(f"logprobs_mode must be 'raw' or 'processed', got {logprobs_mode!r}")


def pop_batch_options(options: dict[str, Any]) -> tuple[int, int | None, LogprobsMode]:
    """n, logprobs and logprobs_mode taken out of options (their defaults where absent) and
    checked. The one-prompt path drops them too: there they can only hold their defaults
    (wants_batch), which GenerationConfig does not take."""
    n = options.pop("n", 1)
    logprobs = options.pop("logprobs", None)
    mode = options.pop("logprobs_mode", "raw")
    check_batch_options(n, logprobs, mode)
    return int(n), None if logprobs is None else int(logprobs), mode  # numpy integers too


def prompt_seeds(seed: object, count: int) -> list[int | None]:
    """One seed per prompt from seed: None, an int for every prompt, or a list of count."""
    if isinstance(seed, (list, tuple)):
        if len(seed) != count:
            raise ValueError(f"seed must hold one entry per prompt: {len(seed)} for {count}")
        return list(seed)
    return [seed] * count  # type: ignore[list-item]  # checked by GenerationConfig


class _Slot:
    """One sample of one prompt in the batch: its decoding state, sequence and times."""

    def __init__(self, ids: list[int], decoding: Decoding) -> None:
        self.ids = ids
        self.d = decoding
        self.sequence: ModelSequence | None = None
        self.prefill = 0.0
        self.decode = 0.0
        self.steps = 0
        self.result: GenerationResult | None = None

    def close(self) -> str:
        """The text held back, and the result; the sequence's cache goes back."""
        tail = self.d.flush()
        self.result = self.d.result(len(self.ids), self.prefill, self.decode, self.steps)
        if self.sequence is not None:
            self.sequence.close()
        return tail


class BatchStream:
    """An iterator over (index, piece): the text pieces of every sample as they come, index
    being the sample's place in `results` (prompt i's k-th sample: i * n + k). One iterator
    rather than one per prompt because all prompts advance in the same step: separate
    iterators would have to buffer whatever the caller does not read yet. Once exhausted,
    `results` holds a GenerationResult per sample."""

    def __init__(self, model: Model, prompts: Sequence[str | IdsLike],
                 configs: Sequence[GenerationConfig], *, n: int = 1,
                 logprobs: int | None = None, logprobs_mode: LogprobsMode = "raw",
                 text: bool = True) -> None:
        if not prompts:
            raise ValueError("prompts must not be empty")
        if text:
            model.require_tokenizer("it cannot stream text")
        self.model = model
        self.n = n
        self._slots: list[_Slot] = []
        # Every prompt and option is checked here, before anything runs: a bad prompt raises
        # naming its index and no other prompt has started.
        for i, (prompt, config) in enumerate(zip(prompts, configs, strict=True)):
            if config.stop_strings:
                model.require_tokenizer("stop strings need one")
            try:
                ids = prompt_ids(model, prompt, config)
            except (ValueError, TypeError) as exc:
                kind = TypeError if isinstance(exc, TypeError) else ValueError
                raise kind(f"prompts[{i}]: {exc}") from None
            budget = new_token_budget(model, ids, config)
            for k in range(n):
                sample = replace(config, seed=sample_seed(config.seed, k))
                self._slots.append(_Slot(ids, Decoding(
                    model, sample, ids, budget, logprobs=logprobs, logprobs_mode=logprobs_mode
                )))
        self._listed = True
        self._shared = StreamState()
        self._steps = _batch_steps(model, n, self._slots, self._shared)

    @property
    def results(self) -> list[GenerationResult] | None:
        return self._shared.results

    def __iter__(self) -> Iterator[tuple[int, str]]:
        return self

    def __next__(self) -> tuple[int, str]:
        return next(self._steps)

    def close(self) -> None:
        """Stops early; `results` stays None and every sequence's cache goes back. Safe from
        any thread, as GenerationStream.close."""
        self._shared.closing = True
        close_generator(self._steps)

    @property
    def listed(self) -> bool:
        """Whether generate returns the list (a batch or n > 1) or its one result."""
        return self._listed


def _batch_steps(model: Model, n: int, slots: list[_Slot],
                 shared: StreamState) -> Generator[tuple[int, str], None, None]:
    """BatchStream's (index, piece) pairs: the prefill, then a step for the live samples.
    Holds the shared state, never the stream (StreamState says why)."""
    from ..engine.batch import row_batches, step, step_sampled

    firsts = slots[::n]
    try:
        for slot in firsts:
            # The cache holds the prompt and all but the last new token.
            slot.sequence = model.new_sequence(max(1, len(slot.ids) + slot.d.budget - 1),
                                               reserve=True)
        started = time.perf_counter()
        # In steps of at most PREFILL_ROWS prompt tokens (a big prompt alone): one step
        # for 400 prompts of 250 tokens held ~1.2 GB of activations. The step is
        # batch-invariant, so the split changes no bit.
        rows: list[np.ndarray[Any, Any]] = []
        for group in row_batches([len(s.ids) for s in firsts], PREFILL_ROWS):
            if shared.closing:
                return
            chunk = [firsts[i] for i in group]
            out = step([s.sequence for s in chunk if s.sequence], [s.ids for s in chunk])
            rows += [o[0] for o in out.outputs]
        prefill = time.perf_counter() - started
        # (index, slot, its row of logits, the row's argmax where the step gave it)
        live: list[tuple[int, _Slot, np.ndarray[Any, Any], int | None]] = []
        for p, first in enumerate(firsts):
            assert first.sequence is not None
            for k in range(n):
                slot = slots[p * n + k]
                if k:  # the samples share the prompt's keys and values
                    slot.sequence = first.sequence.fork()  # with its room too
                slot.prefill = prefill
                live.append((p * n + k, slot, rows[p], None))
        while live:
            started = time.perf_counter()
            pieces = [(i, s, _take(n, i, s, row, best)) for i, s, row, best in live]
            spent = time.perf_counter() - started
            for i, s, piece in pieces:
                s.decode += spent
                if piece:
                    yield i, piece
                if s.d.done and (tail := s.close()):
                    yield i, tail
            going = [(i, s) for i, s, _ in pieces if not s.d.done]
            if not going:
                break
            if shared.closing:
                return
            started = time.perf_counter()
            logits, bests = step_sampled([s.sequence for _, s in going if s.sequence],
                                         [s.d.new[-1] for _, s in going])
            spent = time.perf_counter() - started
            live = []
            for (i, s), o, best in zip(going, logits, bests, strict=True):
                s.steps += 1
                s.decode += spent
                live.append((i, s, o[0], best))
    finally:
        for slot in slots:
            if slot.sequence is not None:
                slot.sequence.close()
    shared.results = [s.result for s in slots if s.result is not None]


def _take(n: int, index: int, slot: _Slot, row: np.ndarray[Any, Any], best: int | None) -> str:
    """slot's next piece (best: the row's argmax, if the step computed it); a sampling error
    (logits with no distribution to sample) names the prompt, and the sample where there
    are several, as the checks before the run do."""
    try:
        return slot.d.take(row, best)
    except ValueError as exc:
        prompt, k = divmod(index, n)
        sample = f" (sample {k})" if n > 1 else ""
        raise ValueError(f"prompts[{prompt}]{sample}: {exc}") from None


def wants_batch(prompt: object, options: dict[str, Any]) -> bool:
    """Whether a call takes the batched path: a list of prompts, n, logprobs or a list of
    seeds (a single prompt with none of these keeps generation.py's path, which can also
    continue a sequence)."""
    return (is_batch(prompt) or options.get("n", 1) != 1
            or options.get("logprobs") is not None
            or isinstance(options.get("seed"), (list, tuple)))


def batch_stream(model: Model, prompt: Any, options: dict[str, Any], *,
                 text: bool) -> BatchStream:
    """A BatchStream for Model.generate/stream's prompt and options (which it consumes)."""
    from .loop import resolve

    n, logprobs, mode = pop_batch_options(options)
    if options.pop("sequence", None) is not None:
        raise ValueError("sequence continues one prompt; pass it without a list of prompts, "
                         "n or logprobs")
    listed = is_batch(prompt) or n > 1
    prompts: list[Any] = list(prompt) if is_batch(prompt) else [prompt]
    seed = options.pop("seed", None)
    # Resolved once: an option given as an iterator (stop) would be used up by the first
    # prompt's config, leaving the others without it.
    base = resolve(model, options)
    configs = []
    for i, s in enumerate(prompt_seeds(seed, len(prompts))):
        try:
            configs.append(base if s is None else replace(base, seed=s))
        except ValueError as exc:
            raise ValueError(f"seed[{i}]: {exc}" if isinstance(seed, (list, tuple))
                             else str(exc)) from None
    run = BatchStream(model, prompts, configs, n=n, logprobs=logprobs, logprobs_mode=mode,
                      text=text)
    run._listed = listed
    return run
