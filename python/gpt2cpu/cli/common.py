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
    from ..threads import check_threads, default_threads

    return default_threads() if args.threads is None else check_threads(args.threads, "--threads")


def model_directory(args: argparse.Namespace) -> Path:
    """--model, else the bundled model (FileNotFoundError when it is not installed)."""
    if args.model is not None:
        return Path(args.model)
    from ..bundled import default_model_dir

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
