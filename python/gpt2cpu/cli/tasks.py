"""`gpt2cpu score`, `gpt2cpu embed` and `gpt2cpu classify`: a file of texts in, one JSON
line per text out, all run in batched steps."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from . import CliError
from .common import (
    add_dtype_arguments,
    add_model_argument,
    add_threads_argument,
    load_model,
    require_stdout,
)
from .inputs import InputTexts, add_file_argument, read_texts, write_jsonl


def register(subparsers: Any) -> None:
    score = _parser(subparsers, "score",
                    "the log-probability of each text's tokens: JSONL with token_ids, "
                    "logprobs (one per token after the first), total and is_greedy")
    score.add_argument("--prepend-bos", action="store_true",
                       help="score the first token too, given the BOS token")
    score.set_defaults(func=run_score)
    embed = _parser(subparsers, "embed", "hidden-state features of each text: JSONL with "
                    "embedding (a list; pooling none: a list per token)")
    embed.add_argument("--pooling", choices=("mean", "last", "none"), default="mean")
    embed.add_argument("--layer", type=int, default=-1,
                       help="hidden state, numbered as transformers (default -1: the last)")
    embed.add_argument("--normalize", action="store_true", help="unit L2 norm")
    embed.set_defaults(func=run_embed)
    classify = _parser(subparsers, "classify", "the label and class probabilities of each "
                       "text, with a GPT2ForSequenceClassification checkpoint")
    classify.set_defaults(func=run_classify)


def _parser(subparsers: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(name, help=help_text,
                                                            description=help_text)
    add_file_argument(parser, "text")
    add_model_argument(parser)
    add_dtype_arguments(parser)
    add_threads_argument(parser)
    return parser


def _load(args: argparse.Namespace) -> tuple[Any, InputTexts]:
    require_stdout()
    texts = read_texts(args.file, "text")
    model = load_model(args)
    return model, texts


@contextmanager
def _lines_named(texts: InputTexts) -> Iterator[None]:
    """An error about texts[i] names the file and line the text came from."""
    try:
        yield
    except ValueError as exc:
        raise CliError(texts.reword(str(exc))) from None


def run_score(args: argparse.Namespace) -> int:
    model, texts = _load(args)
    with _lines_named(texts):
        results = model.score(texts.texts, prepend_bos=args.prepend_bos)
    write_jsonl([
        {"index": i, "token_ids": r.token_ids, "logprobs": r.logprobs.tolist(),
         "total": r.total, "is_greedy": r.is_greedy}
        for i, r in enumerate(results)
    ])
    return 0


def run_embed(args: argparse.Namespace) -> int:
    model, texts = _load(args)
    with _lines_named(texts):
        vectors = model.embed(texts.texts, pooling=args.pooling, layer=args.layer,
                              normalize=args.normalize)
    write_jsonl([{"index": i, "embedding": np.asarray(v).tolist()}
                 for i, v in enumerate(vectors)])
    return 0


def run_classify(args: argparse.Namespace) -> int:
    model, texts = _load(args)
    with _lines_named(texts):
        classes = model.classify(texts.texts)
    write_jsonl([
        {"index": i, "label": c.label, "label_id": c.label_id,
         "probabilities": c.probabilities.tolist()}
        for i, c in enumerate(classes)
    ])
    return 0
