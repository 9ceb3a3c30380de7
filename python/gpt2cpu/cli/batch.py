"""`gpt2cpu batch`: a task over every row of a file, resumable, here or on a Ray cluster."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from . import CliError
from .common import (
    add_dtype_arguments,
    add_model_argument,
    add_threads_argument,
    non_negative_int,
    positive_int,
    require_stdout,
    threads_of,
)
from .generate import add_generation_arguments, options_of

DESCRIPTION = """\
Run a task over every row of INPUT and write one row per input row to OUTPUT, with the
input's id column (else the row number) beside the result. INPUT and OUTPUT are JSON Lines
(.jsonl), CSV (.csv) or Parquet (.parquet, with pyarrow: pip install 'gpt2cpu[parquet]').

tasks: generate (text, finish_reason, prompt_tokens, new_tokens), score (logprob: the sum
of every token's log-probability given its prefix, the first token having none; tokens;
greedy; token_logprobs), embed (embedding) and classify (label, label_id, probabilities).

Deterministic: row i's sampling seed is gpt2cpu.jobs.row_seed(--seed, its id), so a row's
output does not depend on the batch, worker or machine that ran it.

Resumable: finished batches are committed to OUTPUT.parts/ as they complete; after an
interruption (Ctrl-C, kill -9, a full disk) the same command runs only the rows not yet
written. At the end the parts are merged into OUTPUT and OUTPUT.errors.jsonl and removed.
One run per OUTPUT at a time (a second is refused); an INPUT that is OUTPUT or its errors
file is refused.

Bad rows (no text, empty text, longer than the context) go to OUTPUT.errors.jsonl with the
reason and the job goes on; --strict stops at the first. With generate, a prompt longer
than the context is a bad row (unless --truncate) and -n beyond the room it leaves is lowered
to fit (the finish reason is then "length"; a prompt of exactly the context gets 1 token).

--ray runs the batches on Ray Data actors (pip install 'gpt2cpu[ray]'): --ray alone starts
a local cluster; --ray auto joins the cluster of `ray start` on this machine; --ray
ray://HOST:10001 connects a client to a remote one. Reading, skipping done rows and writing
stay in this process, so resuming works the same."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "batch", help="run a task over every row of a JSONL, CSV or Parquet file",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", metavar="INPUT", type=Path, help="the rows to process")
    parser.add_argument("output", metavar="OUTPUT", type=Path, help="where the results go")
    parser.add_argument("--task", required=True, choices=("generate", "score", "embed", "classify"))
    add_model_argument(parser)
    add_dtype_arguments(parser)
    add_threads_argument(parser)
    rows = parser.add_argument_group("rows")
    rows.add_argument("--column", default="text", help="the text column (default: text)")
    rows.add_argument("--id-column", default="id", metavar="NAME",
                      help="the id column, kept in the output and seeding each row; when no "
                      "row has it, the row number (from 0) is the id (default: id)")
    rows.add_argument("-b", "--batch-size", type=positive_int, default=16, metavar="B",
                      help="rows per batch: per model call and per committed part (default: 16)")
    rows.add_argument("-s", "--seed", type=non_negative_int, default=0,
                      help="the base seed each row's seed derives from (default: 0)")
    rows.add_argument("--strict", action="store_true", help="stop at the first bad row")
    rows.add_argument("--overwrite", action="store_true",
                      help="replace a finished OUTPUT, and discard the unfinished parts of "
                      "a different job there (this job's own parts are still resumed)")
    rows.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    rows.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                      help="show the progress bar (default: when stderr is a terminal)")
    add_generation_arguments(parser, seed=False)
    embed = parser.add_argument_group("embed")
    embed.add_argument("--pooling", choices=("mean", "last", "none"), default="mean",
                       help="mean over the tokens or the last token's; none: every token's")
    embed.add_argument("--layer", type=int, default=-1,
                       help="which hidden state (0: embeddings; default -1: the final one)")
    embed.add_argument("--normalize", action="store_true", help="scale to unit L2 norm")
    ray = parser.add_argument_group("ray")
    ray.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                     help="run on Ray Data: alone, a local cluster; auto, or ray://HOST:PORT")
    ray.add_argument("--ray-actors", type=positive_int, default=None, metavar="N",
                     help="model actors (default: the cluster's CPUs / --ray-cpus-per-actor, "
                     "less one actor's worth, so that Ray's own tasks have a core)")
    ray.add_argument("--ray-cpus-per-actor", type=positive_int, default=1, metavar="N",
                     help="CPUs per actor, and its engine's threads (default: 1)")
    parser.set_defaults(func=run)


def _plural(errors: int) -> str:
    return "1 error" if errors == 1 else f"{errors} errors"


def run(args: argparse.Namespace) -> int:
    from ..jobs import JobSpec, RowFailed, run_job

    if args.json:
        require_stdout()
    options = options_of(args)
    options.pop("seed", None)  # the base seed: each row gets its own
    spec = JobSpec(
        input=args.input, output=args.output, task=args.task,
        model=Path(args.model) if args.model is not None else None, dtype=args.dtype,
        kv_dtype=args.kv_dtype, column=args.column, id_column=args.id_column,
        batch_size=args.batch_size,
        seed=args.seed, options=options if args.task == "generate" else {},
        pooling=args.pooling, layer=args.layer, normalize=args.normalize, strict=args.strict,
        overwrite=args.overwrite, threads=None if args.ray is not None else threads_of(args),
        progress=args.progress, ray=args.ray, ray_actors=args.ray_actors,
        ray_cpus_per_actor=args.ray_cpus_per_actor,
    )
    try:
        summary = run_job(spec)
    except RowFailed as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(summary.as_dict()))
    print(
        f"gpt2cpu batch: {summary.computed} rows run ({summary.done_before} of {summary.rows} "
        f"were done before; {summary.recomputed} run again), {_plural(summary.errors)}; "
        f"{summary.rows_per_second:.1f} rows/s, {summary.tokens_per_second:.0f} tokens/s; "
        f"wrote {summary.output}"
        + (f" and {_plural(summary.total_errors)} to {summary.errors_file}"
           if summary.total_errors else ""),
        file=sys.stderr,
    )
    return 0
