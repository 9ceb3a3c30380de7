"""An interrupted `gpt2cpu batch` resumes: killed (SIGKILL, SIGINT) at random points, the
same command finishes the job with output equal to an uninterrupted run's, row for row,
having recomputed at most one batch of rows that were already written (issue 21)."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from gpt2cpu.jobs import JobSpec, run_job
from gpt2cpu.jobs.parts import MANIFEST, PartStore
from job_data import MODEL, batch_command, batch_env, good_rows, rows_with_bad_ones, write_jsonl

BATCH = 4
ROWS = 80  # with the 4 bad rows, 21 batches: three interrupts of up to 6 land mid-job
FLAGS = ("--task", "generate", "-n", "16", "--ignore-eos", "--seed", "3",
         "--batch-size", str(BATCH), "--json")


def job(source: Path, output: Path) -> JobSpec:
    return JobSpec(source, output, "generate", model=Path(MODEL), batch_size=BATCH, seed=3,
                   options={"max_new_tokens": 16, "ignore_eos": True}, threads=1,
                   progress=False)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes, bytes]:
    """The input, and an uninterrupted run's output and errors."""
    directory = tmp_path_factory.mktemp("resume")
    source = write_jsonl(directory / "in.jsonl", rows_with_bad_ones(ROWS))
    output = directory / "whole.jsonl"
    run_job(job(source, output))
    errors = output.with_name(output.name + ".errors.jsonl")
    return source, output.read_bytes(), errors.read_bytes()


def parts_written(output: Path) -> int:
    try:
        return sum(1 for p in (output.with_name(output.name + ".parts")).iterdir()
                   if p.name.startswith("part-") and p.suffix == ".jsonl")
    except FileNotFoundError:
        return 0


def _sigint_default() -> None:
    """In the job's process: SIGINT's default action, which Python then turns into
    KeyboardInterrupt. A test run started in the background of a non-interactive shell
    (as `cmd &` is) ignores SIGINT, and so would every job it starts, as background jobs
    should: the SIGINT runs then finished their jobs, leaving nothing to resume."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt(source: Path, output: Path, sig: signal.Signals, rng: random.Random) -> bool:
    """Start the job, signal it at a random point once some parts are written; whether it
    was still running then."""
    process = subprocess.Popen(batch_command(str(source), str(output), *FLAGS),
                               env=batch_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, preexec_fn=_sigint_default)
    wanted = parts_written(output) + rng.randint(1, 4)  # parts of this run, not earlier ones
    deadline = time.monotonic() + 120
    seen, interval = parts_written(output), 0.0
    last: float | None = None  # when this run's latest part appeared
    while seen < wanted and process.poll() is None:
        assert time.monotonic() < deadline, "the job wrote no parts"
        time.sleep(0.002)
        if (now := parts_written(output)) != seen:
            seen, at = now, time.monotonic()
            interval = at - last if last is not None else 0.0
            last = at
    # Anywhere in a batch (computing, writing, committing), but within one part's time:
    # a fixed wait spanned several parts once they were fast, and the third run could then
    # finish the job, leaving the rerun nothing to resume.
    time.sleep(rng.uniform(0.0, interval))
    running = process.poll() is None
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    if running and sig == signal.SIGINT and process.returncode != 0:
        assert "Traceback" not in stderr and "interrupted" in stderr, stderr
    return running


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_a_killed_job_resumes_to_the_uninterrupted_output(
    tmp_path: Path, reference: tuple[Path, bytes, bytes], sig: signal.Signals
) -> None:
    source, whole, whole_errors = reference
    rng = random.Random(sig.value)
    output = tmp_path / "out.jsonl"
    # Three times in a row, so that resumed jobs are interrupted too.
    interrupted = [interrupt(source, output, sig, rng) for _ in range(3)]
    rerun = subprocess.run(batch_command(str(source), str(output), *FLAGS),
                           env=batch_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["recomputed"] <= BATCH
    assert summary["done_before"] + summary["computed"] == summary["rows"] == ROWS + 4
    assert any(interrupted), "every run ended before its signal: the test tested nothing"
    if interrupted[-1]:
        assert summary["done_before"] > 0 and summary["computed"] > 0
    assert output.read_bytes() == whole
    assert output.with_name(output.name + ".errors.jsonl").read_bytes() == whole_errors


def test_an_uncommitted_part_is_run_again_and_counted(tmp_path: Path,
                                                      reference: tuple[Path, bytes, bytes]) -> None:
    """A kill between a part's rename and its manifest line (the one window where written
    rows are lost): the rerun deletes the part, runs its rows again and says so."""
    source, whole, _ = reference
    output = tmp_path / "out.jsonl"
    spec = job(source, output)
    store = PartStore.open(output, spec.identity())
    from gpt2cpu.jobs.tasks import Outcome

    first = [json.loads(line) for line in whole.splitlines()[:8]]  # rows 0-7 are good rows
    store.write([Outcome(i, r.pop("id"), r) for i, r in enumerate(first)])
    manifest = store.directory / MANIFEST
    lines = manifest.read_bytes().splitlines(keepends=True)
    assert len(lines) == 2  # the identity, one part
    orphan = store.directory / "part-000000000008-000000000011.jsonl"
    orphan.write_text("".join(json.dumps({"row": i, "id": "x", "result": {}}) + "\n"
                              for i in range(8, 12)))
    with open(manifest, "ab") as f:
        f.write(b'{"part": "part-0000000000')  # torn by the kill
    store.close()  # as the kill does
    summary = run_job(JobSpec(**{**spec.__dict__, "strict": False}))
    assert summary.done_before == 8 and summary.recomputed == 4
    assert summary.computed == ROWS + 4 - 8
    assert output.read_bytes() == whole


def test_the_manifest_commits_before_the_rows_count_as_done(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", good_rows(3))
    spec = job(source, tmp_path / "out.jsonl")
    store = PartStore.open(spec.output, spec.identity())
    assert store.done == set()
    (store.directory / "part-000000000000-000000000002.jsonl.tmp").write_text('{"row": 0')
    store.close()
    reopened = PartStore.open(spec.output, spec.identity())
    assert reopened.done == set() and reopened.orphaned == set()
    assert sorted(p.name for p in reopened.directory.iterdir()) == ["lock", MANIFEST]


def test_a_job_with_a_banned_token_resumes(tmp_path: Path) -> None:
    """Options that JSON changes on the way through the manifest (int keys, -inf) still
    match the same command's."""
    source = write_jsonl(tmp_path / "in.jsonl", good_rows(3))
    spec = JobSpec(source, tmp_path / "out.jsonl", "generate", model=Path(MODEL),
                   options={"logit_bias": {0: float("-inf")}, "max_new_tokens": 4})
    PartStore.open(spec.output, spec.identity()).close()
    assert PartStore.open(spec.output, spec.identity()).done == set()


def test_a_full_disk_stops_the_job_and_the_rerun_finishes_it(
    tmp_path: Path, reference: tuple[Path, bytes, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from gpt2cpu.jobs import parts

    source, whole, _ = reference
    output = tmp_path / "out.jsonl"
    real = parts.write_atomically
    calls = 0

    def filling_up(path: Path, write: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 5:  # the manifest, three parts, then the disk is full mid-part
            path.with_name(path.name + ".tmp").write_bytes(b'{"row": 12, "id"')
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, write)

    monkeypatch.setattr(parts, "write_atomically", filling_up)
    with pytest.raises(OSError, match="No space left"):
        run_job(job(source, output))
    monkeypatch.undo()
    summary = run_job(job(source, output))
    assert summary.done_before == 3 * BATCH and summary.recomputed == 0
    assert output.read_bytes() == whole
