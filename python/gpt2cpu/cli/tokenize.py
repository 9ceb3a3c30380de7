"""`gpt2cpu tokenize`: show the token ids (and pieces) a model's tokenizer makes of a text."""

from __future__ import annotations

import argparse
from typing import Any

from .common import add_model_argument, model_directory, read_text_argument, require_stdout


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "tokenize",
        help="print the token ids of a text",
        description="Print the token ids the model's tokenizer makes of TEXT, separated by "
        "spaces; with --verbose, one token a line with its text.",
    )
    parser.add_argument("text", metavar="TEXT", help='the text; "-" reads it from stdin')
    add_model_argument(parser)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="one line per token: position, id and the token's text")
    parser.add_argument("--special", action="store_true",
                        help="read special-token text such as <|endoftext|> as the special token")
    parser.set_defaults(func=run)


def piece_text(data: bytes) -> str:
    """A token's bytes for display: its text quoted, or, for a token holding part of a
    UTF-8 character, its bytes (b'\\xc3')."""
    try:
        return repr(data.decode("utf-8"))
    except UnicodeDecodeError:
        return repr(data)


def run(args: argparse.Namespace) -> int:
    from ..tokenizer.tokenizer import Tokenizer

    require_stdout()
    text = read_text_argument(args.text)
    tokenizer = Tokenizer.from_pretrained(model_directory(args))
    ids = tokenizer.encode(text, allowed_special="all" if args.special else frozenset())
    if not args.verbose:
        print(" ".join(map(str, ids)))
        return 0
    width = len(str(len(ids)))
    for position, token in enumerate(ids):
        print(f"{position:>{width}}  {token:>6}  {piece_text(tokenizer.token_bytes(token))}")
    print(f"{len(ids)} tokens, {len(text)} characters")
    return 0
