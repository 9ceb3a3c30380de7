"""The command line's many-text commands: generate --prompts-file, score, embed, classify
(on the bundled model, in-process through gpt2cpu.cli.main)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gpt2cpu
import numpy as np
import pytest
from gpt2cpu.cli import main

PROMPTS = ["ROMEO:", "JULIET: O Romeo", "First Citizen:"]


@pytest.fixture(scope="module")
def model() -> gpt2cpu.Model:
    return gpt2cpu.Model.from_pretrained()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict[str, Any]], str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


@pytest.mark.parametrize("jsonl", [False, True])
def test_generate_prompts_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               model: gpt2cpu.Model, jsonl: bool) -> None:
    path = tmp_path / "prompts"
    lines = [json.dumps({"prompt": p}) for p in PROMPTS] if jsonl else PROMPTS
    path.write_text("\n".join(lines) + "\n\n", encoding="utf-8")  # a blank line is skipped
    code, records, _ = run(capsys, "generate", "--prompts-file", str(path), "-n", "6",
                           "--seed", "3")
    assert code == 0
    assert [r["prompt"] for r in records] == PROMPTS
    for record, prompt in zip(records, PROMPTS, strict=True):
        alone = model.generate(prompt, max_new_tokens=6, seed=3)
        assert not isinstance(alone, list)
        assert (record["text"], record["token_ids"]) == (alone.text, alone.token_ids)


def test_generate_needs_one_prompt_source(capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    with pytest.raises(SystemExit):  # a usage error, as argparse reports them
        main(["generate", "ROMEO:", "--prompts-file", "x"])
    assert "PROMPT or --prompts-file" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a"}\n{"text": "b"}\n', encoding="utf-8")
    assert main(["generate", "--prompts-file", str(bad)]) == 2
    assert f"{bad}:2" in capsys.readouterr().err


def test_score_and_embed_match_the_api(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       model: gpt2cpu.Model) -> None:
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(PROMPTS), encoding="utf-8")
    code, records, _ = run(capsys, "score", str(path))
    assert code == 0
    for record, expected in zip(records, model.score(PROMPTS), strict=True):
        assert record["token_ids"] == expected.token_ids
        assert record["logprobs"] == pytest.approx(expected.logprobs.tolist())
        assert record["total"] == pytest.approx(expected.total)
        assert record["is_greedy"] == expected.is_greedy
    code, records, _ = run(capsys, "embed", "--pooling", "last", "--normalize", str(path))
    assert code == 0
    vectors = model.embed(PROMPTS, pooling="last", normalize=True)
    assert np.asarray([r["embedding"] for r in records]) == pytest.approx(
        np.asarray(vectors), abs=1e-6)


def test_classify_needs_a_head(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "texts.txt"
    path.write_text("good\n", encoding="utf-8")
    assert main(["classify", str(path)]) == 2
    assert "task-head checkpoint" in capsys.readouterr().err


def test_bench_batch_reports_each_size(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", "--repeats", "1", "--new-tokens", "4", "--prompt-tokens", "8", "-t", "1"]
    assert main([*args, "--batch", "1,3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rates = report["batch_decode"]
    assert sorted(rates) == ["1", "3"]
    for b, r in rates.items():
        assert r["aggregate_tokens_per_s"] > 0
        assert r["per_sequence_tokens_per_s"] == pytest.approx(r["aggregate_tokens_per_s"] / int(b))
    assert main([*args, "--batch", "2"]) == 0
    assert "decode batch 2" in capsys.readouterr().out
    assert main([*args, "--batch", "x"]) == 2
    assert "--batch must be integers" in capsys.readouterr().err


def test_lines_end_at_newlines_only(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    model: gpt2cpu.Model) -> None:
    # json.dumps(ensure_ascii=False) writes U+2028 raw; str.splitlines would cut there.
    path = tmp_path / "texts.jsonl"
    texts = ["first\u2028part", "page one\x0cpage two", "second"]
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\r\n"
                            for t in texts), encoding="utf-8")
    code, records, _ = run(capsys, "score", str(path))
    assert code == 0
    assert [r["token_ids"] for r in records] == [s.token_ids for s in model.score(texts)]
    plain = tmp_path / "texts.txt"
    plain.write_bytes(b"page one\x0cpage two\rstill one\nline two\r\n")
    code, records, _ = run(capsys, "score", str(plain))
    assert code == 0 and len(records) == 2


def test_each_prompt_gets_its_own_room(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       model: gpt2cpu.Model) -> None:
    tokenizer = model.require_tokenizer("the test writes text")
    context = model.config.n_positions
    long = tokenizer.decode(tokenizer.encode("x " * 400)[: context - 17])
    # The last new token is never run: a prompt of L tokens leaves room for context + 1 - L.
    room = context + 1 - len(tokenizer.encode(long))
    assert 0 < room < 40
    path = tmp_path / "prompts.txt"
    path.write_text(f"ROMEO:\n{long}\n", encoding="utf-8")
    code, records, err = run(capsys, "generate", "--prompts-file", str(path), "-n", "40",
                             "--temperature", "0", "--ignore-eos")
    assert code == 0
    assert [len(r["token_ids"]) for r in records] == [40, room]
    assert [r["finish_reason"] for r in records] == ["length", "length"]
    assert "lowered for 1 of 2 prompts" in err and f"(down to {room})" in err


def test_errors_name_the_file_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "prompts.txt"
    path.write_text("ROMEO:\n\n\n" + "x " * 600 + "\n", encoding="utf-8")
    assert main(["generate", "--prompts-file", str(path)]) == 2
    assert f"--prompts-file {path}:4: the prompt has" in capsys.readouterr().err
    texts = tmp_path / "texts.txt"
    texts.write_text("ROMEO:\n\n" + "x " * 600 + "\n", encoding="utf-8")
    assert main(["score", str(texts)]) == 2
    assert f"{texts}:3" in capsys.readouterr().err


def test_bench_every_dtype_fails_as_one_run_does(capfd: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # The children run main's own arguments, not sys.argv (a program calling main has its
    # own), and a child's failure is its one error line and exit status, not a traceback.
    monkeypatch.setattr("sys.argv", ["program.py", "--not-a-gpt2cpu-flag"])
    code = main(["bench", "--dtype", "all", "--isa", "bogus", "-t", "1", "--repeats", "1",
                 "--prompt-tokens", "8", "--new-tokens", "4"])
    assert code == 2
    err = capfd.readouterr().err  # the child's, written to the file descriptor
    assert "unknown ISA 'bogus'" in err and "Traceback" not in err


def test_dtypes_are_exported() -> None:
    assert gpt2cpu.DTYPES == ("float32", "bfloat16", "float16", "int8", "int4")
    assert "DTYPES" in gpt2cpu.__all__ and "DTYPES" in dir(gpt2cpu)


def test_bench_fits_its_default_prompt_to_the_model(capsys: pytest.CaptureFixture[str]) -> None:
    # The bundled model's context is 256: the default 512-token prompt is cut to it, while
    # a length asked for is not.
    args = ["bench", "--repeats", "1", "--new-tokens", "4", "-t", "1"]
    assert main(args) == 0
    assert "prompt (256 tokens)" in capsys.readouterr().out
    assert main([*args, "--prompt-tokens", "300"]) == 2
    assert "--prompt-tokens 300 is more than the model's context of 256" in capsys.readouterr().err
    # Counts are checked before anything loads (a zero-repeat load had no spread to take).
    assert main([*args, "--repeats", "0"]) == 2
    assert "--repeats must be at least 1" in capsys.readouterr().err
    assert main([*args, "--positions", "0"]) == 2
    assert "--positions must each be at least 1" in capsys.readouterr().err


def test_perplexity_scores_the_bytes_given(tmp_path: Path) -> None:
    import subprocess
    import sys

    def perplexity(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "gpt2cpu", "perplexity", *args, "--json"],
                              input=stdin, capture_output=True, timeout=120)

    text = b"ROMEO:\r\nHello there friend.\r\n"
    path = tmp_path / "crlf.txt"
    path.write_bytes(text)
    from_file, from_stdin = perplexity(str(path)), perplexity("-", stdin=text)
    assert from_file.returncode == 0 and from_stdin.returncode == 0, from_file.stderr
    model = gpt2cpu.Model.from_pretrained()
    tokens = len(model.require_tokenizer("").encode(text.decode()))
    assert json.loads(from_file.stdout)["tokens"] == tokens  # "\r" kept, as in the API
    assert json.loads(from_file.stdout) == json.loads(from_stdin.stdout)
    latin = perplexity("-", stdin="caf\xe9\n".encode("latin-1"))
    assert latin.returncode == 2
    assert latin.stderr.decode().strip() == ("gpt2cpu perplexity: error: stdin: not UTF-8 "
                                             "text (invalid continuation byte at byte 3)")


def test_a_byte_order_mark_is_not_text(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       model: gpt2cpu.Model) -> None:
    """A file saved with a BOM (Windows editors): JSONL is still JSONL, and a text file's
    first text does not start with the mark's tokens."""
    texts = ["ROMEO:", "JULIET:"]
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps({"text": t}) + "\n"
                                                  for t in texts).encode())
    plain = tmp_path / "bom.txt"
    plain.write_bytes(b"\xef\xbb\xbf" + "\n".join(texts).encode())
    assert model.tokenizer is not None
    want = [model.tokenizer.encode(t) for t in texts]
    for path in (jsonl, plain):
        code, records, _ = run(capsys, "score", str(path))
        assert code == 0
        assert [r["token_ids"] for r in records] == want


def test_an_escaped_lone_surrogate_is_written_back_escaped(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """JSON may escape a lone surrogate; the echoed prompt is written escaped, as it came,
    and every prompt's line is written (a raw one failed the write at that line)."""
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "ROMEO:"}\n{"prompt": "\\ud800 x"}\n{"prompt": "JULIET:"}\n',
                    encoding="utf-8")
    code = main(["generate", "--prompts-file", str(path), "-n", "3", "--seed", "1"])
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert [json.loads(line)["prompt"] for line in lines] == ["ROMEO:", "\ud800 x", "JULIET:"]
    assert "\\ud800" in lines[1]
