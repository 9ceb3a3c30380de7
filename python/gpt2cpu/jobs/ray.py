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


def _actor_cpus() -> int:
    """The CPUs Ray assigned to this actor (1 outside an actor)."""
    try:
        import ray

        context: Any = ray.get_runtime_context()  # Ray's API is untyped
        cpus = context.get_assigned_resources().get("CPU", 1.0)
    except Exception:  # not in a Ray worker: one thread is the safe default
        return 1
    return max(1, round(float(cpus)))


class Gpt2cpuPredictor:
    """Runs a gpt2cpu task on batches of a Ray dataset (pandas batches).

    task: "generate", "score", "embed" or "classify".
    model: a model directory (None: the bundled demo model); it must be readable at the
        same path on every node.
    dtype: the weights' type, as in Model.from_pretrained.
    column: the text column. id_column: the id column, required by generate (each row's
        seed is gpt2cpu.jobs.row_seed(seed, id)); other tasks work without one.
    options: generate's options (max_new_tokens, temperature, ...; not seed).
    pooling, layer, normalize: embed's options.
    threads: the engine's threads (default: the CPUs Ray assigned this actor, num_cpus).

    Returns the batch with the task's result columns and an "error" column added: a bad row
    (no text, too long) has its reason there and None in the result columns.
    """

    def __init__(self, task: str = "score", model: str | Path | None = None,
                 dtype: str = "float32", column: str = "text", id_column: str = "id",
                 seed: int = 0, options: Mapping[str, Any] | None = None,
                 pooling: str = "mean", layer: int = -1, normalize: bool = False,
                 threads: int | None = None) -> None:
        from ..model import Model

        self.task = make_task(task, options=options, seed=seed, pooling=pooling, layer=layer,
                              normalize=normalize)
        self.column, self.id_column = column, id_column
        self.model = Model.from_pretrained(model, threads=threads or _actor_cpus(), dtype=dtype)
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
        outcomes = self.task.run(self.model, rows)
        out = batch.copy()

        def column(values: list[Any]) -> pd.Series:
            return pd.Series(values, index=out.index, dtype=object)

        for name in self.task.fields:
            out[name] = column([o.result[name] if o.result else None for o in outcomes])
        out["error"] = column([o.error for o in outcomes])
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


def _outcomes(batch: pd.DataFrame, fields: Iterable[str]) -> list[Outcome]:
    import pandas as pd

    out = []
    for record in batch.to_dict("records"):
        error = record.get("error")
        failed = isinstance(error, str)
        result = None if failed else {k: _plain(record[k]) for k in fields}
        tokens = 0 if pd.isna(record[TOKENS_COLUMN]) else int(record[TOKENS_COLUMN])
        out.append(Outcome(int(record[ROW_COLUMN]), _plain(record["id"]), result,
                           error if failed else None, tokens))
    return out


def _connect(address: str) -> int:
    """ray.init for --ray ADDRESS ("" starts a local cluster) unless connected; the
    cluster's CPUs."""
    import ray

    api: Any = ray  # untyped
    if not api.is_initialized():
        if address:
            ray.init(address=address)
        else:
            ray.init(include_dashboard=False)
    return int(api.cluster_resources().get("CPU", 1))


def run_pending(spec: JobSpec, task: Task, pending: Iterable[Row], store: PartStore,
                progress: JobProgress) -> None:
    """`gpt2cpu batch --ray`: the pending rows through Gpt2cpuPredictor actors; results
    committed by this process as they come back, as in a local run."""
    import ray

    from .runner import commit

    rows = list(pending)
    bad = [r for r in rows if r.problem is not None]
    if bad:  # no model needed: reported here, in input order
        outcomes = [Outcome(r.index, r.id, None, r.problem) for r in bad]
        commit(store, outcomes, spec.strict)
        progress.add(outcomes)
    items = [{ROW_COLUMN: r.index, "id": r.id, "text": r.text} for r in rows if r.problem is None]
    if not items:
        return
    cpus = _connect(spec.ray or "")
    per_actor = spec.ray_cpus_per_actor
    actors = spec.ray_actors or max(1, cpus // per_actor - 1)
    context = ray.data.DataContext.get_current()
    kept = context.execution_options.preserve_order
    # In input order, results form long contiguous runs: few, large parts.
    context.execution_options.preserve_order = True
    try:
        _run_dataset(spec, task, items, store, progress, actors, per_actor)
    finally:
        context.execution_options.preserve_order = kept


def _run_dataset(spec: JobSpec, task: Task, items: list[dict[str, Any]], store: PartStore,
                 progress: JobProgress, actors: int, per_actor: int) -> None:
    import ray

    from .runner import commit

    dataset = ray.data.from_items(items).map_batches(
        Gpt2cpuPredictor,
        fn_constructor_kwargs={
            "task": spec.task, "model": str(spec.model_dir()), "dtype": spec.dtype,
            "column": "text", "id_column": "id", "seed": spec.seed, "options": spec.options,
            "pooling": spec.pooling, "layer": spec.layer, "normalize": spec.normalize,
            "threads": per_actor,
        },
        concurrency=actors, num_cpus=per_actor, batch_size=spec.batch_size,
        batch_format="pandas",
    )
    for batch in dataset.iter_batches(batch_size=spec.batch_size, batch_format="pandas"):
        outcomes = _outcomes(batch, task.fields)
        commit(store, outcomes, spec.strict)
        progress.add(outcomes)
