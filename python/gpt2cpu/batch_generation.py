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

import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .generation import FinishReason, GenerationConfig, GenerationResult, prompt_ids
from .sampling import Sampler, sample_seed
from .stopping import StopMatcher

if TYPE_CHECKING:
    from .model import IdsLike, Model
    from .model import Sequence as ModelSequence
    from .streaming import StreamDecoder

LogprobsMode = Literal["raw", "processed"]
# generate/stream's options that are the batch's, not one sample's GenerationConfig.
BATCH_OPTIONS = ("n", "logprobs", "logprobs_mode")
MAX_LOGPROBS = 20


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token's log-probability and the most likely alternatives.

    token: the id generated. logprob: its log-probability.
    top: the `logprobs` most likely ids and their log-probabilities, most likely first (ties:
        lower id first); the generated token appears only if it is among them.
    """

    token: int
    logprob: float
    top: list[tuple[int, float]]


def is_batch(prompt: object) -> bool:
    """Whether prompt is a list of prompts: a list or tuple whose first element is text or
    a list of ids. A list of ints (or []) stays one prompt of token ids."""
    if isinstance(prompt, (list, tuple)) and prompt:
        return isinstance(prompt[0], (str, list, tuple, np.ndarray))
    return False


def check_batch_options(n: object, logprobs: object, logprobs_mode: object) -> None:
    """ValueError naming the argument for n, logprobs and logprobs_mode."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if (
        isinstance(logprobs, bool)
        or not isinstance(logprobs, int)
        or not 0 <= logprobs <= MAX_LOGPROBS
    ) and logprobs is not None:
        raise ValueError(f"logprobs must be None or an integer in [0, {MAX_LOGPROBS}], "
                         f"got {logprobs!r}")
    if logprobs_mode not in ("raw", "processed"):
        raise ValueError(f"logprobs_mode must be 'raw' or 'processed', got {logprobs_mode!r}")


def prompt_seeds(seed: object, count: int) -> list[int | None]:
    """One seed per prompt from seed: None, an int for every prompt, or a list of count."""
    if isinstance(seed, (list, tuple)):
        if len(seed) != count:
            raise ValueError(f"seed must hold one entry per prompt: {len(seed)} for {count}")
        return list(seed)
    return [seed] * count  # type: ignore[list-item]  # checked by GenerationConfig


def log_softmax(row: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """log_softmax in float64 (-inf stays -inf), so that it does not add float32 error."""
    x = np.asarray(row, dtype=np.float64)
    top = np.max(x)
    if not np.isfinite(top):
        return np.full_like(x, -np.inf)
    shifted = x - top
    out: np.ndarray[Any, np.dtype[np.float64]] = shifted - np.log(np.sum(np.exp(shifted)))
    return out


def token_logprob(row: np.ndarray[Any, Any], token: int, k: int) -> TokenLogprob:
    """token's log-probability under the distribution of row (logits), and row's k best."""
    lp = log_softmax(row)
    if k:
        best = np.argpartition(-lp, k - 1)[:k] if k < lp.size else np.arange(lp.size)
        best = best[np.lexsort((best, -lp[best]))]  # most likely first, ties by id
        top = [(int(i), float(lp[i])) for i in best]
    else:
        top = []
    return TokenLogprob(token, float(lp[token]), top)


class _Slot:
    """One sample of one prompt: its sequence, sampler and stop state, fed one row of logits
    per step by the batch loop. The rules are generation.GenerationStream's: the last token
    sampled is never run; EOS ends without being kept; a stop string ends after the token
    that completes it."""

    def __init__(self, model: Model, config: GenerationConfig, ids: list[int],
                 sampler: Sampler, eos: frozenset[int], decoder: StreamDecoder | None,
                 logprobs: int | None, mode: LogprobsMode) -> None:
        self.config = config
        self.ids = ids
        self.sampler = sampler
        self.eos = eos
        self.decoder = decoder
        self.stops = StopMatcher(config.stop_strings)
        self.budget = config.max_new_tokens or model.config.n_positions + 1 - len(ids)
        self.new: list[int] = []
        self.pieces: list[str] = []
        self.finish: FinishReason = "length"
        self.done = False
        self.logprobs_k = logprobs
        self.mode = mode
        self.logprobs: list[TokenLogprob] = []
        self.prefill = 0.0
        self.decode = 0.0
        self.steps = 0
        self.sequence: ModelSequence | None = None
        self.result: GenerationResult | None = None

    def take(self, logits: np.ndarray[Any, Any]) -> str:
        """Sample from logits; returns the text piece it completes ('' for none)."""
        # The processed row before sample() observes the token (the penalties change).
        processed = logits
        if self.logprobs_k is not None and self.mode == "processed":
            processed = self.sampler.filtered_logits(logits)
        token = self.sampler.sample(logits)
        if token in self.eos:
            self.finish, self.done = "eos", True
            return ""
        if self.logprobs_k is not None:
            self.logprobs.append(token_logprob(processed, token, self.logprobs_k))
        self.new.append(token)
        self.sampler.observe(token)
        piece = ""
        if self.decoder is not None:
            piece = self.stops.feed(self.decoder.push(token))
            if self.stops.matched is not None:
                self.finish, self.done = "stop", True
        if len(self.new) == self.budget:
            self.done = True
        return piece

    def close(self) -> str:
        """The text held back (a split character, a possible stop string's start) and the
        result."""
        tail = ""
        if self.decoder is not None and self.finish != "stop":
            tail = self.stops.feed(self.decoder.flush())
            if self.stops.matched is not None:
                self.finish = "stop"
            else:
                tail += self.stops.flush()
        self.result = GenerationResult(
            text="".join(self.pieces) + tail,
            token_ids=self.new,
            finish_reason=self.finish,
            prompt_tokens=len(self.ids),
            prefill_seconds=self.prefill,
            decode_seconds=self.decode,
            decode_steps=self.steps,
            stop=self.stops.matched,
            logprobs=None if self.logprobs_k is None else self.logprobs,
        )
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
        vocab_size = model.config.vocab_size
        self._slots: list[_Slot] = []
        # Every prompt and option is checked here, before anything runs: a bad prompt raises
        # naming its index and no other prompt has started.
        for i, (prompt, config) in enumerate(zip(prompts, configs, strict=True)):
            if config.stop_strings:
                model.require_tokenizer("stop strings need one")
            try:
                ids = prompt_ids(model, prompt, config)
            except ValueError as exc:
                raise ValueError(f"prompts[{i}]: {exc}") from None
            eos = frozenset() if config.ignore_eos else frozenset(
                t for t in model.eos_token_ids() if t < vocab_size)
            banned = [] if model.tokenizer is None else [
                t for t in model.tokenizer.unknown_ids(vocab_size) if t not in eos]
            for k in range(n):
                sample = replace(config, seed=sample_seed(config.seed, k))
                # Text whenever there is a tokenizer, as generation.py: generate's too.
                tok = model.tokenizer
                decoder = tok.stream_decoder() if tok is not None else None
                sampler = Sampler(sample, vocab_size, ids, banned=banned)
                self._slots.append(_Slot(model, sample, ids, sampler, eos, decoder,
                                         logprobs, logprobs_mode))
        self.results: list[GenerationResult] | None = None
        self._listed = True
        self._steps = self._run()

    def __iter__(self) -> Iterator[tuple[int, str]]:
        return self

    def __next__(self) -> tuple[int, str]:
        return next(self._steps)

    def close(self) -> None:
        """Stops early; `results` stays None and every sequence's cache goes back."""
        self._steps.close()

    def _run(self) -> Generator[tuple[int, str], None, None]:
        from .engine import step

        model, n, slots = self.model, self.n, self._slots
        firsts = slots[::n]
        try:
            for slot in firsts:
                # The cache holds the prompt and all but the last new token.
                slot.sequence = model.new_sequence(max(1, len(slot.ids) + slot.budget - 1))
            started = time.perf_counter()
            out = step([s.sequence for s in firsts if s.sequence], [s.ids for s in firsts])
            rows = [o[0] for o in out.outputs]
            prefill = time.perf_counter() - started
            live: list[tuple[int, _Slot, np.ndarray[Any, Any]]] = []
            for p, first in enumerate(firsts):
                assert first.sequence is not None
                for k in range(n):
                    slot = slots[p * n + k]
                    if k:  # the samples share the prompt's keys and values
                        slot.sequence = first.sequence.fork()
                    slot.prefill = prefill
                    live.append((p * n + k, slot, rows[p]))
            while live:
                started = time.perf_counter()
                pieces = [(i, s, s.take(row)) for i, s, row in live]
                spent = time.perf_counter() - started
                for i, s, piece in pieces:
                    if piece:
                        s.pieces.append(piece)
                        yield i, piece
                for i, s, _ in pieces:
                    s.decode += spent
                    if s.done and (tail := s.close()):
                        yield i, tail
                going = [(i, s) for i, s, _ in pieces if not s.done]
                if not going:
                    break
                started = time.perf_counter()
                out = step([s.sequence for _, s in going if s.sequence],
                           [[s.new[-1]] for _, s in going])
                spent = time.perf_counter() - started
                live = []
                for (i, s), o in zip(going, out.outputs, strict=True):
                    s.steps += 1
                    s.decode += spent
                    live.append((i, s, o[0]))
        finally:
            for slot in slots:
                if slot.sequence is not None:
                    slot.sequence.close()
        self.results = [s.result for s in slots if s.result is not None]

    @property
    def listed(self) -> bool:
        """Whether generate returns the list (a batch or n > 1) or its one result."""
        return self._listed


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
    from .generation import resolve

    n = options.pop("n", 1)
    logprobs = options.pop("logprobs", None)
    mode = options.pop("logprobs_mode", "raw")
    check_batch_options(n, logprobs, mode)
    if options.pop("sequence", None) is not None:
        raise ValueError("sequence continues one prompt; pass it without a list of prompts, "
                         "n or logprobs")
    listed = is_batch(prompt) or n > 1
    prompts: list[Any] = list(prompt) if is_batch(prompt) else [prompt]
    seeds = prompt_seeds(options.pop("seed", None), len(prompts))
    configs = [resolve(model, options if s is None else {**options, "seed": s}) for s in seeds]
    run = BatchStream(model, prompts, configs, n=n, logprobs=logprobs, logprobs_mode=mode,
                      text=text)
    run._listed = listed
    return run
