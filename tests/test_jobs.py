"""`gpt2cpu batch` and gpt2cpu.jobs on one machine: row seeds, the four task adapters, the
formats, bad rows, --strict, and the context rule (issue 21)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import gpt2cpu
import numpy as np
import pytest
from gpt2cpu.jobs import JobSpec, RowFailed, row_seed, run_job
from gpt2cpu.jobs.parts import JobConflict
from gpt2cpu.tasks.logprobs import log_softmax, log_softmax_at
from job_data import (
    MODEL,
    good_rows,
    read_jsonl,
    rows_with_bad_ones,
    run_batch,
    write_csv,
    write_jsonl,
    write_parquet,
)

GENERATE: dict[str, Any] = {"max_new_tokens": 6, "temperature": 0.9, "top_k": 40}


@pytest.fixture(scope="module")
def model() -> gpt2cpu.Model:
    return gpt2cpu.Model.from_pretrained(MODEL, threads=1)


def spec(tmp: Path, task: str, rows: list[dict[str, Any]], name: str = "out.jsonl",
         **kwargs: Any) -> JobSpec:
    source = write_jsonl(tmp / f"in-{name}.jsonl", rows)
    return JobSpec(source, tmp / name, task, model=Path(MODEL), threads=1, progress=False,
                   **kwargs)


# row_seed


def test_row_seed_is_the_documented_derivation() -> None:
    import hashlib

    digest = hashlib.sha256(b"gpt2cpu.row_seed.v1\x0012\x00r7").digest()
    assert row_seed(12, "r7") == int.from_bytes(digest[:8], "big") & (2**63 - 1)
    assert row_seed(0, 7) == row_seed(0, "7")  # JSONL's 7 is CSV's "7"
    seeds = {row_seed(base, i) for base in range(3) for i in range(100)}
    assert len(seeds) == 300  # no base + id arithmetic: job 1's row 0 is not job 0's row 1
    assert all(0 <= s < 2**63 for s in seeds)
    with pytest.raises(ValueError, match="base"):
        row_seed(-1, 0)


# generate


def test_generate_rows_are_the_api_with_each_rows_seed(tmp_path: Path,
                                                       model: gpt2cpu.Model) -> None:
    rows = good_rows(9)
    summary = run_job(spec(tmp_path, "generate", rows, options=GENERATE, seed=5, batch_size=4))
    out = read_jsonl(tmp_path / "out.jsonl")
    assert [r["id"] for r in out] == [r["id"] for r in rows]
    for row, got in zip(rows, out, strict=True):
        want = model.generate(row["text"], seed=row_seed(5, row["id"]), **GENERATE)
        assert got["text"] == want.text and got["finish_reason"] == want.finish_reason
        assert got["new_tokens"] == len(want.token_ids)
    assert summary.computed == 9 and summary.errors == 0 and summary.tokens > 9
    assert (tmp_path / "out.jsonl.errors.jsonl").read_text() == ""
    assert not (tmp_path / "out.jsonl.parts").exists()


def test_output_does_not_depend_on_the_batch_size(tmp_path: Path) -> None:
    rows = rows_with_bad_ones(10)
    outputs = []
    for size in (1, 3, 16):
        name = f"out{size}.jsonl"
        run_job(spec(tmp_path, "generate", rows, name, options=GENERATE, batch_size=size))
        outputs.append((tmp_path / name).read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]


def test_bad_rows_go_to_the_errors_file_and_the_job_goes_on(tmp_path: Path) -> None:
    rows = rows_with_bad_ones(3)
    summary = run_job(spec(tmp_path, "generate", rows, options=GENERATE, batch_size=2))
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")] == ["r0", "r1", "r2"]
    errors = {e["id"]: e for e in read_jsonl(tmp_path / "out.jsonl.errors.jsonl")}
    assert summary.errors == 4 and list(errors) == ["no-text", "empty", "long", "number"]
    assert "text column 'text'" in errors["no-text"]["error"]
    assert "empty" in errors["empty"]["error"]
    assert "more than the model's context of 256 tokens" in errors["long"]["error"]
    assert "holds int, not text" in errors["number"]["error"]
    assert errors["long"]["row"] == 5


def test_strict_stops_at_the_first_bad_row_keeping_the_rows_before(tmp_path: Path) -> None:
    rows = rows_with_bad_ones(3)
    job = spec(tmp_path, "score", rows, strict=True, batch_size=2)
    with pytest.raises(RowFailed, match="row 3 .*'no-text'.*text column"):
        run_job(job)
    parts = tmp_path / "out.jsonl.parts"
    assert sum(1 for p in parts.iterdir() if p.name.startswith("part-")) == 2  # rows 0-1, 2
    run = run_batch(str(job.input), str(tmp_path / "cli.jsonl"), "--task", "score", "--strict")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "--strict stops here" in run.stderr


def test_new_tokens_past_the_context_are_capped_with_finish_reason_length(
    tmp_path: Path, model: gpt2cpu.Model
) -> None:
    text = "to be or not to be, " * 15
    prompt = len(model.require_tokenizer("").encode(text))
    rows = [{"id": 0, "text": text}]
    run_job(spec(tmp_path, "generate", rows, options={"max_new_tokens": 500,
                                                        "ignore_eos": True}))
    (out,) = read_jsonl(tmp_path / "out.jsonl")
    # The last new token is never run: a prompt of p tokens leaves room for 256 + 1 - p.
    assert out["finish_reason"] == "length" and out["new_tokens"] == 256 + 1 - prompt


def test_a_prompt_of_exactly_the_context_gets_one_token(tmp_path: Path,
                                                        model: gpt2cpu.Model) -> None:
    text = "O" + " O" * 255
    assert len(model.require_tokenizer("").encode(text)) == 256  # the context
    run_job(spec(tmp_path, "generate", [{"id": 0, "text": text}],
                 options={"max_new_tokens": 5}))
    (out,) = read_jsonl(tmp_path / "out.jsonl")
    want = model.generate(text, max_new_tokens=5, seed=row_seed(0, 0))
    assert (out["finish_reason"], out["new_tokens"]) == ("length", 1)
    assert out["text"] == want.text and len(want.token_ids) == 1  # as the API does
    # What the help says, then: only a prompt longer than the context is a bad row.
    help_text = " ".join(run_batch("--help").stdout.split())
    assert "fills the context" not in help_text
    assert "a prompt longer than the context is a bad row" in help_text


# score


def test_score_is_the_incremental_log_likelihood(tmp_path: Path, model: gpt2cpu.Model) -> None:
    rows = good_rows(5) + [{"id": "one", "text": "A"}]
    run_job(spec(tmp_path, "score", rows, batch_size=4))
    out = {r["id"]: r for r in read_jsonl(tmp_path / "out.jsonl")}
    tokenizer = model.require_tokenizer("")
    for row in rows:
        ids = tokenizer.encode(row["text"])
        # Another path through the engine: one token at a time through the KV cache.
        seq = model.new_sequence()
        logprobs, greedy = [], []
        for prev, nxt in zip(ids, ids[1:], strict=False):
            logits = seq.append([prev]).astype(np.float64)
            logprobs.append(logits[nxt] - logits.max()
                            - math.log(np.exp(logits - logits.max()).sum()))
            greedy.append(int(logits.argmax()) == nxt)
        got = out[row["id"]]
        assert got["tokens"] == len(ids) and len(got["token_logprobs"]) == len(ids) - 1
        assert got["logprob"] == pytest.approx(sum(logprobs), abs=1e-4)
        assert np.allclose(got["token_logprobs"], logprobs, atol=1e-4)
        assert got["greedy"] == all(greedy)
    assert out["one"]["logprob"] == 0.0 and out["one"]["greedy"] is True


def test_log_softmax_is_exact_where_float32_is_not() -> None:
    logits = np.array([[1000.0, 0.0, -1000.0], [3.0, 3.0, 3.0]], dtype=np.float32)
    values, greedy = log_softmax_at(logits, np.array([1, 2]))
    assert values.dtype == np.float64
    assert values[0] == pytest.approx(-1000.0, rel=1e-12)  # naive exp overflows to nan
    assert values[1] == pytest.approx(-math.log(3), rel=1e-12)
    assert greedy.tolist() == [False, False]
    # The one log_softmax of generation's logprobs= and the server agrees with it, and keeps
    # a row whose every token is banned at -inf (not nan).
    rows = log_softmax(logits)
    assert rows[[0, 1], [1, 2]] == pytest.approx(values, rel=1e-12)
    banned = log_softmax(np.full((2, 3), -np.inf))
    assert np.isneginf(banned).all()


def test_a_score_row_may_hold_one_token_more_than_the_context(tmp_path: Path,
                                                              model: gpt2cpu.Model) -> None:
    ids = model.require_tokenizer("").encode("to be or not to be, " * 120)
    fits, too_long = model.require_tokenizer("").decode(ids[:257]), "x " * 600
    assert len(model.require_tokenizer("").encode(fits)) == 257
    run_job(spec(tmp_path, "score", [{"text": fits}, {"text": too_long}]))
    (out,) = read_jsonl(tmp_path / "out.jsonl")
    assert out["id"] == 0 and len(out["token_logprobs"]) == 256  # row numbers are the ids
    (error,) = read_jsonl(tmp_path / "out.jsonl.errors.jsonl")
    assert error["id"] == 1 and "more than the 257 this task takes" in error["error"]


# formats


def test_csv_and_parquet_in_and_out_give_the_jsonl_rows(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow", reason="Parquet needs pyarrow (the parquet extra)")
    import pyarrow.parquet as pq

    rows = good_rows(6)
    run_job(spec(tmp_path, "score", rows))
    want = read_jsonl(tmp_path / "out.jsonl")
    for source in (write_csv(tmp_path / "in.csv", rows),
                   write_parquet(tmp_path / "in.parquet", rows)):
        for fmt in ("csv", "parquet", "jsonl"):
            output = tmp_path / f"{source.suffix[1:]}-out.{fmt}"
            run_job(JobSpec(source, output, "score", model=Path(MODEL), threads=1,
                            progress=False))
            if fmt == "parquet":
                got = pq.read_table(output).to_pylist()
            elif fmt == "csv":
                import csv

                with open(output, newline="", encoding="utf-8") as f:
                    got = [{**r, "logprob": float(r["logprob"]), "tokens": int(r["tokens"]),
                            "greedy": r["greedy"] == "True",
                            "token_logprobs": json.loads(r["token_logprobs"])}
                           for r in csv.DictReader(f)]
            else:
                got = read_jsonl(output)
            assert got == want, (source, fmt)


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path: Path) -> None:
    rows = good_rows(3)
    run_job(spec(tmp_path, "score", rows))
    want = read_jsonl(tmp_path / "out.jsonl")
    csv_source = write_csv(tmp_path / "in.csv", rows)
    jsonl_source = write_jsonl(tmp_path / "in-bom.jsonl", rows)
    for source in (csv_source, jsonl_source):  # as Excel and some Windows tools save them
        source.write_bytes(b"\xef\xbb\xbf" + source.read_bytes())
        output = tmp_path / f"bom-{source.suffix[1:]}.jsonl"
        summary = run_job(JobSpec(source, output, "score", model=Path(MODEL), threads=1,
                                  progress=False))
        assert summary.errors == 0 and read_jsonl(output) == want, source


def test_help_lists_the_job_and_generation_flags() -> None:
    run = run_batch("--help")
    assert run.returncode == 0
    for flag in ("--task", "--column", "--id-column", "--batch-size", "--seed", "--strict",
                 "--ray", "--ray-actors", "--max-new-tokens", "--temperature", "--top-p",
                 "--stop", "--pooling", "--json", "--overwrite"):
        assert flag in run.stdout, flag


def test_an_unknown_extension_is_one_line(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", good_rows(1))
    run = run_batch(str(tmp_path / "in.jsonl"), str(tmp_path / "out.txt"), "--task", "score")
    assert run.returncode == 2 and "unknown extension '.txt'" in run.stderr
    assert "Traceback" not in run.stderr


# jobs that are not this one


def test_another_jobs_parts_or_a_finished_output_are_not_overwritten(tmp_path: Path) -> None:
    rows = good_rows(3)
    job = spec(tmp_path, "generate", rows, options=GENERATE, seed=1)
    (tmp_path / "out.jsonl.parts").mkdir()
    run_job(JobSpec(**{**job.__dict__, "seed": 2}))  # an empty parts dir: a fresh start
    with pytest.raises(JobConflict, match="a finished job's output"):
        run_job(job)
    (tmp_path / "out.jsonl").unlink()
    (tmp_path / "out.jsonl.parts").mkdir()
    (tmp_path / "out.jsonl.parts" / "manifest.jsonl").write_text(
        json.dumps({"job": {**job.identity(), "task_options": {}}}) + "\n")
    with pytest.raises(JobConflict, match=r"differs in: task_options"):
        run_job(job)
    summary = run_job(JobSpec(**{**job.__dict__, "overwrite": True}))
    assert summary.computed == 3
    # --overwrite in a resumed command keeps the job's own parts.
    from gpt2cpu.jobs.parts import PartStore
    from gpt2cpu.jobs.tasks import Outcome

    first = read_jsonl(tmp_path / "out.jsonl")[0]
    store = PartStore.open(job.output, job.identity(), overwrite=True)
    store.write([Outcome(0, first.pop("id"), first)])
    store.close()
    summary = run_job(JobSpec(**{**job.__dict__, "overwrite": True}))
    assert summary.done_before == 1 and summary.computed == 2


def test_a_job_that_cannot_run_leaves_no_parts(tmp_path: Path) -> None:
    rows = good_rows(2)
    job = spec(tmp_path, "embed", rows, layer=99)
    with pytest.raises(ValueError, match=r"layer must be an integer in \[-7, 6\], got 99"):
        run_job(job)
    with pytest.raises(ValueError, match="--task classify needs a task-head checkpoint"):
        run_job(JobSpec(**{**job.__dict__, "task": "classify"}))  # the bundled model has none
    assert not (tmp_path / "out.jsonl.parts").exists()
    assert run_job(JobSpec(**{**job.__dict__, "layer": -1})).computed == 2  # the fixed command
    missing = tmp_path / "no-such-dir" / "out.jsonl"
    with pytest.raises(FileNotFoundError, match="the output's directory .*no-such-dir"):
        run_job(JobSpec(**{**job.__dict__, "output": missing}))
    assert not missing.parent.exists()


def test_a_job_that_fails_before_its_first_row_leaves_no_parts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As a model that cannot do the task fails under Ray: in the actors, once parts exist.
    from gpt2cpu.jobs.tasks import ScoreTask

    def fail(*args: object) -> None:
        raise ValueError("the actor cannot do the task")

    job = spec(tmp_path, "score", good_rows(3), batch_size=2)
    with monkeypatch.context() as patch:
        patch.setattr(ScoreTask, "run", fail)
        with pytest.raises(ValueError, match="cannot do the task"):
            run_job(job)
    assert not (tmp_path / "out.jsonl.parts").exists()
    # Once a row is written, a failure keeps the parts for the resume.
    calls = []
    real = ScoreTask.run

    def second_fails(self: ScoreTask, *args: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise ValueError("the second batch fails")
        return real(self, *args)

    with monkeypatch.context() as patch:
        patch.setattr(ScoreTask, "run", second_fails)
        with pytest.raises(ValueError, match="second batch"):
            run_job(job)
    assert (tmp_path / "out.jsonl.parts").exists()
    assert run_job(job).done_before == 2


# embed and classify: adapters to Model.embed and Model.classify


def test_embed_rows_are_model_embed(tmp_path: Path, model: gpt2cpu.Model) -> None:
    rows = good_rows(5)
    run_job(spec(tmp_path, "embed", rows, pooling="last", normalize=True, batch_size=2))
    out = read_jsonl(tmp_path / "out.jsonl")
    tokenizer = model.require_tokenizer("")
    want = model.embed([tokenizer.encode(r["text"]) for r in rows], pooling="last",
                       normalize=True)
    assert np.array_equal(np.array([r["embedding"] for r in out], dtype=np.float32), want)


def test_classify_rows_are_model_classify(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch", reason="the classifier checkpoint is made with torch")
    transformers = pytest.importorskip("transformers")
    import shutil

    config = json.loads((Path(MODEL) / "config.json").read_text())
    shape = ("vocab_size", "bos_token_id", "eos_token_id")
    cfg = transformers.GPT2Config(**{k: v for k, v in config.items() if k.startswith("n_")
                                     or k in shape}, num_labels=3, pad_token_id=0,
                                  id2label={0: "tragedy", 1: "comedy", 2: "history"})
    torch.manual_seed(0)
    directory = tmp_path / "classifier"
    transformers.GPT2ForSequenceClassification(cfg).eval().save_pretrained(directory)
    for name in ("tokenizer.json", "vocab.json", "merges.txt"):
        shutil.copy(Path(MODEL) / name, directory / name)
    rows = good_rows(5)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    run_job(JobSpec(source, tmp_path / "out.jsonl", "classify", model=directory, threads=1,
                    progress=False, batch_size=2))
    out = read_jsonl(tmp_path / "out.jsonl")
    classifier = gpt2cpu.Model.from_pretrained(directory, threads=1)
    want = classifier.classify([r["text"] for r in rows])
    assert [r["label"] for r in out] == [c.label for c in want]
    assert np.array_equal(np.array([r["probabilities"] for r in out]),
                          np.array([c.probabilities for c in want]))


# one run per output, and nothing of the user's is written over or deleted


def test_a_second_run_on_an_output_in_use_is_refused_at_once(tmp_path: Path) -> None:
    from gpt2cpu.jobs.parts import PartStore
    from gpt2cpu.jobs.tasks import Outcome

    job = spec(tmp_path, "score", good_rows(3))
    running = PartStore.open(job.output, job.identity())  # a run in progress, one row in
    running.write([Outcome(0, "r0", None, "a bad row")])
    with pytest.raises(JobConflict, match=r"out.jsonl: another gpt2cpu batch run is writing"):
        run_job(job)
    with pytest.raises(JobConflict, match="another gpt2cpu batch run"):
        run_job(JobSpec(**{**job.__dict__, "overwrite": True, "task": "embed"}))
    run = run_batch(str(job.input), str(job.output), "--task", "score")  # another process
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "another gpt2cpu batch run is writing this output" in run.stderr
    parts = sorted(p.name for p in running.directory.iterdir())
    assert parts == ["lock", "manifest.jsonl", "part-000000000000-000000000000.jsonl"]
    assert not job.output.exists()
    running.close()  # the run ends: the same command resumes it
    assert run_job(job).done_before == 1
    assert not running.directory.exists()


def test_a_job_never_writes_over_its_input(tmp_path: Path) -> None:
    rows = good_rows(2)
    for name, output, what in [("same.jsonl", "same.jsonl", "output"),
                                ("o.jsonl.errors.jsonl", "o.jsonl", "errors file")]:
        source = write_jsonl(tmp_path / name, rows)
        before = source.read_bytes()
        run = run_batch(str(source), str(tmp_path / output), "--task", "score", "--overwrite")
        assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
        assert f"the input is also this job's {what}" in run.stderr
        assert source.read_bytes() == before
        assert {p.name for p in tmp_path.iterdir()} <= {"same.jsonl", "o.jsonl.errors.jsonl"}
    linked = tmp_path / "linked.jsonl"
    import os

    os.link(tmp_path / "same.jsonl", linked)  # another name of the same file
    with pytest.raises(ValueError, match=r"the input is also this job's output"):
        run_job(JobSpec(tmp_path / "same.jsonl", linked, "score", model=Path(MODEL),
                        overwrite=True))
    assert (tmp_path / "same.jsonl").read_bytes() == before
    assert not (tmp_path / "linked.jsonl.parts").exists()


def test_a_parts_directory_with_files_of_someone_else_is_left_alone(tmp_path: Path) -> None:
    job = spec(tmp_path, "score", good_rows(2))
    directory = tmp_path / "out.jsonl.parts"
    directory.mkdir()
    (directory / "notes.txt").write_text("precious")
    for overwrite in (False, True):
        with pytest.raises(JobConflict, match=r"out.jsonl.parts holds files gpt2cpu batch did "
                           r"not write \(notes.txt\); they are not deleted"):
            run_job(JobSpec(**{**job.__dict__, "overwrite": overwrite}))
        assert [p.name for p in directory.iterdir()] == ["notes.txt"]
    assert (directory / "notes.txt").read_text() == "precious"


# unreadable input


def test_unreadable_input_names_the_file_and_leaves_nothing_behind(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow", reason="Parquet needs pyarrow (the parquet extra)")
    corrupt = tmp_path / "in.parquet"
    corrupt.write_bytes(b"PAR1 this is no Parquet file")
    job = JobSpec(corrupt, tmp_path / "out.jsonl", "score", model=Path(MODEL), threads=1,
                  progress=False)
    with pytest.raises(ValueError, match=r"in.parquet: not a readable Parquet file"):
        run_job(job)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet"]
    run = run_batch(str(corrupt), str(tmp_path / "out.jsonl"), "--task", "embed")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert f"{corrupt}: not a readable Parquet file" in run.stderr


def test_a_long_csv_field_or_a_line_that_is_not_utf8_is_one_row(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "in.csv", [{"id": "big", "text": "x " * 100_000},
                                             *good_rows(2)])
    summary = run_job(JobSpec(source, tmp_path / "out.jsonl", "score", model=Path(MODEL),
                              threads=1, progress=False))
    assert (summary.rows, summary.errors) == (3, 1)  # too long for the context, not fatal
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")] == ["r0", "r1"]
    source = write_jsonl(tmp_path / "in.jsonl", good_rows(3))
    lines = source.read_bytes().splitlines(keepends=True)
    source.write_bytes(lines[0] + lines[1].replace(b"JULIET", b"JUL\xffIET") + lines[2])
    run = run_batch(str(source), str(tmp_path / "utf.jsonl"), "--task", "score")
    assert run.returncode == 0, run.stderr
    (error,) = read_jsonl(tmp_path / "utf.jsonl.errors.jsonl")
    assert error == {"row": 1, "id": 1, "error": "line 2 is not UTF-8 text (byte 0xff at "
                     "character 26)"}
    assert [r["id"] for r in read_jsonl(tmp_path / "utf.jsonl")] == ["r0", "r2"]
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b"id,text\nb,\"JUL\xffIET\"\na,ROMEO\n")
    summary = run_job(JobSpec(broken, tmp_path / "b.jsonl", "score", model=Path(MODEL),
                              threads=1, progress=False))
    (error,) = read_jsonl(tmp_path / "b.jsonl.errors.jsonl")
    assert summary.rows == 2 and error["error"].startswith("line 2 is not UTF-8 text")


def test_blank_csv_lines_are_no_rows(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("id,text\n\na,ROMEO:\n\n\nb,JULIET:\n\n", encoding="utf-8")
    run = run_batch(str(source), str(tmp_path / "out.jsonl"), "--task", "score", "--json")
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert (summary["rows"], summary["computed"], summary["errors"]) == (2, 2, 0)
    assert "2 rows run (0 of 2 were done before" in run.stderr


# ids and columns


def test_a_row_without_an_id_is_a_bad_row_wherever_it_is(tmp_path: Path) -> None:
    rows = [{"text": "ROMEO:"}, {"id": "b", "text": "JULIET:"}, {"text": "PAULINA:"}]
    run_job(spec(tmp_path, "generate", rows, options=GENERATE, seed=1))
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")] == ["b"]
    errors = read_jsonl(tmp_path / "out.jsonl.errors.jsonl")
    assert [(e["row"], e["error"]) for e in errors] == [
        (0, "no value in the id column 'id'"), (2, "no value in the id column 'id'")]
    # Without the column anywhere, the row numbers are the ids.
    run_job(spec(tmp_path, "score", [{"text": "ROMEO:"}, {"text": "JULIET:"}], "num.jsonl"))
    assert [r["id"] for r in read_jsonl(tmp_path / "num.jsonl")] == [0, 1]


def test_an_id_column_named_as_a_result_column_is_refused(tmp_path: Path) -> None:
    rows = [{"text": "ROMEO:", "error": "e1"}]
    job = spec(tmp_path, "generate", rows, options=GENERATE, id_column="text")
    with pytest.raises(ValueError, match=r"the id column 'text' has the name of a column the "
                       r"job writes beside it \(--task generate writes text, finish_reason"):
        run_job(job)
    with pytest.raises(ValueError, match=r"the id column 'error' .*the errors file row, error"):
        run_job(JobSpec(**{**job.__dict__, "task": "score", "id_column": "error"}))
    assert not (tmp_path / "out.jsonl.parts").exists() and not job.output.exists()


def test_paths_may_be_strings(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", good_rows(2))
    summary = run_job(JobSpec(str(source), str(tmp_path / "out.jsonl"), "score",  # type: ignore[arg-type]
                              model=MODEL, progress=False))  # type: ignore[arg-type]
    assert summary.computed == 2 and len(read_jsonl(tmp_path / "out.jsonl")) == 2


# outputs: their schema, with or without rows


def test_a_parquet_output_takes_ids_of_mixed_types_as_text(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow", reason="Parquet needs pyarrow (the parquet extra)")
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = [{"id": 1, "text": "ROMEO:"}, {"id": "a", "text": "JULIET:"}]
    run_job(spec(tmp_path, "score", rows, "mixed.parquet"))
    table = pq.read_table(tmp_path / "mixed.parquet")
    assert table.column("id").to_pylist() == ["1", "a"]  # canonical_id: 1 seeds as "1"
    run_job(spec(tmp_path, "score", [{"id": 1, "text": "ROMEO:"}], "one.parquet"))
    assert pq.read_table(tmp_path / "one.parquet").column("id").to_pylist() == [1]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("in-")) == [
        "mixed.parquet", "mixed.parquet.errors.jsonl", "one.parquet", "one.parquet.errors.jsonl"]


def test_an_output_without_rows_has_its_columns(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow", reason="Parquet needs pyarrow (the parquet extra)")
    import pyarrow.parquet as pq

    header_only = write_csv(tmp_path / "in.csv", [])
    run_job(JobSpec(header_only, tmp_path / "out.csv", "score", model=Path(MODEL),
                    progress=False))
    assert (tmp_path / "out.csv").read_bytes() == b"id,logprob,tokens,greedy,token_logprobs\r\n"
    bad = write_parquet(tmp_path / "bad.parquet", [{"id": "a", "text": ""}])
    run_job(JobSpec(bad, tmp_path / "out.parquet", "embed", model=Path(MODEL),
                    pooling="none", progress=False))
    schema = pq.read_schema(tmp_path / "out.parquet")
    assert schema.names == ["id", "embedding"]
    assert str(schema.field("embedding").type) == "list<element: list<element: double>>"
