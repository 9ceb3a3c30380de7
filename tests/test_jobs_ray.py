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


@pytest.mark.usefixtures("cluster")
@pytest.mark.parametrize("ids", [[1, 2.5], [1, "a", True, [1, 2], 9007199254740993]],
                         ids=["int-and-float", "every-json-type"])
def test_ids_of_mixed_types_give_the_local_output(tmp_path: Path, ids: list[Any]) -> None:
    """An Arrow column has one type: raw ids of several came back changed (1 beside 2.5 as
    1.0, another seed, another text) or failed to convert at all."""
    rows = [{"id": i, "text": r["text"]} for i, r in zip(ids, good_rows(len(ids)), strict=True)]
    local, local_errors, on_ray, ray_errors = both(
        tmp_path, "generate", rows, options=GENERATE, seed=3, ray_actors=1)
    assert [r["id"] for r in read_jsonl(tmp_path / "ray.jsonl")] == ids
    assert on_ray == local and ray_errors == local_errors


@pytest.mark.parametrize(("task", "options", "message"), [
    ("generate", ["--top-p", "5"], r"top_p must be in \(0, 1\], got 5.0"),
    ("classify", [], "--task classify needs a task-head checkpoint"),
])
def test_a_job_the_model_cannot_do_fails_in_one_line(tmp_path: Path, task: str,
                                                     options: list[str], message: str) -> None:
    """Checked here before any actor starts, as a local run checks before its first row
    (in an actor it was Ray's 300-line traceback)."""
    import re

    from job_data import run_batch

    source = write_jsonl(tmp_path / "in.jsonl", good_rows(2))
    output = tmp_path / "out.jsonl"
    done = run_batch(str(source), str(output), "--task", task, *options, "--ray")
    assert done.returncode == 2
    assert re.fullmatch(f"gpt2cpu batch: error: {message}.*\n", done.stderr)
    assert not list(tmp_path.glob("out.jsonl*"))


@pytest.mark.usefixtures("cluster")
def test_an_actors_error_comes_back_as_its_own_exception(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """What the check before the run cannot see (a client of a remote cluster without the
    model directory) fails in the actors: their exception, not Ray's wrapping of it."""
    from gpt2cpu.jobs import runner

    monkeypatch.setattr(runner, "checked_model", lambda spec, task: None)
    source = write_jsonl(tmp_path / "in.jsonl", good_rows(2))
    with pytest.raises(ValueError, match=r"^top_p must be in \(0, 1\], got 5.0$") as caught:
        run_job(JobSpec(source, tmp_path / "out.jsonl", "generate", model=Path(MODEL),
                        progress=False, ray="", options={"top_p": 5.0}, ray_actors=1))
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.usefixtures("cluster")
def test_more_cpus_per_actor_than_a_node_has_is_refused(tmp_path: Path) -> None:
    context = ray.data.DataContext.get_current()
    waited = context.wait_for_min_actors_s
    context.wait_for_min_actors_s = 20  # unrefused, Ray waited forever for a 4-CPU node
    source = write_jsonl(tmp_path / "in.jsonl", good_rows(2))
    try:
        with pytest.raises(ValueError, match="--ray-cpus-per-actor 4 is more CPUs than any "
                           r"node of the Ray cluster has \(its largest has 2, 2 in all\)"):
            run_job(JobSpec(source, tmp_path / "out.jsonl", "score", model=Path(MODEL),
                            progress=False, ray="", ray_cpus_per_actor=4))
    finally:
        context.wait_for_min_actors_s = waited
    assert not list(tmp_path.glob("out.jsonl*"))


@pytest.mark.usefixtures("cluster")
@pytest.mark.parametrize(("bad", "message"), [
    ({"id": "d", "text": ""}, "row 3 (id 'd'): the text is empty"),
    ({"id": "d", "text": "to be or not to be, " * 120}, "row 3 (id 'd'): the text has"),
], ids=["found-reading", "found-in-an-actor"])
def test_strict_keeps_the_rows_before_the_first_bad_one(tmp_path: Path, bad: dict[str, Any],
                                                         message: str) -> None:
    from gpt2cpu.jobs import RowFailed
    from gpt2cpu.jobs.parts import PartStore

    rows = [*good_rows(3), bad, *good_rows(2)]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    for where in (None, ""):
        output = tmp_path / f"{where is None}.jsonl"
        spec = JobSpec(source, output, "score", model=Path(MODEL), threads=1, progress=False,
                       batch_size=2, strict=True, ray=where, ray_actors=1)
        with pytest.raises(RowFailed, match=r"--strict stops here; the 3 rows written so "
                           "far are kept") as caught:
            run_job(spec)
        assert str(caught.value).startswith(message)
        assert PartStore.open(output, spec.identity()).done == {0, 1, 2}


def test_the_predictor_keeps_the_inputs_columns(tmp_path: Path) -> None:
    """generate's result "text" beside the prompt's "text" goes to "result_text"; called
    here, outside Ray, as a pipeline's actor calls it."""
    import pandas as pd
    from gpt2cpu.ray import Gpt2cpuPredictor

    rows = good_rows(3)
    predictor = Gpt2cpuPredictor("generate", MODEL, options=GENERATE, seed=5)
    got = predictor(pd.DataFrame(rows))
    run_job(JobSpec(write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "local.jsonl",
                    "generate", model=Path(MODEL), threads=1, progress=False, seed=5,
                    options=GENERATE))
    want = read_jsonl(tmp_path / "local.jsonl")
    assert list(got["text"]) == [r["text"] for r in rows]
    assert list(got["result_text"]) == [w["text"] for w in want]
    assert list(got["finish_reason"]) == [w["finish_reason"] for w in want]
    assert list(got["error"]) == [None] * 3
    clash = pd.DataFrame([{**rows[0], "result_text": "mine"}])
    with pytest.raises(ValueError, match="the input has both 'text' and 'result_text' columns"):
        predictor(clash)


def test_the_predictor_outside_ray_does_not_start_it() -> None:
    import subprocess
    import sys

    from job_data import batch_env

    code = ("import ray\nfrom gpt2cpu.ray import Gpt2cpuPredictor\n"
            f"Gpt2cpuPredictor('score', {MODEL!r})\nprint(ray.is_initialized())\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=batch_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "False\n"
