"""Arguments and input handling shared by the sub-commands."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from ..model import Model


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-m", "--model", metavar="DIR", default=None,
        help="a Hugging Face GPT-2 model directory (default: the bundled demo model)",
    )


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    # -t is --threads in every command that runs the model (and --temperature has no short
    # form), as in llama.cpp, whose users type it most.
    parser.add_argument(
        "-t", "--threads", type=int, default=None, metavar="N",
        help="compute threads (default: $GPT2CPU_NUM_THREADS, else the usable cores); "
        "more than the usable cores warns, as it slows every step",
    )


def threads_of(args: argparse.Namespace) -> int:
    """--threads checked (named as the flag in errors), else the default."""
    from ..engine.threads import check_threads, default_threads

    return default_threads() if args.threads is None else check_threads(args.threads, "--threads")


def model_directory(args: argparse.Namespace) -> Path:
    """--model, else the bundled model (FileNotFoundError when it is not installed)."""
    if args.model is not None:
        return Path(args.model)
    from ..loading.bundled import default_model_dir

    return default_model_dir()


def load_model(args: argparse.Namespace) -> Model:
    """The model --model names (else the bundled one) on --threads, stored as --dtype and
    --kv-dtype say: what every sub-command that runs a model loads."""
    from ..model import Model

    return Model.from_pretrained(model_directory(args), threads=threads_of(args),
                                 dtype=args.dtype, kv_dtype=args.kv_dtype)


def positive_int(value: str) -> int:
    """An argparse type: an integer >= 1."""
    return _int_at_least(value, 1, "a positive integer")


def non_negative_int(value: str) -> int:
    """An argparse type: an integer >= 0."""
    return _int_at_least(value, 0, "a non-negative integer")


def _int_at_least(value: str, low: int, what: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = low - 1
    if n < low:
        raise argparse.ArgumentTypeError(f"must be {what}, got {value!r}")
    return n


def with_flag(message: str, flags: Mapping[str, str]) -> str:
    """An API error reworded with the flags: a leading argument name, and the advice to
    pass `name=True` (truncate=True: --truncate)."""
    for option, flag in flags.items():
        message = message.replace(f"pass {option}=True", f"pass {flag}")
    name = re.match(r"\w+", message)
    if name is None or name.group() not in flags:
        return message
    return flags[name.group()] + message[name.end():]


def fit_to_context(model: Model, prompts: Sequence[list[int]], options: dict[str, Any],
                   flags: Mapping[str, str], names: Sequence[str] | None = None) -> None:
    """The library's one context rule (generation.loop: prompt_ids, new_token_budget) in the
    CLI's words. A prompt longer than the context (without --truncate) is a CliError naming
    it (names[i]: ..., for several prompts); -n beyond the room a prompt leaves is capped by
    the library for that prompt (finish reason "length"), and a notice on stderr says so.
    Bad options are a CliError naming their flags."""
    from ..generation.loop import new_token_budget, prompt_ids, resolve
    from . import CliError

    rooms = []
    try:
        config = resolve(model, options)
        for i, ids in enumerate(prompts):
            try:
                rooms.append(new_token_budget(model, prompt_ids(model, ids, config), config))
            except ValueError as exc:
                if names:
                    raise ValueError(f"{names[i]}: {exc}") from None
                raise
    except ValueError as exc:
        raise CliError(with_flag(str(exc), flags)) from None
    n, context = config.max_new_tokens, model.config.n_positions
    capped = [room for room in rooms if n is not None and n > room]
    if not capped:
        return
    # Named as where it came from, which is where to change it: a -n not given is the
    # model's generation_config.json's, else the default.
    if "max_new_tokens" in options:
        what = f"--max-new-tokens {n}"
    elif "max_new_tokens" in model.generation_defaults.options:
        what = f"generation_config.json's max_new_tokens {n}"
    else:
        what = f"the default of {n} new tokens"
    if len(prompts) == 1:
        print(f"gpt2cpu: {what} lowered to {capped[0]}, what the model's "
              f"context of {context} tokens leaves after the prompt", file=sys.stderr)
    else:
        print(f"gpt2cpu: {what} lowered for {len(capped)} of {len(prompts)} "
              f"prompts to what the model's context of {context} tokens leaves after each "
              f"(down to {min(capped)})", file=sys.stderr)


def require_stdout() -> TextIO:
    """stdout, for a command whose result goes there, checked before any work: closed
    (>&-), sys.stdout is None and print() would drop the result and succeed."""
    from . import CliError

    if sys.stdout is None:
        raise CliError("stdout is closed, and the output goes there")
    return sys.stdout


def read_stdin() -> str:
    """All of stdin, as UTF-8 decoded strictly with its line ends kept: text mode would turn
    "\r\n" into "\n" and pass undecodable bytes on as lone surrogates, which the tokenizer
    would then encode as text that is not in the input."""
    from . import CliError

    if sys.stdin is None:  # closed (<&-)
        raise CliError('stdin is closed, and "-" reads from it')
    raw = sys.stdin.buffer.read()
    try:
        return raw.decode("utf-8-sig")  # a leading byte order mark is not text
    except UnicodeDecodeError as exc:
        raise CliError(f"stdin: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def read_text_argument(value: str) -> str:
    """A text argument as given, or all of stdin for "-"."""
    return read_stdin() if value == "-" else value


# The engine's weight and KV cache types (gpt2cpu._core.DTYPES and KV_DTYPES, which tests
# hold these to), spelled out so that building the parser does not load the engine.
DTYPE_NAMES = ("float32", "bfloat16", "float16", "int8", "int4")
KV_DTYPE_NAMES = ("float32", "bfloat16", "int8")


def add_dtype_arguments(parser: argparse.ArgumentParser, *, allow_all: bool = False) -> None:
    choices = (*DTYPE_NAMES, "all") if allow_all else DTYPE_NAMES
    extra = "; all: each in turn, side by side" if allow_all else ""
    parser.add_argument(
        "--dtype", choices=choices, default="float32",
        help="store the weight matrices as this type, converted at load "
        f"(default float32{extra}; docs/precisions.md compares them)",
    )
    parser.add_argument(
        "--kv-dtype", choices=KV_DTYPE_NAMES, default="float32",
        help="hold the KV cache's keys and values as this type (default float32; bfloat16 "
        "takes half the memory, int8 about a quarter; docs/precisions.md, \"The KV cache\")",
    )
