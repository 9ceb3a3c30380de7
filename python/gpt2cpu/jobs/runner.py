"""Running a job: rows in, task adapter over batches, parts out, then the merged output."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..progress import Progress
from .formats import count_records, read_records, table_format
from .parts import PartStore, errors_path
from .rows import Row, rows_of
from .tasks import Outcome, Task, make_task


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
    task = spec.make_task()
    model = None
    if spec.ray is None:  # loaded first: a model that cannot do the task leaves no parts
        from ..model import Model

        model = Model.from_pretrained(spec.model_dir(), threads=spec.threads, dtype=spec.dtype)
        task.check(model)
    store = PartStore.open(spec.output, spec.identity(), overwrite=spec.overwrite)
    done_before = len(store.done)
    counts_before = dict(store.counts)
    total = count_records(spec.input)
    pending = (r for r in rows_of(read_records(spec.input), spec.column, spec.id_column)
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
    except BaseException:
        # Under Ray the model loads in the actors only, so a model that cannot do the task
        # fails here, after the parts directory was made: it goes if no row was written.
        store.discard_if_empty()
        raise
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
    store.finish(spec.id_column, task.fields)
    return summary
