"""OpenAI's response shapes, built from the engine's events: whole responses and the
chunks of a stream, for completions and chat."""

from __future__ import annotations

import codecs
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .job import Delta, Finished

if TYPE_CHECKING:
    from ..generation.decoding import TokenLogprob
    from ..tokenizer.tokenizer import Tokenizer

# OpenAI has no "eos": the model ending its text is a "stop".
FINISH = {"length": "length", "stop": "stop", "eos": "stop"}


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def token_text(tokenizer: Tokenizer | None, token: int) -> str:
    """A token on its own; a piece of a character shows as U+FFFD (OpenAI's `bytes` field
    of chat logprobs has the exact bytes)."""
    return tokenizer.decode([token]) if tokenizer is not None else ""


def token_bytes(tokenizer: Tokenizer | None, token: int) -> list[int]:
    return list(tokenizer.token_bytes(token)) if tokenizer is not None else []


@dataclass
class Choice:
    """What one choice has produced so far."""

    text: list[str] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob | None] = field(default_factory=list)
    finished: Finished | None = None
    prompt_logprobs: list[TokenLogprob | None] | None = None  # echo with logprobs

    def add(self, delta: Delta) -> None:
        self.text.append(delta.text)
        self.tokens += delta.tokens
        self.logprobs += delta.logprobs


@dataclass
class TextOffsets:
    """Completion logprobs' text_offset: where each token starts in the choice's text, the
    length of what the tokens before it decode to (as OpenAI and vLLM count), so that a
    character split over several tokens counts once: a token that starts inside a character
    gets the offset where that character starts. No offset is past the end of the text (a
    stop string cut from it may have begun in an earlier token)."""

    position: int = 0  # where the next token starts
    shown: int = 0  # the length of the choice's text so far
    _decoder: codecs.IncrementalDecoder = field(
        init=False, repr=False,
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace"))

    def completion_logprobs(self, tokenizer: Tokenizer | None, tokens: list[int],
                            scores: list[TokenLogprob | None], text: str) -> dict[str, Any]:
        """The logprobs of `tokens`, which come with `text` (the choice's text grows by it)."""
        self.shown += len(text)
        offsets = []
        for token in tokens:
            offsets.append(min(self.position, self.shown))
            if tokenizer is not None:
                # Only completed characters count: a partial one's bytes wait in the decoder.
                self.position += len(self._decoder.decode(tokenizer.token_bytes(token)))
        return {
            "tokens": [token_text(tokenizer, t) for t in tokens],
            "token_logprobs": [None if s is None else s.logprob for s in scores],
            "top_logprobs": [
                None if s is None else {token_text(tokenizer, i): v for i, v in s.top}
                for s in scores
            ],
            "text_offset": offsets,
        }


def chat_logprobs(tokenizer: Tokenizer | None, tokens: list[int],
                  scores: list[TokenLogprob | None]) -> dict[str, Any]:
    content = []
    for token, score in zip(tokens, scores, strict=True):
        if score is None:
            continue
        content.append({
            "token": token_text(tokenizer, token),
            "logprob": score.logprob,
            "bytes": token_bytes(tokenizer, token),
            "top_logprobs": [
                {"token": token_text(tokenizer, i), "logprob": v,
                 "bytes": token_bytes(tokenizer, i)}
                for i, v in score.top
            ],
        })
    return {"content": content}


def usage(prompts: list[list[int]], choices: list[Choice], n: int) -> dict[str, Any]:
    """Each prompt counts once however many choices share it (as OpenAI counts), and so do
    its cached tokens (the most any of its choices found)."""
    completion = sum(c.finished.completion_tokens for c in choices if c.finished)
    cached = 0
    for p in range(len(prompts)):
        found = [c.finished.cached_tokens for c in choices[p * n : (p + 1) * n] if c.finished]
        cached += max(found, default=0)
    prompt = sum(len(ids) for ids in prompts)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def envelope(kind: str, request_id: str, model: str, created: int | None = None
             ) -> dict[str, Any]:
    return {"id": request_id, "object": kind, "created": created or int(time.time()),
            "model": model}
