"""`gpt2cpu generate --prompts-file FILE`: every prompt of a file generated together (one
batched step per token), one JSON line per prompt on stdout, in the file's order."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from . import CliError
from .common import with_flag
from .inputs import write_jsonl

if TYPE_CHECKING:
    from ..model import Model


def run_batch(model: Model, prompts: list[str], options: dict[str, Any],
              flags: dict[str, str]) -> int:
    from ..generation import resolve

    tokenizer = model.require_tokenizer(f"{model.path} cannot generate text")
    ids = [tokenizer.encode(p) for p in prompts]
    context = model.config.n_positions
    if not options.get("truncate"):
        for line, prompt in enumerate(ids, 1):
            if len(prompt) > context:
                raise CliError(f"--prompts-file prompt {line} has {len(prompt)} tokens, more "
                               f"than the model's context of {context}; shorten it or pass "
                               "--truncate")
    # One max_new_tokens serves the batch: lowered to what the longest prompt leaves (the
    # last new token is never run, hence + 1), as one prompt's -n is.
    n = resolve(model, options).max_new_tokens
    room = context if options.get("truncate") else context + 1 - max(1, *map(len, ids))
    if n is not None and n > room:
        print(f"gpt2cpu: --max-new-tokens {n} lowered to {room}, what the model's context of "
              f"{context} tokens leaves after the longest prompt", file=sys.stderr)
        options["max_new_tokens"] = room
    try:
        results = model.generate(ids, **options)
        assert isinstance(results, list)  # a list of prompts
    except ValueError as exc:
        raise CliError(with_flag(str(exc), flags)) from None
    write_jsonl([
        {"index": i, "prompt": p, "text": r.text, "token_ids": r.token_ids,
         "finish_reason": r.finish_reason, "prompt_tokens": r.prompt_tokens}
        for i, (p, r) in enumerate(zip(prompts, results, strict=True))
    ])
    return 0
