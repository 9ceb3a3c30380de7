"""The `gpt2cpu` command line: one module per sub-command, each with `register(subparsers)`.

A sub-command module's `register` adds its parser and sets `func(args) -> int` on it.
Errors that are the user's (bad flags, bad files, bad input) are raised as `CliError` or as
one of gpt2cpu's exception types and printed as one line, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import sys
import warnings
from collections.abc import Sequence
from typing import NoReturn

# Sub-command modules, in the order `--help` lists them.
COMMANDS: tuple[str, ...] = (
    "generate", "batch", "serve", "tokenize", "perplexity", "bench", "tasks",
)


class CliError(Exception):
    """An error to report to the user as one line, exiting with status 2."""


class _Parser(argparse.ArgumentParser):
    """Reports a usage error in one line instead of the usage block; sub-command parsers
    are made of the same class."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(
        prog="gpt2cpu", description="Run GPT-2-architecture language models on the CPU."
    )
    parser.add_argument("--version", action="version", version=f"gpt2cpu {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f".{name}", __name__).register(subparsers)
    for sub in subparsers.choices.values():
        sub.set_defaults(usage_error=sub.error)
    return parser


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: object = None, line: str | None = None) -> None:
    # A user of the command line wants the warning, not the source line that raised it.
    print(f"gpt2cpu: warning: {message}", file=sys.stderr)


def _settle_streams() -> None:
    """Without a stderr (pythonw, a service manager, 2>&-) sys.stderr is None, and
    print(file=None) writes to stdout: notices and warnings would land in the output, so
    they go nowhere instead. What stdout carries is UTF-8 whatever the locale or
    PYTHONIOENCODING say: JSONL is UTF-8 by definition, and a generated character that the
    locale's encoding lacks would otherwise end the output part-way with an error."""
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115  (the process's)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    _settle_streams()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # argparse blames arguments no parser took on the top-level command; those after a
        # sub-command are about it, and its --help is the one that lists its flags.
        getattr(args, "usage_error", parser.error)(f"unrecognized arguments: {' '.join(extra)}")
    # As given, for a command that runs itself again in child processes (bench --dtype all).
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return int(args.func(args))
    except KeyboardInterrupt:
        print("gpt2cpu: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except (CliError, ValueError, OSError, MemoryError) as exc:
        print(f"gpt2cpu {args.command}: error: {exc}", file=sys.stderr)
        return 2
