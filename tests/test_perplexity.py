"""`gpt2cpu perplexity` against the PyTorch implementation of the same sliding-window
procedure (scripts/sliding_window_eval.py, which computed the bundled model's eval.json)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import gpt2cpu
import pytest
from gpt2cpu.tasks.perplexity import perplexity, windows
from text_models import small_text_model_fixture, text_model_dir_fixture  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

TEXT = "\n".join(
    f"def handler_{i}(request, limit={i * 7}):\n"
    "    return [x for x in request.items if x < limit]\n"
    for i in range(40)
)


@pytest.mark.parametrize("n,window,stride", [(2, 4, 2), (10, 4, 2), (11, 4, 3), (100, 16, 8),
                                             (100, 16, 15), (5, 64, 32), (64, 64, 32)])
def test_windows_score_every_target_once(n: int, window: int, stride: int) -> None:
    scored = [t for w in windows(n, window, stride) for t in range(w.score_from, w.end)]
    assert scored == list(range(1, n))
    for w in windows(n, window, stride):
        assert w.end - w.begin <= window and w.begin < w.score_from <= w.end


@pytest.mark.parametrize("window,stride", [(64, 32), (64, 63), (40, 13), (40, 40)])
def test_matches_pytorch_reference(small_text_model: tuple[Path, Any], window: int,
                                   stride: int) -> None:
    from sliding_window_eval import sliding_window_nll

    directory, torch_model = small_text_model
    model = gpt2cpu.Model.from_pretrained(directory)
    ours = perplexity(model, TEXT, window=window, stride=stride)
    assert model.tokenizer is not None
    tokens = model.tokenizer.encode(TEXT)
    assert ours.tokens == len(tokens) > 3 * window
    ref = sliding_window_nll(torch_model, tokens, window, stride)
    assert ours.scored_tokens == ref.scored_tokens
    # Non-overlapping windows leave each later window's first token unscored.
    unscored = 0 if stride < window else len(list(windows(len(tokens), window, stride))) - 1
    assert ours.scored_tokens == len(tokens) - 1 - unscored
    assert ours.nll_sum == pytest.approx(ref.nll_sum, rel=1e-5)
    assert ours.perplexity == pytest.approx(ref.perplexity, rel=1e-5)


def test_rejects_bad_windows(small_text_model: tuple[Path, Any]) -> None:
    model = gpt2cpu.Model.from_pretrained(small_text_model[0])
    with pytest.raises(ValueError, match="window"):
        perplexity(model, TEXT, window=65)
    with pytest.raises(ValueError, match="stride"):
        perplexity(model, TEXT, window=10, stride=11)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        perplexity(model, "")


def test_cli(small_text_model: tuple[Path, Any], tmp_path: Path) -> None:
    text_file = tmp_path / "text.txt"
    text_file.write_text(TEXT, encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "gpt2cpu", "perplexity", "--model", str(small_text_model[0]),
         str(text_file), "--json"], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    model = gpt2cpu.Model.from_pretrained(small_text_model[0])
    assert result["perplexity"] == pytest.approx(perplexity(model, TEXT).perplexity, rel=1e-6)

    bad = subprocess.run(
        [sys.executable, "-m", "gpt2cpu", "perplexity", "--model", str(small_text_model[0]),
         str(tmp_path / "missing.txt")], capture_output=True, text=True)
    assert bad.returncode != 0 and "missing.txt" in bad.stderr and "Traceback" not in bad.stderr
