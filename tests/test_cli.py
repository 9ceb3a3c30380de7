"""The `gpt2cpu` command line, run as a subprocess (`python -m gpt2cpu`)."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import gpt2cpu
import pytest
from hf_models import SMALL
from text_models import small_text_model_fixture, text_model_dir_fixture  # noqa: F401  (fixtures)

EOS = SMALL["vocab_size"] - 1
PROMPT = "def parse(self, args):\n    return"
SUMMARY = re.compile(
    r"^gpt2cpu: (\d+) prompt tokens?, (\d+) new tokens? \((length|stop|eos)\); "
    r"prefill [\d.]+ tok/s, decode [\d.]+ tok/s$"
)


def cli(*args: str, stdin: str | None = None, closed: int | None = None,
        io_encoding: str = "utf-8") -> subprocess.CompletedProcess[str]:
    """The command run with `closed` (a file descriptor: 0, 1 or 2) closed, as a shell's
    <&-, >&- or 2>&- leave it, and Python's streams in io_encoding."""
    env = {**os.environ, "GPT2CPU_NUM_THREADS": "1", "PYTHONIOENCODING": io_encoding}
    return subprocess.run(
        [sys.executable, "-m", "gpt2cpu", *args], input=stdin, capture_output=True, text=True,
        encoding="utf-8", env=env, timeout=300,
        preexec_fn=None if closed is None else lambda: os.close(closed),
    )


def assert_one_line_error(run: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert run.returncode != 0
    assert "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def model_dir(small_text_model: tuple[Path, Any]) -> str:
    return str(small_text_model[0])


@pytest.fixture(scope="module")
def model(model_dir: str) -> gpt2cpu.Model:
    return gpt2cpu.Model.from_pretrained(model_dir, threads=1)


@pytest.mark.parametrize("command", [[], ["generate"], ["tokenize"]])
def test_help(command: list[str]) -> None:
    run = cli(*command, "--help")
    assert run.returncode == 0 and run.stdout.startswith("usage: gpt2cpu")
    if command == ["generate"]:
        for flag in ("--max-new-tokens", "--temperature", "--top-k", "--top-p", "--min-p",
                     "--repetition-penalty", "--presence-penalty", "--frequency-penalty",
                     "--stop", "--ignore-eos", "--seed", "--logit-bias", "--threads",
                     "--truncate", "--model"):
            assert flag in run.stdout


def test_generate_streams_the_same_text_as_the_api(model_dir: str, model: gpt2cpu.Model) -> None:
    run = cli("generate", "--model", model_dir, PROMPT, "-n", "20", "--seed", "7",
              "--top-k", "200", "--temperature", "0.9", "--logit-bias", f"{EOS}=-inf")
    assert run.returncode == 0, run.stderr
    want = model.generate(PROMPT, max_new_tokens=20, seed=7, top_k=200, temperature=0.9,
                          logit_bias={EOS: -math.inf})
    assert run.stdout == want.text  # not a terminal: no newline added
    summary = SUMMARY.match(run.stderr.strip())
    assert summary, run.stderr
    assert summary.groups() == (str(want.prompt_tokens), "20", "length")


def test_generate_reads_the_prompt_from_stdin_and_stops(model_dir: str,
                                                        model: gpt2cpu.Model) -> None:
    full = model.generate(PROMPT, max_new_tokens=20, temperature=0, repetition_penalty=1.3,
                          logit_bias={EOS: -math.inf})
    stop = full.text[5:8]
    run = cli("generate", "-m", model_dir, "-", "-n", "20", "--greedy",
              "--repetition-penalty", "1.3", "--logit-bias", f"{EOS}=-inf", "--stop", stop,
              "--stop", "never there", stdin=PROMPT)
    assert run.returncode == 0, run.stderr
    assert run.stdout == full.text[: full.text.find(stop)]
    assert "(stop)" in run.stderr


def test_generate_quiet_and_all_controls(model_dir: str) -> None:
    run = cli("generate", "-m", model_dir, PROMPT, "-n", "8", "-q", "--temperature", "0.7",
              "--top-k", "40", "--top-p", "0.9", "--min-p", "0.05", "--presence-penalty", "0.5",
              "--frequency-penalty", "0.5", "--ignore-eos", "-s", "1")
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--top-p", "1.5"], ["gpt2cpu generate: error:", "--top-p"]),
        (["--temperature", "-1"], ["--temperature"]),
        (["--top-k", "-3"], ["--top-k"]),
        (["--logit-bias", "5:1"], ["--logit-bias", "ID=BIAS"]),
        (["--logit-bias", "5000=1"], ["--logit-bias key 5000"]),
        (["--threads", "0"], ["--threads"]),
    ],
)
def test_generate_errors_are_one_line(model_dir: str, args: list[str],
                                      fragments: list[str]) -> None:
    run = cli("generate", "-m", model_dir, PROMPT, *(args if "-n" in args else ["-n", "8", *args]))
    assert_one_line_error(run, *fragments)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["generate"], "give a PROMPT or --prompts-file"),
        (["generate", "hi", "--top-k", "1.5"], "--top-k: invalid int value"),
        (["generate", "hi", "--no-such-flag"], "unrecognized arguments"),
        (["tokenize"], "required: TEXT"),
        # tokenize runs no model, so it has no -t; the error is the sub-command's.
        (["tokenize", "-t", "2", "hi"], "gpt2cpu tokenize: error: unrecognized arguments: -t hi"),
        (["no-such-command"], "invalid choice"),
    ],
)
def test_usage_errors_are_one_line(args: list[str], fragment: str) -> None:
    assert_one_line_error(cli(*args), fragment, "--help")


def test_missing_model_is_one_line(tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere")
    assert_one_line_error(cli("generate", "-m", missing, "hi"), missing)
    assert_one_line_error(cli("tokenize", "-m", missing, "hi"), missing)


def test_model_without_tokenizer_is_one_line(hf_model_dir: Any) -> None:
    directory = str(hf_model_dir(**SMALL)[0])
    assert_one_line_error(cli("generate", "-m", directory, "hi", "-n", "4"), "no tokenizer")


def test_tokenize(model_dir: str, model: gpt2cpu.Model) -> None:
    tokenizer = model.tokenizer
    assert tokenizer is not None
    text = "Hello wörld <|endoftext|>"
    run = cli("tokenize", "--model", model_dir, text)
    assert run.returncode == 0, run.stderr
    assert run.stdout == " ".join(map(str, tokenizer.encode(text))) + "\n"

    special = cli("tokenize", "--model", model_dir, "--special", "-", stdin=text)
    assert special.stdout.split()[-1] == str(EOS)

    verbose = cli("tokenize", "-m", model_dir, "--verbose", text)
    lines = verbose.stdout.splitlines()
    ids = tokenizer.encode(text)
    assert len(lines) == len(ids) + 1 and lines[-1] == f"{len(ids)} tokens, {len(text)} characters"
    for position, (line, token) in enumerate(zip(lines, ids, strict=False)):
        fields = line.split(maxsplit=2)
        assert fields[:2] == [str(position), str(token)]
        data = tokenizer.token_bytes(token)
        try:
            assert fields[2] == repr(data.decode("utf-8"))
        except UnicodeDecodeError:
            assert fields[2] == repr(data)


@pytest.mark.parametrize("command", ["generate", "perplexity"])
def test_without_stderr_the_output_is_all_there(model_dir: str, model: gpt2cpu.Model,
                                                tmp_path: Path, command: str) -> None:
    from gpt2cpu.engine.threads import available_cores

    # More threads than cores: a warning, which has nowhere to go but must not go to stdout.
    threads = str(available_cores() + 1)
    if command == "generate":
        run = cli("generate", "-m", model_dir, PROMPT, "-n", "6", "-s", "2", "-t", threads,
                  closed=2)
        assert run.returncode == 0
        assert run.stdout == model.generate(PROMPT, max_new_tokens=6, seed=2).text
    else:
        text = tmp_path / "text.txt"
        text.write_text(PROMPT, encoding="utf-8")
        run = cli("perplexity", "-m", model_dir, str(text), "-t", threads, closed=2)
        assert run.returncode == 0
        assert run.stdout.startswith("perplexity ") and len(run.stdout.splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "closed", "fragment"),
    [
        (["generate", PROMPT, "-n", "3"], 1, "stdout is closed"),
        (["tokenize", "x"], 1, "stdout is closed"),  # print() would drop the ids and succeed
        (["generate", "-"], 0, "stdin is closed"),
        (["tokenize", "-"], 0, "stdin is closed"),
        (["perplexity", "-"], 0, "stdin is closed"),
    ],
)
def test_a_closed_stdout_or_stdin_is_one_line(model_dir: str, args: list[str], closed: int,
                                              fragment: str) -> None:
    run = cli(*args, "-m", model_dir, closed=closed)
    assert run.returncode == 2
    assert_one_line_error(run, f"gpt2cpu {args[0]}: error: {fragment}")


@pytest.mark.parametrize(
    ("flag", "source"),
    [
        ([], "generation_config.json's max_new_tokens 1000"),
        (["-n", "100"], "--max-new-tokens 100"),
    ],
)
def test_the_context_notice_names_where_n_came_from(model_dir: str, tmp_path: Path,
                                                    flag: list[str], source: str) -> None:
    directory = tmp_path / "model"
    directory.mkdir()
    for path in Path(model_dir).iterdir():
        (directory / path.name).symlink_to(path.resolve())
    (directory / "generation_config.json").write_text('{"max_new_tokens": 1000}')
    run = cli("generate", "-m", str(directory), PROMPT, "-q", *flag)
    assert run.returncode == 0, run.stderr
    assert run.stderr.startswith(f"gpt2cpu: {source} lowered to "), run.stderr
    assert len(run.stderr.splitlines()) == 1


@pytest.mark.parametrize("prompts_file", [False, True])
def test_output_is_utf8_whatever_the_locale(model_dir: str, model: gpt2cpu.Model,
                                            tmp_path: Path, prompts_file: bool) -> None:
    tokenizer = model.tokenizer
    assert tokenizer is not None
    # A byte no UTF-8 text holds: decoded, each is U+FFFD, which latin-1 cannot encode.
    ff = next(i for i in range(model.config.vocab_size) if tokenizer.token_bytes(i) == b"\xff")
    args = ["-n", "3", "--logit-bias", f"{ff}=100", "-q", "-m", model_dir]
    if prompts_file:
        path = tmp_path / "prompts.txt"
        path.write_text("hi\n", encoding="utf-8")
        run = cli("generate", "--prompts-file", str(path), *args, io_encoding="latin-1")
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["text"] == "\ufffd" * 3
    else:
        run = cli("generate", "hi", *args, io_encoding="latin-1")
        assert run.returncode == 0, run.stderr
        assert run.stdout == "\ufffd" * 3
