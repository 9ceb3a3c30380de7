"""Dataset-scale jobs: a task (generate, score, embed, classify) over every row of a JSONL,
CSV or Parquet file, resumable and deterministic; `gpt2cpu batch` on the command line.

    from gpt2cpu.jobs import JobSpec, run_job, row_seed
    summary = run_job(JobSpec(Path("in.jsonl"), Path("out.jsonl"), "score"))

A row's output depends only on the model, the dtype and kv_dtype, the kernel set, its text and
row_seed(seed, its id): not on the batch, worker or machine that ran it. The same job on a
Ray cluster: JobSpec(..., ray="auto"), or gpt2cpu.ray.Gpt2cpuPredictor in a pipeline of
one's own.
"""

from __future__ import annotations

from .runner import JobSpec, JobSummary, RowFailed, run_job
from .seeds import canonical_id, row_seed
from .tasks import TASKS, Outcome, Task, make_task

__all__ = [
    "TASKS",
    "JobSpec",
    "JobSummary",
    "Outcome",
    "RowFailed",
    "Task",
    "canonical_id",
    "make_task",
    "row_seed",
    "run_job",
]
