"""One choice of one request as the engine runs it: its prompt, its sequence, and the
library's own per-sample rules (`decoding.Decoding`: sampler, banned ids, EOS, stop strings,
streaming decoder, budget), so that a served completion is token for token what
`Model.generate` gives at the same seed.

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

from ..generation.decoding import Decoding, TokenLogprob, token_logprob
from ..generation.loop import FinishReason, GenerationConfig

if TYPE_CHECKING:
    from ..model import Model, Sequence


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
        self._state = _Running(Decoding(model, self.config, self.prompt, self.max_tokens,
                                        logprobs=self.logprobs))

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
        # The token sampled last, not run yet (Decoding's rule: the caller runs new[-1]).
        return [state.decoding.new[-1]], 1

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
        return self._sample(logits[-1])

    def _score_prompt_chunk(self, ran: list[int], logits: np.ndarray[Any, Any]) -> None:
        state = self._state
        assert state is not None
        start = self.prefilled
        if start == 0:
            state.prompt_scores.append(None)
        # Row i predicts prompt[start + i + 1]; the chunk's last row, the next chunk's first.
        upto = min(len(ran), len(self.prompt) - start - 1)
        state.prompt_scores.extend(
            token_logprob(logits[i], self.prompt[start + i + 1], self.logprobs or 0)
            for i in range(upto)
        )

    def _sample(self, row: np.ndarray[Any, Any]) -> bool:
        state = self._state
        assert state is not None
        decoding = state.decoding
        piece = decoding.take(row)
        now = time.perf_counter()
        if self.first_token_at is None:
            self.first_token_at = now
        self.last_token_at = now
        if decoding.done:
            self._send(piece + decoding.flush())
            self.emit(Finished(decoding.finish, len(self.prompt), len(decoding.new),
                               self.cached_tokens))
            return True
        # Tokens whose text is held back (part of a character or of a possible stop) go
        # out with the text that completes them; without a tokenizer, each one at once.
        if piece or decoding.decoder is None:
            self._send(piece)
        return False

    def _finish(self, reason: FinishReason) -> bool:
        """Ends a choice that sampled nothing (max_tokens 0)."""
        self.emit(Finished(reason, len(self.prompt), 0, self.cached_tokens))
        return True

    def _send(self, text: str) -> None:
        state = self._state
        assert state is not None
        decoding = state.decoding
        new = decoding.new[state.sent :]
        if text or new:
            scores: list[TokenLogprob | None] = (
                [None] * len(new) if decoding.logprobs_k is None
                else list(decoding.logprobs[state.sent :])
            )
            self.emit(Delta(text, new, scores))
            state.sent = len(decoding.new)

    def fail(self, status: int, message: str) -> None:
        self.emit(Failed(status, message))

    @property
    def generated(self) -> list[int]:
        return [] if self._state is None else self._state.decoding.new


@dataclass
class _Running:
    decoding: Decoding
    sent: int = 0  # tokens of decoding.new already in a Delta
    prompt_scores: list[TokenLogprob | None] = field(default_factory=list)
