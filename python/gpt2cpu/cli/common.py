"""Arguments and input handling shared by the sub-commands."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping
from pathlib import Path


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-m", "--model", metavar="DIR", default=None,
        help="a Hugging Face GPT-2 model directory (default: the bundled demo model)",
    )


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    # -t is --threads in every command (and --temperature has no short form), as in
    # llama.cpp, whose users type it most.
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


def with_flag(message: str, flags: Mapping[str, str]) -> str:
    """An API error that starts with an argument's name, reworded with its flag."""
    name = re.match(r"\w+", message)
    if name is None or name.group() not in flags:
        return message
    return flags[name.group()] + message[name.end():]


def read_text_argument(value: str) -> str:
    """A text argument as given, or all of stdin for "-"."""
    return sys.stdin.read() if value == "-" else value


# The engine's weight types (gpt2cpu._core.DTYPES, which a test holds this to), spelled out
# so that building the parser does not load the engine.
DTYPE_NAMES = ("float32", "bfloat16", "float16", "int8", "int4")


def add_dtype_argument(parser: argparse.ArgumentParser, *, allow_all: bool = False) -> None:
    choices = (*DTYPE_NAMES, "all") if allow_all else DTYPE_NAMES
    extra = "; all: each in turn, side by side" if allow_all else ""
    parser.add_argument(
        "--dtype", choices=choices, default="float32",
        help="store the weight matrices as this type, converted at load "
        f"(default float32{extra}; docs/precisions.md compares them)",
    )
