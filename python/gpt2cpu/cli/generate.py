"""`gpt2cpu generate`: continue a prompt, streaming the text to stdout."""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from typing import Any, TextIO

from ..generation.loop import GenerationStream
from ..generation.options import option_names
from . import CliError
from .common import (
    add_dtype_arguments,
    add_model_argument,
    add_threads_argument,
    fit_to_context,
    load_model,
    positive_int,
    read_text_argument,
    require_stdout,
    threads_of,
    with_flag,
)

DESCRIPTION = """\
Continue PROMPT with the model, printing the new text to stdout as it is produced and a
one-line summary (prompt tokens, new tokens, prefill and decode speed) to stderr.
Sampling follows Hugging Face (temperature, top-k, top-p, min-p, repetition penalty) and
OpenAI (presence and frequency penalties); --temperature 0 is greedy. An option not
given (-n or a sampling one) takes the model's generation_config.json value, if it has one.

-n larger than the context leaves after the prompt is lowered to what fits (with a
notice on stderr); -n max generates until the context is full. --stop understands the
backslash escapes \\n, \\t, \\r, \\\\ and \\xHH, as a shell passes them:
--stop "\\n\\n" stops at a blank line."""

# Each option's flag: its name with dashes, but for -n.
_FLAGS = {
    **{name: "--" + name.replace("_", "-") for name in option_names()},
    "max_new_tokens": "--max-new-tokens/-n",
}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|.?)", re.DOTALL)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="generate text from a prompt",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("prompt", metavar="PROMPT", nargs="?",
                        help='the prompt text; "-" reads it from stdin')
    parser.add_argument("--prompts-file", metavar="FILE", default=None,
                        help='generate from every prompt of FILE together (one a line, or '
                        'JSONL with a "prompt" field); prints one JSON line per prompt')
    add_model_argument(parser)
    add_dtype_arguments(parser)
    add_threads_argument(parser)
    add_generation_arguments(parser)
    parser.add_argument("-q", "--quiet", action="store_true", help="do not print the summary line")
    parser.set_defaults(func=run)


def add_generation_arguments(parser: argparse.ArgumentParser, *, seed: bool = True) -> None:
    """The length, stopping and sampling flags (options_of reads them back); seed=False
    leaves out --seed for a command whose seeds mean something else."""
    length = parser.add_argument_group("length and stopping")
    length.add_argument("-n", "--max-new-tokens", type=max_new_tokens, default=None, metavar="N",
                        help="generate at most N tokens, lowered to what the context leaves; "
                        "max: until the context is full (default: 64)")
    length.add_argument("--stop", action="append", type=unescape, default=[], metavar="TEXT",
                        help="end the output just before TEXT, with backslash escapes such as "
                        "\\n (repeatable)")
    length.add_argument("--ignore-eos", action="store_true",
                        help="keep going after the model's end-of-text token")
    length.add_argument("--truncate", action="store_true",
                        help="drop the prompt's oldest tokens when it does not fit the context")
    sampling = parser.add_argument_group("sampling")
    sampling.add_argument("--temperature", type=float, default=None,
                          help="divide logits by this; 0 picks the most likely token (default: 1)")
    sampling.add_argument("--greedy", action="store_true", help="same as --temperature 0")
    sampling.add_argument("--top-k", type=int, default=None, metavar="K",
                          help="sample from the K most likely tokens (default: 0, all)")
    sampling.add_argument("--top-p", type=float, default=None, metavar="P",
                          help="sample from the top tokens holding probability P (default: 1)")
    sampling.add_argument("--min-p", type=float, default=None, metavar="P",
                          help="drop tokens less likely than P times the top token (default: 0)")
    sampling.add_argument("--repetition-penalty", type=float, default=None, metavar="X",
                          help="Hugging Face repetition penalty, > 0; 1 is off (default: 1)")
    sampling.add_argument("--presence-penalty", type=float, default=None, metavar="X",
                          help="OpenAI presence penalty in [-2, 2] (default: 0)")
    sampling.add_argument("--frequency-penalty", type=float, default=None, metavar="X",
                          help="OpenAI frequency penalty in [-2, 2] (default: 0)")
    sampling.add_argument("--logit-bias", action="append", default=[], metavar="ID=BIAS",
                          help="add BIAS to token ID's logit; -inf bans it (repeatable)")
    if seed:
        sampling.add_argument(
            "-s", "--seed", type=int, default=None,
            help="random seed: the same seed gives the same text (default: random)",
        )


def max_new_tokens(value: str) -> int | str:
    """-n's value: a positive integer, or "max" (until the context is full)."""
    if value == "max":
        return value
    try:
        return positive_int(value)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"must be a positive integer or max, got {value!r}"
        ) from None


def unescape(text: str) -> str:
    """TEXT with the backslash escapes a user types in a shell turned into characters."""

    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        if code in _ESCAPES:
            return _ESCAPES[code]
        if code.startswith("x") and len(code) == 3:
            return chr(int(code[1:], 16))
        raise argparse.ArgumentTypeError(
            f"unknown escape \\{code} in {text} (known: \\n \\t \\r \\\\ \\xHH)"
        )

    return _ESCAPE.sub(one, text)


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


def options_of(args: argparse.Namespace) -> dict[str, Any]:
    """The options the user gave; the rest come from the model (generation_config.json)
    or the API's defaults."""
    names = ("temperature", "top_k", "top_p", "min_p", "repetition_penalty",
             "presence_penalty", "frequency_penalty", "seed")
    options = {name: getattr(args, name) for name in names
               if getattr(args, name, None) is not None}
    if args.greedy:
        options["temperature"] = 0.0
    if args.max_new_tokens is not None:
        options["max_new_tokens"] = None if args.max_new_tokens == "max" else args.max_new_tokens
    bias = parse_logit_bias(args.logit_bias)
    if bias is not None:
        options["logit_bias"] = bias
    if args.stop:
        options["stop"] = args.stop
    options.update(ignore_eos=args.ignore_eos, truncate=args.truncate)
    return options


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _same_file(a: TextIO, b: TextIO) -> bool:
    """Whether two streams write to one file or pipe (as with 2>&1)."""
    try:
        sa, sb = os.fstat(a.fileno()), os.fstat(b.fileno())
    except (OSError, ValueError):  # not a file (a test's StringIO): assume not
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def run(args: argparse.Namespace) -> int:
    out = require_stdout()
    threads_of(args)  # a bad --threads is reported before any prompt is read
    options = options_of(args)
    if (args.prompt is None) == (args.prompts_file is None):
        args.usage_error("give a PROMPT or --prompts-file FILE (one of them)")
    if args.prompts_file is not None:
        from .inputs import read_texts
        from .prompts import run_batch

        prompts = read_texts(args.prompts_file, "prompt", "--prompts-file")  # before loading
        model = load_model(args)
        return run_batch(model, prompts, options, _FLAGS)
    prompt = read_text_argument(args.prompt)
    model = load_model(args)
    tokenizer = model.require_tokenizer(f"{model.path} cannot generate text")
    ids = tokenizer.encode(prompt)
    fit_to_context(model, [ids], options, _FLAGS)
    try:
        pieces = model.stream(ids, **options)
        assert isinstance(pieces, GenerationStream)  # one prompt, n=1, no logprobs
    except ValueError as exc:
        raise CliError(with_flag(str(exc), _FLAGS)) from None
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
        # Sharing stdout's file or pipe (2>&1), the summary would continue the text's line.
        apart = "\n" if not ends_with_newline and _same_file(out, sys.stderr) else ""
        print(
            f"{apart}gpt2cpu: {_plural(result.prompt_tokens, 'prompt token')}, "
            f"{_plural(len(result.token_ids), 'new token')} ({result.finish_reason}); "
            f"prefill {_rate(result.prefill_tokens_per_second)} tok/s, "
            f"decode {_rate(result.decode_tokens_per_second)} tok/s",
            file=sys.stderr,
        )
    return 0
