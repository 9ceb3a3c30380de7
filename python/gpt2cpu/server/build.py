"""From a validated request to the engine's jobs: prompts to token ids, options to the
library's GenerationConfig (so generation_config.json defaults and the library's checks
apply exactly as in `Model.generate`), one Job per choice."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..engine.ids import as_ids
from ..generation.loop import GenerationConfig, new_token_budget, prompt_ids, resolve
from ..generation.sampling import sample_seed
from .errors import ApiError
from .job import Event, Job

if TYPE_CHECKING:
    from ..model import Model
    from .schemas import CompletionRequest, _Sampling


def options(request: _Sampling, vocab_size: int) -> dict[str, Any]:
    """The request's sampling options under the library's names; only those it set, so
    that the model's generation_config.json supplies the rest, as with `generate`."""
    out: dict[str, Any] = {}
    for name in ("temperature", "top_p", "top_k", "min_p", "repetition_penalty",
                 "presence_penalty", "frequency_penalty", "seed", "stop"):
        value = getattr(request, name)
        if value is not None:
            out[name] = value
    if request.ignore_eos:
        out["ignore_eos"] = True
    if request.logit_bias:
        bias: dict[int, float] = {}
        for key, value in request.logit_bias.items():
            try:
                token = int(key)
            except ValueError:
                raise ApiError(400, f"logit_bias keys must be token ids, got {key!r}",
                               "logit_bias") from None
            # Here, not in the engine: a stream's status line would already be sent.
            if not 0 <= token < vocab_size:
                raise ApiError(400, f"logit_bias key {key} is outside the vocabulary "
                               f"[0, {vocab_size})", "logit_bias")
            bias[token] = value
        out["logit_bias"] = bias
    return out


def config_for(model: Model, request: _Sampling, max_tokens: int | None,
               extra_stop: tuple[str, ...] = ()) -> GenerationConfig:
    given = options(request, model.config.vocab_size)
    if extra_stop:
        stop = given.get("stop")
        mine = [stop] if isinstance(stop, str) else list(stop or [])
        given["stop"] = [*mine, *extra_stop]
    # max_tokens 0 runs no generation step; the library wants >= 1 for its own checks.
    given["max_new_tokens"] = max_tokens if max_tokens != 0 else 1
    try:
        return resolve(model, given)
    except (ValueError, TypeError) as exc:
        raise ApiError(400, str(exc), _param_of(str(exc))) from None


def _param_of(message: str) -> str | None:
    first = message.split(" ", 1)[0].split("[", 1)[0]
    names = {"temperature", "top_p", "top_k", "min_p", "repetition_penalty", "seed", "stop",
             "presence_penalty", "frequency_penalty", "logit_bias", "max_new_tokens"}
    if first == "max_new_tokens":
        return "max_tokens"
    return first if first in names else None


def completion_prompts(request: CompletionRequest) -> list[list[int] | str]:
    """OpenAI's four prompt forms (a string, strings, ids, lists of ids) as a list."""
    prompt: Any = request.prompt
    if isinstance(prompt, str) or isinstance(prompt[0], int):
        return [prompt]
    return list(prompt)


def encode(model: Model, prompt: list[int] | str, config: GenerationConfig,
           max_tokens: int | None, param: str) -> list[int]:
    """The prompt's ids, checked against the vocabulary and the context (400 otherwise)."""
    context = model.config.n_positions
    try:
        if max_tokens == 0:  # scoring only: the prompt may fill the whole context
            if isinstance(prompt, str):
                ids = model.require_tokenizer("send token ids").encode(prompt)
            else:
                ids = as_ids(prompt, model.config.vocab_size, "prompt").tolist()
            if not ids:
                raise ValueError("an empty prompt has nothing to score")
            if len(ids) > context:
                raise ValueError(f"the prompt has {len(ids)} tokens, more than the model's "
                                 f"context of {context} tokens")
            return ids
        return prompt_ids(model, prompt, config)
    except (ValueError, TypeError) as exc:
        code = "context_length_exceeded" if "context" in str(exc) else "invalid_value"
        # The library's advice names its truncate=True, which requests here do not have.
        message = str(exc).replace(" or pass truncate=True", "")
        raise ApiError(400, message, param, code) from None


def jobs_for(
    prompts: list[list[int]],
    config: GenerationConfig,
    n: int,
    max_tokens: int | None,
    model: Model,
    emit: Callable[[int, Event], None],
    logprobs: int | None,
    prompt_logprobs: bool,
) -> list[Job]:
    """n jobs per prompt, choice index prompt * n + k, each with its own seed."""
    jobs = []
    limited = dataclasses.replace(config, max_new_tokens=max_tokens or None)
    for p, ids in enumerate(prompts):
        # As everywhere: max_tokens capped to the room the prompt leaves ("length"); 0
        # runs the prompt only (echo's scoring).
        budget = 0 if max_tokens == 0 else new_token_budget(model, ids, limited)
        for k in range(n):
            index = p * n + k
            # The library's one derivation: choice k is what generate(n=) gives as sample k.
            seeded = dataclasses.replace(config, seed=sample_seed(config.seed, k))
            jobs.append(Job(
                prompt=ids, config=seeded, max_tokens=budget,
                emit=lambda event, i=index: emit(i, event),  # type: ignore[misc]
                logprobs=logprobs, prompt_logprobs=prompt_logprobs,
            ))
    return jobs


def embedding_inputs(model: Model, given: str | list[str] | list[int] | list[list[int]]
                     ) -> list[list[int]]:
    """Each input's token ids, checked (400 naming `input`)."""
    items: list[Any] = [given] if isinstance(given, str) else list(given)
    if items and isinstance(items[0], int):
        items = [items]
    out = []
    for item in items:
        try:
            if isinstance(item, str):
                ids = model.require_tokenizer("send token ids").encode(item)
            else:
                ids = as_ids(item, model.config.vocab_size, "input").tolist()
        except (ValueError, TypeError) as exc:
            raise ApiError(400, str(exc), "input") from None
        if not 1 <= len(ids) <= model.config.n_positions:
            raise ApiError(400, f"each input must hold 1 to {model.config.n_positions} tokens, "
                           f"got {len(ids)}", "input", "context_length_exceeded")
        out.append(ids)
    return out
