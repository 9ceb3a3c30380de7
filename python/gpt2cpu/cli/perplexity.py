"""`gpt2cpu perplexity`: a model's perplexity and bits per character on a text file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from . import CliError
from .common import (
    add_dtype_arguments,
    add_model_argument,
    add_threads_argument,
    load_model,
    read_stdin,
    require_stdout,
    with_flag,
)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "perplexity",
        help="perplexity and bits per character on a text file",
        description="Score a UTF-8 text file with a sliding window over the model's context "
        "(window = n_positions, stride = half of it, unless given).",
    )
    add_model_argument(p)
    add_dtype_arguments(p)
    p.add_argument("file", help="UTF-8 text file, or - for stdin")
    p.add_argument("--window", type=int, default=None,
                   help="tokens per window (default: the model's n_positions)")
    p.add_argument("--stride", type=int, default=None,
                   help="window step, up to --window (default: window // 2); equal to --window "
                   "gives non-overlapping windows, whose first tokens go unscored")
    add_threads_argument(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..tasks.perplexity import perplexity

    require_stdout()
    if args.file == "-":
        text = read_stdin()
    else:
        path = Path(args.file)
        try:
            # Bytes, decoded here: the text's line ends are part of what is scored, and
            # read_text would turn "\r\n" into "\n".
            text = path.read_bytes().decode("utf-8-sig")  # a leading byte order mark is not text
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except FileNotFoundError:
            raise CliError(f"{path}: file not found") from None
        except OSError as exc:  # a directory, no permission: the reason without errno's noise
            raise CliError(f"{path}: {exc.strerror}") from None
    model = load_model(args)
    try:
        r = perplexity(model, text, window=args.window, stride=args.stride)
    except ValueError as exc:
        raise CliError(with_flag(str(exc), {"window": "--window", "stride": "--stride"})) from None
    if args.json:
        print(
            json.dumps(
                {
                    "tokens": r.tokens,
                    "scored_tokens": r.scored_tokens,
                    "text_chars": r.text_chars,
                    "window": r.window,
                    "stride": r.stride,
                    "nll_sum": r.nll_sum,
                    "nats_per_token": r.nats_per_token,
                    "perplexity": r.perplexity,
                    "bits_per_char": r.bits_per_char,
                },
                indent=2,
            )
        )
    else:
        print(
            f"perplexity {r.perplexity:.4f}  ({r.nats_per_token:.4f} nats/token, "
            f"{r.bits_per_char:.4f} bits/char) over {r.scored_tokens} tokens, "
            f"{r.text_chars} characters; window {r.window}, stride {r.stride}"
        )
    return 0
