"""`gpt2cpu generate`: continue a prompt, streaming the text to stdout."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from . import CliError
from .common import add_dtype_argument, add_model_argument, model_directory, read_text_argument

DESCRIPTION = """\
Continue PROMPT with the model, printing the new text to stdout as it is produced and a
one-line summary (prompt tokens, new tokens, prefill and decode speed) to stderr.
Sampling follows Hugging Face (temperature, top-k, top-p, min-p, repetition penalty) and
OpenAI (presence and frequency penalties); --temperature 0 is greedy."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="generate text from a prompt",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("prompt", metavar="PROMPT", help='the prompt text; "-" reads it from stdin')
    add_model_argument(parser)
    add_dtype_argument(parser)
    parser.add_argument("--threads", type=int, default=None,
                        help="compute threads (default: $GPT2CPU_NUM_THREADS, else all cores)")
    length = parser.add_argument_group("length and stopping")
    length.add_argument("-n", "--max-new-tokens", type=int, default=64, metavar="N",
                        help="generate at most N tokens (default: 64)")
    length.add_argument("--stop", action="append", default=[], metavar="TEXT",
                        help="end the output just before TEXT (repeatable)")
    length.add_argument("--ignore-eos", action="store_true",
                        help="keep going after the model's end-of-text token")
    length.add_argument("--truncate", action="store_true",
                        help="drop the prompt's oldest tokens when it does not fit the context")
    sampling = parser.add_argument_group("sampling")
    sampling.add_argument("-t", "--temperature", type=float, default=1.0,
                          help="divide logits by this; 0 picks the most likely token (default: 1)")
    sampling.add_argument("--greedy", action="store_true", help="same as --temperature 0")
    sampling.add_argument("--top-k", type=int, default=0, metavar="K",
                          help="sample from the K most likely tokens (default: 0, all)")
    sampling.add_argument("--top-p", type=float, default=1.0, metavar="P",
                          help="sample from the top tokens holding probability P (default: 1)")
    sampling.add_argument("--min-p", type=float, default=0.0, metavar="P",
                          help="drop tokens less likely than P times the top token (default: 0)")
    sampling.add_argument("--repetition-penalty", type=float, default=1.0, metavar="X",
                          help="Hugging Face repetition penalty, > 0; 1 is off (default: 1)")
    sampling.add_argument("--presence-penalty", type=float, default=0.0, metavar="X",
                          help="OpenAI presence penalty in [-2, 2] (default: 0)")
    sampling.add_argument("--frequency-penalty", type=float, default=0.0, metavar="X",
                          help="OpenAI frequency penalty in [-2, 2] (default: 0)")
    sampling.add_argument("--logit-bias", action="append", default=[], metavar="ID=BIAS",
                          help="add BIAS to token ID's logit; -inf bans it (repeatable)")
    sampling.add_argument("-s", "--seed", type=int, default=None,
                          help="random seed: the same seed gives the same text (default: random)")
    parser.add_argument("-q", "--quiet", action="store_true", help="do not print the summary line")
    parser.set_defaults(func=run)


def parse_logit_bias(items: list[str]) -> dict[int, float] | None:
    if not items:
        return None
    bias: dict[int, float] = {}
    for item in items:
        token, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            bias[int(token)] = float(value)
        except ValueError:
            raise CliError(f"--logit-bias takes ID=BIAS, like 50256=-inf, got {item!r}") from None
    return bias


def _rate(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.1f}"


def run(args: argparse.Namespace) -> int:
    from ..generation import GenerationConfig, stream
    from ..model import Model

    config = GenerationConfig(
        max_new_tokens=args.max_new_tokens,
        temperature=0.0 if args.greedy else args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        min_p=args.min_p,
        repetition_penalty=args.repetition_penalty,
        presence_penalty=args.presence_penalty,
        frequency_penalty=args.frequency_penalty,
        logit_bias=parse_logit_bias(args.logit_bias),
        stop=args.stop,
        ignore_eos=args.ignore_eos,
        seed=args.seed,
        truncate=args.truncate,
    )
    prompt = read_text_argument(args.prompt)
    model = Model.from_pretrained(model_directory(args), threads=args.threads, dtype=args.dtype)
    if model.tokenizer is None:
        raise CliError(f"{model.path}: the model directory has no tokenizer files")
    pieces = stream(model, prompt, config)
    out = sys.stdout
    ends_with_newline = True
    for piece in pieces:
        out.write(piece)
        out.flush()
        ends_with_newline = piece.endswith("\n")
    result = pieces.result
    assert result is not None
    if not ends_with_newline and out.isatty():
        out.write("\n")  # keep the shell prompt off the text; piped output stays exact
        out.flush()
    if not args.quiet:
        print(
            f"gpt2cpu: {result.prompt_tokens} prompt tokens, {len(result.token_ids)} new tokens "
            f"({result.finish_reason}); prefill {_rate(result.prefill_tokens_per_second)} tok/s, "
            f"decode {_rate(result.decode_tokens_per_second)} tok/s",
            file=sys.stderr,
        )
    return 0
