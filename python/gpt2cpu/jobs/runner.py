"""Running a job: rows in, task adapter over batches, parts out, then the merged output."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..progress import Progress
from .formats import read_records, scan_records, table_format
from .parts import ERROR_COLUMNS, PartStore, errors_path
from .rows import Row, rows_of
from .tasks import Outcome, Task, make_task

if TYPE_CHECKING:
    from ..model import Model


class RowFailed(ValueError):
    """--strict: a row could not run; the job stopped there (rows before it are kept)."""


@dataclass(frozen=True)
class JobSpec:
    """Everything a job does. Its `identity` (all but the batch size, threads, progress and
    where it runs) must match to resume a job's parts."""

    input: Path
    output: Path
    task: str
    model: Path | None = None
    dtype: str = "float32"
    kv_dtype: str = "float32"
    column: str = "text"
    id_column: str = "id"
    batch_size: int = 16
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)  # generate's options
    pooling: str = "mean"
    layer: int = -1
    normalize: bool = False
    strict: bool = False
    overwrite: bool = False
    threads: int | None = None
    progress: bool | None = None
    ray: str | None = None  # None: this process; "": a local Ray cluster; else its address
    ray_actors: int | None = None
    ray_cpus_per_actor: int = 1

    def __post_init__(self) -> None:
        # Paths may be given as str or any os.PathLike.
        for name in ("input", "output", "model"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        # None means float32, as in from_pretrained: one job, one identity, however spelled.
        for name in ("dtype", "kv_dtype"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, "float32")

    def make_task(self) -> Task:
        return make_task(self.task, options=self.options, seed=self.seed, pooling=self.pooling,
                         layer=self.layer, normalize=self.normalize)

    def model_dir(self) -> Path:
        from ..loading.bundled import default_model_dir

        return (self.model if self.model is not None else default_model_dir()).resolve()

    def identity(self) -> dict[str, Any]:
        from .. import _core

        stat = self.input.stat()
        task: dict[str, Any] = {"generate": {"options": self.options, "seed": self.seed},
                                "embed": {"pooling": self.pooling, "layer": self.layer,
                                          "normalize": self.normalize}}.get(self.task, {})
        return {
            "input": str(self.input.resolve()), "input_bytes": stat.st_size,
            "input_mtime_ns": stat.st_mtime_ns, "task": self.task, "task_options": task,
            "model": str(self.model_dir()), "dtype": self.dtype, "column": self.column,
            "id_column": self.id_column, "kernels": _core.default_isa(),
            # Only where it is not the default: the parts of a job begun before there was a
            # choice still resume.
            **({"kv_dtype": self.kv_dtype} if self.kv_dtype != "float32" else {}),
        }


@dataclass
class JobSummary:
    """What a run did. rows: the input's rows; done_before: rows already written when it
    started; computed: rows it ran (results and errors); recomputed: rows among those that
    had been written once (a part the manifest never committed: at most one batch)."""

    rows: int
    done_before: int
    computed: int
    recomputed: int
    errors: int
    tokens: int
    seconds: float
    output: str
    errors_file: str
    total_errors: int = 0

    @property
    def rows_per_second(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rows_per_second": self.rows_per_second,
                "tokens_per_second": self.tokens_per_second}


def batches(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    iterator = iter(rows)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


class JobProgress:
    """The progress bar's rows/s and tokens/s over this run's rows only."""

    def __init__(self, total: int, done: int, label: str, enabled: bool | None) -> None:
        # The bar counts this run's rows only, so that its time left holds after a resume.
        if done:
            label += f" ({done} rows done before)"
        self.bar = Progress(max(total - done, 0), label, enabled=enabled)
        self.rows = 0
        self.tokens = 0
        self.start = time.perf_counter()

    def add(self, outcomes: Sequence[Outcome]) -> None:
        self.rows += len(outcomes)
        self.tokens += sum(o.tokens for o in outcomes)
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        self.bar.advance(len(outcomes), f"{self.rows / elapsed:.1f} rows/s, "
                         f"{self.tokens / elapsed:.0f} tokens/s")

    def close(self) -> None:
        self.bar.close()


def commit(store: PartStore, outcomes: Sequence[Outcome], strict: bool) -> None:
    """Write outcomes; with strict, only those before the first error, then raise."""
    if strict:
        bad = next((i for i, o in enumerate(outcomes) if o.error is not None), None)
        if bad is not None:
            store.write(outcomes[:bad])
            o = outcomes[bad]
            raise RowFailed(f"row {o.index} (id {o.id!r}): {o.error} (--strict stops here; "
                            f"the {len(store.done)} rows written so far are kept)")
    store.write(outcomes)


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)  # a hard link, or another path to one directory
    except OSError:
        return False


def check_paths(spec: JobSpec) -> None:
    """Refuses a job that would write over its own input. (Its other paths, OUTPUT.parts/
    and the .tmp files, cannot be an input: a directory, an unknown extension.)"""
    for what, path in (("output", spec.output), ("errors file", errors_path(spec.output))):
        if _same_file(spec.input, path):
            raise ValueError(f"{spec.input}: the input is also this job's {what} ({path}), "
                             "which would overwrite it; choose another OUTPUT")


def check_id_column(id_column: str, task: Task) -> None:
    """Refuses an id column that the output or the errors file has another column of."""
    written = (*task.fields, *ERROR_COLUMNS)
    if id_column in written:
        raise ValueError(
            f"the id column {id_column!r} has the name of a column the job writes beside it "
            f"(--task {task.name} writes {', '.join(task.fields)}; the errors file "
            f"{', '.join(ERROR_COLUMNS)}): the ids would be lost; rename it in the input and "
            "pass --id-column with the new name"
        )


def run_job(spec: JobSpec) -> JobSummary:
    """Run (or resume) the job: every input row not yet written, then the merged output."""
    if spec.batch_size < 1:
        raise ValueError(f"batch size must be a positive integer, got {spec.batch_size}")
    table_format(spec.input, "input")
    if not spec.input.is_file():
        raise FileNotFoundError(f"{spec.input}: input file not found")
    table_format(spec.output, "output")
    if not spec.output.parent.is_dir():  # a typo in the path should not become a directory
        raise FileNotFoundError(f"{spec.output}: the output's directory {spec.output.parent} "
                                "does not exist")
    check_paths(spec)
    task = spec.make_task()
    check_id_column(spec.id_column, task)
    # A whole pass before any work: an unreadable input fails here, leaving nothing behind.
    total, ids_given = scan_records(spec.input, spec.id_column)
    model = checked_model(spec, task)
    store = PartStore.open(spec.output, spec.identity(), overwrite=spec.overwrite)
    try:
        return _run(spec, task, model, store, total, ids_given)
    except BaseException:
        # A model checked only in Ray's actors fails here, after the parts directory was
        # made: it goes if no row was written.
        store.discard_if_empty()
        raise
    finally:
        store.close()


def checked_model(spec: JobSpec, task: Task) -> Model | None:
    """The model, loaded and checked for the task before the parts directory exists, so that
    a bad option or a model without the task's head is one line and leaves nothing behind.
    Under Ray, None: the actors load their own, and this one is only checked (with one
    thread), unless a client of a remote cluster lacks the model's directory; the actors
    check it then."""
    from ..model import Model, check_dtype, check_kv_dtype

    # Here as well as in from_pretrained: a remote cluster's client may load no model.
    check_dtype(spec.dtype)
    check_kv_dtype(spec.kv_dtype)
    directory = spec.model_dir()
    if spec.ray is None:
        model = Model.from_pretrained(directory, threads=spec.threads, dtype=spec.dtype,
                                      kv_dtype=spec.kv_dtype)
        task.check(model)
        return model
    if not (spec.ray.startswith("ray://") and not directory.is_dir()):
        task.check(Model.from_pretrained(directory, threads=1, dtype=spec.dtype,
                                         kv_dtype=spec.kv_dtype, progress=False))
    return None


def _run(spec: JobSpec, task: Task, model: Model | None, store: PartStore, total: int,
         ids_given: bool) -> JobSummary:
    done_before = len(store.done)
    counts_before = dict(store.counts)
    pending = (r for r in rows_of(read_records(spec.input), spec.column, spec.id_column,
                                  ids_given)
               if r.index not in store.done)
    progress = JobProgress(total, done_before, f"{spec.task}", spec.progress)
    started = time.perf_counter()
    try:
        if spec.ray is not None:
            from .ray import run_pending

            run_pending(spec, task, pending, store, progress)
        else:
            assert model is not None
            for batch in batches(pending, spec.batch_size):
                outcomes = task.run(model, batch)
                commit(store, outcomes, spec.strict)
                progress.add(outcomes)
    finally:
        progress.close()
    seconds = time.perf_counter() - started
    summary = JobSummary(
        rows=total, done_before=done_before, computed=progress.rows,
        # Orphaned rows were not done at the start, so those done now ran again.
        recomputed=len(store.orphaned & store.done),
        errors=store.counts["errors"] - counts_before["errors"],
        tokens=progress.tokens, seconds=seconds, output=str(spec.output),
        errors_file=str(errors_path(spec.output)), total_errors=store.counts["errors"],
    )
    store.finish(spec.id_column, task.columns())
    return summary
