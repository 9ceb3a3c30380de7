"""One sample's rules, token by token: sample from a row of logits, end at the EOS token,
a stop string or the token budget, decode the text, record log-probabilities. Both loops
feed it: loop.GenerationStream (one prompt, or a sequence continued) and
batch.BatchStream (many prompts and samples in batched steps), so the rules live
here once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..tasks.logprobs import log_softmax
from .sampling import Sampler
from .stopping import StopMatcher

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ..model import Model
    from .loop import FinishReason, GenerationConfig, GenerationResult

LogprobsMode = Literal["raw", "processed"]
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


def _best(lp: np.ndarray[Any, Any], k: int) -> np.ndarray[Any, Any]:
    """The ids of the k largest values of lp, of equal ones the lowest ids: argpartition
    alone picks any of the values equal to the k-th (many, where a processed distribution
    leaves -inf)."""
    if k >= lp.size:
        return np.arange(lp.size)
    key = np.where(np.isnan(lp), -np.inf, lp)
    kth = np.partition(key, key.size - k)[key.size - k]
    above = np.flatnonzero(key > kth)
    return np.concatenate((above, np.flatnonzero(key == kth)[: k - above.size]))


def token_logprob(row: np.ndarray[Any, Any], token: int, k: int) -> TokenLogprob:
    """token's log-probability under the distribution of row (logits), and row's k best."""
    lp = log_softmax(row)
    if k:
        best = _best(lp, k)
        best = best[np.lexsort((best, -lp[best]))]  # most likely first, ties by id
        top = [(int(i), float(lp[i])) for i in best]
    else:
        top = []
    return TokenLogprob(token, float(lp[token]), top)


class Decoding:
    """The state of one sample: its sampler, stop matcher, text decoder, new tokens and
    log-probabilities. take() consumes the logits of a step; the caller runs new[-1] next
    unless done. The rules are transformers' and the API's: the last token sampled is never
    run; the EOS token ends without being kept; a stop string ends after the token that
    completes it and is cut from the text; budget tokens at most.

    seen: the ids the repetition penalty counts as prompt (a continued sequence's too).
    """

    def __init__(self, model: Model, config: GenerationConfig, seen: Iterable[int],
                 budget: int, *, logprobs: int | None = None,
                 logprobs_mode: LogprobsMode = "raw") -> None:
        vocab_size = model.config.vocab_size
        # The ids that end a generation, of those the model has (a tokenizer's may lie
        # beyond a small vocabulary).
        self.eos = frozenset() if config.ignore_eos else frozenset(
            i for i in model.eos_token_ids() if i < vocab_size
        )
        # A vocabulary padded past the tokenizer's (nanoGPT's 50304 for GPT-2's 50257) has
        # ids no text stands for: they are never sampled, but for the EOS that ends the text.
        banned = [] if model.tokenizer is None else [
            i for i in model.tokenizer.unknown_ids(vocab_size) if i not in self.eos
        ]
        # Built here rather than on the first step so that every bad argument raises now.
        self.sampler = Sampler(config, vocab_size, seen, banned=banned)
        self.decoder = model.tokenizer.stream_decoder() if model.tokenizer else None
        self.stops = StopMatcher(config.stop_strings)
        self.budget = budget
        self.new: list[int] = []
        self.pieces: list[str] = []
        self.finish: FinishReason = "length"
        self.done = False
        self.logprobs_k = logprobs
        self.mode = logprobs_mode
        self.logprobs: list[TokenLogprob] = []

    def take(self, logits: np.ndarray[Any, Any], argmax: int | None = None) -> str:
        """Sample from one row of logits (argmax: its argmax, if known; see Sampler.sample);
        returns the text piece it completes ('' for none), which is also kept in pieces."""
        # The processed row before observe() (the penalties change with each token).
        processed = logits
        if self.logprobs_k is not None and self.mode == "processed":
            processed = self.sampler.filtered_logits(logits)
        token = self.sampler.sample(logits, argmax)
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
        if piece:
            self.pieces.append(piece)
        return piece

    @property
    def unrun(self) -> bool:
        """Whether the newest token is not in the sequence yet (never, after an EOS)."""
        return bool(self.new) and self.finish != "eos"

    def flush(self) -> str:
        """The text held back at the end (a split character, a possible stop string's
        start), also kept in pieces."""
        tail = ""
        if self.decoder is not None and self.finish != "stop":
            tail = self.stops.feed(self.decoder.flush())
            if self.stops.matched is not None:
                self.finish = "stop"
            else:
                tail += self.stops.flush()
        if tail:
            self.pieces.append(tail)
        return tail

    def result(self, prompt_tokens: int, prefill: float, decode: float,
               steps: int) -> GenerationResult:
        from .loop import GenerationResult

        return GenerationResult(
            text="".join(self.pieces),
            token_ids=self.new,
            finish_reason=self.finish,
            prompt_tokens=prompt_tokens,
            prefill_seconds=prefill,
            decode_seconds=decode,
            decode_steps=steps,
            stop=self.stops.matched,
            logprobs=None if self.logprobs_k is None else self.logprobs,
        )
