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
    from ..generation.loop import new_token_budget, prompt_ids, resolve

    tokenizer = model.require_tokenizer(f"{model.path} cannot generate text")
    ids = [tokenizer.encode(p) for p in prompts]
    context = model.config.n_positions
    if not options.get("truncate"):
        for line, prompt in enumerate(ids, 1):
            if len(prompt) > context:
                raise CliError(f"--prompts-file prompt {line} has {len(prompt)} tokens, more "
                               f"than the model's context of {context}; shorten it or pass "
                               "--truncate")
    # The library caps each prompt's new tokens to the room it leaves (finish reason
    # "length"); say so where -n is more than the longest prompt leaves.
    config = resolve(model, options)
    n = config.max_new_tokens
    rooms = [new_token_budget(model, prompt_ids(model, one, config), config) for one in ids]
    if n is not None and n > min(rooms):
        print(f"gpt2cpu: --max-new-tokens {n} lowered to {min(rooms)} for the longest prompt, "
              f"what the model's context of {context} tokens leaves after it", file=sys.stderr)
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
