"""The `gpt2cpu` command line, run as a subprocess (`python -m gpt2cpu`)."""

from __future__ import annotations

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


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GPT2CPU_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        [sys.executable, "-m", "gpt2cpu", *args], input=stdin, capture_output=True, text=True,
        encoding="utf-8", env=env, timeout=300,
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
