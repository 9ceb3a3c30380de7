"""`gpt2cpu generate --prompts-file FILE`: every prompt of a file generated together (one
batched step per token), one JSON line per prompt on stdout, in the file's order."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import CliError
from .common import fit_to_context, with_flag
from .inputs import InputTexts, write_jsonl

if TYPE_CHECKING:
    from ..model import Model


def run_batch(model: Model, inputs: InputTexts, options: dict[str, Any],
              flags: dict[str, str]) -> int:
    tokenizer = model.require_tokenizer(f"{model.path} cannot generate text")
    prompts = inputs.texts
    ids = [tokenizer.encode(p) for p in prompts]
    names = [f"--prompts-file {inputs.where(i)}" for i in range(len(prompts))]
    fit_to_context(model, ids, options, flags, names)
    try:
        results = model.generate(ids, **options)
        assert isinstance(results, list)  # a list of prompts
    except ValueError as exc:
        raise CliError(with_flag(inputs.reword(str(exc), "prompts"), flags)) from None
    write_jsonl([
        {"index": i, "prompt": p, "text": r.text, "token_ids": r.token_ids,
         "finish_reason": r.finish_reason, "prompt_tokens": r.prompt_tokens}
        for i, (p, r) in enumerate(zip(prompts, results, strict=True))
    ])
    return 0
