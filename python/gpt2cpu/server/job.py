"""One choice of one request as the engine runs it: its prompt, its sequence, and the
library's own sampler, stop matcher and streaming decoder, so that a served completion is
token for token what `Model.generate` gives at the same seed.

The engine calls `next_tokens` for what to run, then `accept` with the logits the step
returned; events go to the HTTP side through `emit`, which must be thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..generation.loop import FinishReason, GenerationConfig
from ..generation.sampling import Sampler
from ..generation.stopping import StopMatcher
from ..tasks.logprobs import TokenLogprob, sequence_logprobs, token_logprob

if TYPE_CHECKING:
    from ..model import Model, Sequence
    from ..tokenizer.streaming import StreamDecoder


@dataclass(frozen=True)
class Delta:
    """New output of a choice: text now safe to show (never part of a stop string nor of
    a character), and the tokens sampled since the last delta with their log-probabilities
    when asked for (else logprob entries are None)."""

    text: str
    tokens: list[int]
    logprobs: list[TokenLogprob | None]


@dataclass(frozen=True)
class PromptScored:
    """The prompt's own log-probabilities (echo): None for the first token."""

    logprobs: list[TokenLogprob | None]


@dataclass(frozen=True)
class Finished:
    reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int


@dataclass(frozen=True)
class Failed:
    """The choice could not run: status is the HTTP status to answer (400 for a request
    the engine found bad late, such as a logit_bias that bans every token)."""

    status: int
    message: str


Event = Delta | PromptScored | Finished | Failed


@dataclass
class Job:
    """What a choice asks for. `max_tokens` 0 runs the prompt only (echo and scoring)."""

    prompt: list[int]
    config: GenerationConfig
    max_tokens: int
    emit: Callable[[Event], None]
    logprobs: int | None = None  # the number of alternatives; None: no log-probabilities
    prompt_logprobs: bool = False  # echo with logprobs: score the prompt's own tokens
    submitted: float = field(default_factory=time.perf_counter)
    cancelled: threading.Event = field(default_factory=threading.Event)

    # Filled in by the engine.
    sequence: Sequence | None = None
    prefilled: int = 0  # prompt tokens in the sequence so far
    cached_tokens: int = 0
    first_token_at: float | None = None
    last_token_at: float | None = None
    _state: _Running | None = None

    @property
    def capacity(self) -> int:
        """Positions the sequence needs: the prompt and every new token but the last, which
        is sampled and never run (as in the library)."""
        return max(1, len(self.prompt) + max(0, self.max_tokens - 1))

    def start(self, model: Model) -> None:
        seen = self.prompt
        tokenizer = model.tokenizer
        self._state = _Running(
            sampler=Sampler(self.config, model.config.vocab_size, seen),
            decoder=tokenizer.stream_decoder() if tokenizer else None,
            stops=StopMatcher(self.config.stop_strings),
            eos=frozenset() if self.config.ignore_eos else model.eos_token_ids(),
        )

    @property
    def prefilling(self) -> bool:
        return self.prefilled < len(self.prompt)

    def next_tokens(self, budget: int) -> tuple[list[int], int]:
        """The tokens to run next and the number of logit rows wanted: a chunk of at most
        `budget` prompt tokens, else the token sampled last."""
        state = self._state
        assert state is not None
        if self.prefilling:
            chunk = self.prompt[self.prefilled : self.prefilled + max(1, budget)]
            return chunk, len(chunk) if self.prompt_logprobs else 1
        assert state.pending is not None
        return [state.pending], 1

    def accept(self, ran: list[int], logits: np.ndarray[Any, Any]) -> bool:
        """Takes the step's logits (rows, vocab) for the tokens `ran`; returns True when the
        choice is finished (its final event sent)."""
        state = self._state
        assert state is not None
        if self.prefilling:
            if self.prompt_logprobs:
                self._score_prompt_chunk(ran, logits)
            self.prefilled += len(ran)
            if self.prefilling:
                return False
            if self.prompt_logprobs:
                self.emit(PromptScored(state.prompt_scores))
            if self.max_tokens == 0:
                return self._finish("length")
        else:
            state.pending = None
        return self._sample(logits[-1])

    def _score_prompt_chunk(self, ran: list[int], logits: np.ndarray[Any, Any]) -> None:
        state = self._state
        assert state is not None
        start = self.prefilled
        if start == 0:
            state.prompt_scores.append(None)
        # Row i predicts prompt[start + i + 1]; the chunk's last row, the next chunk's first.
        upto = min(len(ran), len(self.prompt) - start - 1)
        scored = sequence_logprobs(logits[: upto + 1], self.prompt[start : start + upto + 1],
                                   self.logprobs or 0)
        state.prompt_scores.extend(scored)

    def _sample(self, row: np.ndarray[Any, Any]) -> bool:
        state = self._state
        assert state is not None
        token = state.sampler.sample(row)
        now = time.perf_counter()
        if self.first_token_at is None:
            self.first_token_at = now
        self.last_token_at = now
        if token in state.eos:
            return self._finish("eos")
        state.new.append(token)
        state.sampler.observe(token)
        scored = None if self.logprobs is None else token_logprob(row, token, self.logprobs)
        state.unsent_tokens.append(token)
        state.unsent_logprobs.append(scored)
        if state.decoder is not None:
            piece = state.stops.feed(state.decoder.push(token))
            if piece or state.stops.matched is not None:
                self._send(piece)
            if state.stops.matched is not None:
                return self._finish("stop")
        else:
            self._send("")
        if len(state.new) >= self.max_tokens:
            return self._finish("length")
        state.pending = token
        return False

    def _send(self, text: str) -> None:
        state = self._state
        assert state is not None
        if text or state.unsent_tokens:
            self.emit(Delta(text, state.unsent_tokens, state.unsent_logprobs))
            state.unsent_tokens, state.unsent_logprobs = [], []

    def _finish(self, reason: FinishReason) -> bool:
        state = self._state
        assert state is not None
        if state.decoder is not None and reason != "stop":
            # As the library ends a stream: the decoder's held bytes may complete a stop.
            tail = state.stops.feed(state.decoder.flush())
            if state.stops.matched is not None:
                reason = "stop"
            else:
                tail += state.stops.flush()
            self._send(tail)
        else:
            self._send("")
        self.emit(Finished(reason, len(self.prompt), len(state.new), self.cached_tokens))
        return True

    def fail(self, status: int, message: str) -> None:
        self.emit(Failed(status, message))

    @property
    def generated(self) -> list[int]:
        return [] if self._state is None else self._state.new


@dataclass
class _Running:
    sampler: Sampler
    decoder: StreamDecoder | None
    stops: StopMatcher
    eos: frozenset[int]
    new: list[int] = field(default_factory=list)
    pending: int | None = None  # sampled, not yet run
    prompt_scores: list[TokenLogprob | None] = field(default_factory=list)
    unsent_tokens: list[int] = field(default_factory=list)
    unsent_logprobs: list[TokenLogprob | None] = field(default_factory=list)
