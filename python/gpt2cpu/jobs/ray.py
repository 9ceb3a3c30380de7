"""gpt2cpu on Ray Data: `Gpt2cpuPredictor`, a callable class for `Dataset.map_batches`.

    import ray
    from gpt2cpu.ray import Gpt2cpuPredictor

    ds = ray.data.read_json("prompts.jsonl")
    ds = ds.map_batches(
        Gpt2cpuPredictor,
        fn_constructor_kwargs={"task": "generate", "model": "/models/gpt2",
                               "options": {"max_new_tokens": 32, "temperature": 0.8}},
        concurrency=4, num_cpus=1, batch_size=16, batch_format="pandas",
    )
    ds.write_parquet("out/")

Each actor loads the model once and runs it on as many threads as the CPUs Ray gave it. A
batch goes through the same task adapters as `gpt2cpu batch` (gpt2cpu.jobs.tasks), so a row
gets the same output here as there. `gpt2cpu batch --ray` uses this class with its own
reading and writing (run_pending), which keeps the local job's resumability.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .rows import Row, make_row
from .seeds import canonical_id
from .tasks import Outcome, make_task

if TYPE_CHECKING:
    import pandas as pd

    from .parts import PartStore
    from .runner import JobProgress, JobSpec
    from .tasks import Task

# Columns `gpt2cpu batch --ray` adds to its rows and reads back: the input row number (the
# key of resumption) and the tokens a row took (for tokens/s).
ROW_COLUMN = "__gpt2cpu_row"
TOKENS_COLUMN = "__gpt2cpu_tokens"
# The columns `gpt2cpu batch --ray` ships its rows in. The id goes as canonical_id's text:
# Arrow gives a column one type, so raw ids of mixed types either fail to convert or come
# back changed (1 beside 2.5 returns as 1.0, another seed); the text seeds as the id does,
# and the driver keeps the ids themselves for the output. Names of their own keep generate's
# result column "text" from clashing with the prompt's.
ID_COLUMN = "__gpt2cpu_id"
TEXT_COLUMN = "__gpt2cpu_text"
# An input column that a result column would replace keeps its name; the result is written
# under this prefix instead.
RESULT_PREFIX = "result_"


def _actor_cpus() -> int:
    """The CPUs Ray assigned to this actor (1 outside an actor)."""
    try:
        import ray

        # get_runtime_context() starts a local Ray instance when none is running: a
        # predictor built outside Ray (a test, a notebook) must not start one.
        if not ray.is_initialized():
            return 1
        context: Any = ray.get_runtime_context()  # Ray's API is untyped
        cpus = context.get_assigned_resources().get("CPU", 1.0)
    except Exception:  # not in a Ray worker: one thread is the safe default
        return 1
    return max(1, round(float(cpus)))


def result_columns(columns: Iterable[str], fields: Iterable[str]) -> dict[str, str]:
    """Where each of the task's fields and "error" go in a batch that has `columns`: its own
    name, or RESULT_PREFIX + its name where the input already has that column."""
    taken = set(columns)
    out = {}
    for name in (*fields, "error"):
        column = RESULT_PREFIX + name if name in taken else name
        if column in taken:
            raise ValueError(f"the input has both {name!r} and {column!r} columns: the "
                             f"result column {name!r} has nowhere to go; rename one")
        out[name] = column
    return out


class Gpt2cpuPredictor:
    """Runs a gpt2cpu task on batches of a Ray dataset (pandas batches).

    task: "generate", "score", "embed" or "classify".
    model: a model directory (None: the bundled demo model); it must be readable at the
        same path on every node.
    dtype, kv_dtype: the weights' and the KV cache's types, as in Model.from_pretrained.
    column: the text column. id_column: the id column, required by generate (each row's
        seed is gpt2cpu.jobs.row_seed(seed, id)); other tasks work without one.
    options: generate's options (max_new_tokens, temperature, ...; not seed).
    pooling, layer, normalize: embed's options.
    threads: the engine's threads (default: the CPUs Ray assigned this actor, num_cpus).

    Returns the batch with the task's result columns and an "error" column added: a bad row
    (no text, too long) has its reason there and None in the result columns. The input's
    columns are kept as they are: a result column whose name the input already has is
    written as "result_" + its name (generate's "text" beside a prompt column "text" is
    "result_text"); if the input has that one too, the batch fails naming both.
    """

    def __init__(self, task: str = "score", model: str | Path | None = None,
                 dtype: str = "float32", column: str = "text", id_column: str = "id",
                 seed: int = 0, options: Mapping[str, Any] | None = None,
                 pooling: str = "mean", layer: int = -1, normalize: bool = False,
                 threads: int | None = None, kv_dtype: str = "float32") -> None:
        from ..model import Model

        self.task = make_task(task, options=options, seed=seed, pooling=pooling, layer=layer,
                              normalize=normalize)
        self.column, self.id_column = column, id_column
        self.model = Model.from_pretrained(model, threads=threads or _actor_cpus(), dtype=dtype,
                                           kv_dtype=kv_dtype)
        self.task.check(self.model)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        import pandas as pd

        ids_given = self.id_column in batch.columns
        if not ids_given and self.task.name == "generate":
            raise ValueError(f"generate needs an id column ({self.id_column!r}): each row's "
                             "seed derives from its id")
        records = batch.to_dict("records")
        rows = [make_row(int(r.get(ROW_COLUMN, i)), r, self.column, self.id_column, ids_given)
                for i, r in enumerate(records)]
        names = result_columns(batch.columns, self.task.fields)
        outcomes = self.task.run(self.model, rows)
        out = batch.copy()

        def column(values: list[Any]) -> pd.Series:
            return pd.Series(values, index=out.index, dtype=object)

        for name in self.task.fields:
            out[names[name]] = column([o.result[name] if o.result else None for o in outcomes])
        out[names["error"]] = column([o.error for o in outcomes])
        if ROW_COLUMN in batch.columns:
            out[TOKENS_COLUMN] = column([o.tokens for o in outcomes])
        return out


def _plain(value: Any) -> Any:
    """A value back from Arrow/pandas as the Python value the local run has."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars
    if callable(tolist) and not isinstance(value, str):
        return _plain(tolist()) if hasattr(value, "shape") and value.shape else tolist()
    return value


def _outcomes(batch: pd.DataFrame, fields: Iterable[str], ids: Mapping[int, Any]
              ) -> list[Outcome]:
    import pandas as pd

    out = []
    for record in batch.to_dict("records"):
        index = int(record[ROW_COLUMN])
        error = record.get("error")
        failed = isinstance(error, str)
        result = None if failed else {k: _plain(record[k]) for k in fields}
        tokens = 0 if pd.isna(record[TOKENS_COLUMN]) else int(record[TOKENS_COLUMN])
        out.append(Outcome(index, ids[index], result, error if failed else None, tokens))
    return out


def _connect(address: str) -> None:
    """ray.init for --ray ADDRESS ("" starts a local cluster) unless connected."""
    import ray

    api: Any = ray  # untyped
    if not api.is_initialized():
        if address:
            ray.init(address=address)
        else:
            ray.init(include_dashboard=False)


def _node_cpus() -> tuple[int, int]:
    """The cluster's CPUs, and the most that one of its nodes has (an actor runs on one)."""
    import ray

    api: Any = ray  # untyped
    nodes = [n.get("Resources", {}).get("CPU", 0) for n in api.nodes() if n.get("Alive")]
    total = int(api.cluster_resources().get("CPU", 0))
    return total, int(max(nodes, default=total))


def _worker_error(exc: BaseException) -> BaseException | None:
    """The exception a Ray worker raised, out of Ray's wrapping, as one line; None if exc is
    not Ray's or holds none."""
    import builtins
    import importlib
    import re

    from ray.exceptions import RayError

    if not isinstance(exc, RayError):
        return None
    cause = getattr(exc, "cause", None)
    if isinstance(cause, Exception) and not isinstance(cause, RayError):
        return cause
    # Ray Data passes the worker's exception on only as text (an actor's constructor's in
    # ActorDiedError, a batch's under UserCodeException): its traceback, where the user's
    # exception is the last "Type: message" line that is not one of Ray's own.
    found = [m for m in (re.match(r"((?:\w+\.)*\w*(?:Error|Exception)): (.*)", line)
                         for line in str(exc).splitlines())
             if m and not m.group(1).startswith("ray.")]
    if not found:
        return None
    name, message = found[-1].group(1), found[-1].group(2)
    module, _, attr = name.rpartition(".")
    kind = (getattr(builtins, name, None) if not module
            else getattr(importlib.import_module(module), attr, None)
            if module.split(".")[0] == "gpt2cpu" else None)
    if isinstance(kind, type) and issubclass(kind, Exception):
        try:
            return kind(message)
        except Exception:  # a constructor that takes more than the message
            pass
    return RuntimeError(f"a Ray worker failed: {name}: {message}")


def run_pending(spec: JobSpec, task: Task, pending: Iterable[Row], store: PartStore,
                progress: JobProgress) -> None:
    """`gpt2cpu batch --ray`: the pending rows through Gpt2cpuPredictor actors; results
    committed by this process as they come back, as in a local run."""
    rows = list(pending)
    if spec.strict:
        # Only the rows before the first bad one run, as they would locally; then that row
        # stops the job, the others' results kept.
        first = next((i for i, r in enumerate(rows) if r.problem is not None), len(rows))
        good, bad = rows[:first], rows[first:first + 1]
    else:
        good = [r for r in rows if r.problem is None]
        bad = [r for r in rows if r.problem is not None]
        _commit_bad(store, bad, progress, strict=False)  # no model needed: written first
    if good:
        _run_on_ray(spec, task, good, store, progress)
    if spec.strict:
        _commit_bad(store, bad, progress, strict=True)


def _commit_bad(store: PartStore, bad: list[Row], progress: JobProgress, strict: bool) -> None:
    from .runner import commit

    if bad:
        outcomes = [Outcome(r.index, r.id, None, r.problem) for r in bad]
        commit(store, outcomes, strict)
        progress.add(outcomes)


def _run_on_ray(spec: JobSpec, task: Task, rows: list[Row], store: PartStore,
                progress: JobProgress) -> None:
    import ray

    _connect(spec.ray or "")
    cpus, largest = _node_cpus()
    per_actor = spec.ray_cpus_per_actor
    if per_actor > largest:  # Ray would wait forever for a node that big
        raise ValueError(f"--ray-cpus-per-actor {per_actor} is more CPUs than any node of the "
                         f"Ray cluster has (its largest has {largest}, {cpus} in all)")
    actors = spec.ray_actors or max(1, cpus // per_actor - 1)
    context = ray.data.DataContext.get_current()
    kept = context.execution_options.preserve_order
    # In input order, results form long contiguous runs: few, large parts.
    context.execution_options.preserve_order = True
    try:
        _run_dataset(spec, task, rows, store, progress, actors, per_actor)
    except Exception as exc:
        cause = _worker_error(exc)
        if cause is None:
            raise
        raise cause from None
    finally:
        context.execution_options.preserve_order = kept


def _run_dataset(spec: JobSpec, task: Task, rows: list[Row], store: PartStore,
                 progress: JobProgress, actors: int, per_actor: int) -> None:
    import ray

    from .runner import commit

    ids = {r.index: r.id for r in rows}
    items = [{ROW_COLUMN: r.index, ID_COLUMN: canonical_id(r.id), TEXT_COLUMN: r.text}
             for r in rows]
    dataset = ray.data.from_items(items).map_batches(
        Gpt2cpuPredictor,
        fn_constructor_kwargs={
            "task": spec.task, "model": str(spec.model_dir()), "dtype": spec.dtype,
            "kv_dtype": spec.kv_dtype, "column": TEXT_COLUMN, "id_column": ID_COLUMN,
            "seed": spec.seed, "options": spec.options, "pooling": spec.pooling,
            "layer": spec.layer, "normalize": spec.normalize, "threads": per_actor,
        },
        concurrency=actors, num_cpus=per_actor, batch_size=spec.batch_size,
        batch_format="pandas",
    )
    for batch in dataset.iter_batches(batch_size=spec.batch_size, batch_format="pandas"):
        outcomes = _outcomes(batch, task.fields, ids)
        commit(store, outcomes, spec.strict)
        progress.add(outcomes)
