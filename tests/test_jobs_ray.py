"""`gpt2cpu batch --ray`: the same job on a local Ray cluster (ray.init(num_cpus=2)) gives
the local run's output row for row; Gpt2cpuPredictor in a pipeline of one's own (issue 21).
One Ray cluster for the whole module: starting one takes seconds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gpt2cpu.jobs import JobSpec, run_job
from job_data import MODEL, good_rows, read_jsonl, rows_with_bad_ones, write_jsonl

ray = pytest.importorskip("ray", reason="the Ray tests need ray (the ray extra)")
pytest.importorskip("ray.data", reason="the Ray tests need Ray Data (the ray extra)")

GENERATE = {"max_new_tokens": 8, "temperature": 0.9, "top_p": 0.9}


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"GPT2CPU_NUM_THREADS": "1"}})
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield
    finally:
        ray.shutdown()


def both(tmp_path: Path, task: str, rows: list[dict[str, Any]], **kwargs: Any
         ) -> tuple[bytes, bytes, bytes, bytes]:
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    outputs = []
    for where in (None, ""):
        output = tmp_path / f"{'local' if where is None else 'ray'}.jsonl"
        run_job(JobSpec(source, output, task, model=Path(MODEL), threads=1, progress=False,
                        ray=where, **kwargs))
        outputs += [output.read_bytes(), output.with_name(output.name + ".errors.jsonl")
                    .read_bytes()]
    return outputs[0], outputs[1], outputs[2], outputs[3]


@pytest.mark.usefixtures("cluster")
@pytest.mark.parametrize("task", ["generate", "score"])
def test_ray_output_equals_the_local_output(tmp_path: Path, task: str) -> None:
    options = GENERATE if task == "generate" else {}
    local, local_errors, on_ray, ray_errors = both(
        tmp_path, task, rows_with_bad_ones(20), options=options, seed=11, batch_size=4,
        ray_actors=2)
    assert len(local.splitlines()) == 20 and len(local_errors.splitlines()) == 4
    assert on_ray == local and ray_errors == local_errors


@pytest.mark.usefixtures("cluster")
def test_ray_resumes_a_local_jobs_parts(tmp_path: Path) -> None:
    """The parts are the same whoever wrote them: a job begun here finishes on Ray."""
    from gpt2cpu.jobs.parts import PartStore

    rows = good_rows(12)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    whole = tmp_path / "whole.jsonl"
    spec = JobSpec(source, whole, "score", model=Path(MODEL), threads=1, progress=False,
                   batch_size=4)
    run_job(spec)
    output = tmp_path / "out.jsonl"
    store = PartStore.open(output, JobSpec(**{**spec.__dict__, "output": output}).identity())
    from gpt2cpu.jobs.tasks import Outcome

    done = read_jsonl(whole)[:5]
    store.write([Outcome(i, r.pop("id"), r) for i, r in enumerate(done)])
    store.close()  # as the local run's end does: it releases OUTPUT.parts/lock
    summary = run_job(JobSpec(**{**spec.__dict__, "output": output, "ray": ""}))
    assert summary.done_before == 5 and summary.computed == 7
    assert output.read_bytes() == whole.read_bytes()


@pytest.mark.usefixtures("cluster")
def test_the_predictor_in_a_users_own_pipeline(tmp_path: Path) -> None:
    from gpt2cpu.ray import Gpt2cpuPredictor

    rows = good_rows(6)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    ds = ray.data.read_json(str(source)).map_batches(
        Gpt2cpuPredictor, fn_constructor_kwargs={"task": "score", "model": MODEL},
        concurrency=1, num_cpus=1, batch_size=4, batch_format="pandas",
    )
    got = sorted(ds.take_all(), key=lambda r: r["id"])
    run_job(JobSpec(source, tmp_path / "local.jsonl", "score", model=Path(MODEL), threads=1,
                    progress=False))
    want = sorted(read_jsonl(tmp_path / "local.jsonl"), key=lambda r: r["id"])
    assert [r["id"] for r in got] == [r["id"] for r in want]
    for g, w in zip(got, want, strict=True):
        assert g["error"] is None and g["logprob"] == w["logprob"]
        assert list(g["token_logprobs"]) == w["token_logprobs"]
        assert g["text"] == rows[int(g["id"][1:])]["text"]  # the input's columns are kept
