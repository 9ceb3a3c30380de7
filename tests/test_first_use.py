"""What a new user met in the first ten minutes (issue 22): the command line's flags, the
bundled model's handle, generate/stream's help and options, generation_config.json, a
chat continued on one sequence, and a model whose tokenizer files are unusable."""

from __future__ import annotations

import inspect
import json
import math
import os
import pydoc
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import gpt2cpu
import numpy as np
import pytest
from gpt2cpu.bench.random_model import cache_dir
from gpt2cpu.cli import build_parser, main
from gpt2cpu.cli.generate import unescape
from gpt2cpu.engine import threads as threads_module
from gpt2cpu.errors import ConfigError, ModelFormatError, TokenizerFormatError
from gpt2cpu.generation.options import option_names
from gpt2cpu.loading.config import GPT2Config

BUNDLED = gpt2cpu.BUNDLED_MODEL_DIR
SUMMARY = re.compile(
    r"^gpt2cpu: (\d+) prompt tokens?, (\d+) new tokens? \((length|stop|eos)\); "
    r"prefill [\d.]+ tok/s, decode [\d.-]+ tok/s$"
)


@pytest.fixture(scope="module")
def model() -> gpt2cpu.Model:
    return gpt2cpu.Model.from_pretrained(threads=1)


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["generate" if not args else args[0], *args[1:]])
    out, err = capsys.readouterr()
    return code, out, err


def copy_of_bundled(directory: Path, *, skip: tuple[str, ...] = ()) -> Path:
    """The bundled model's files, linked into directory (which may then replace some)."""
    for source in BUNDLED.iterdir():
        if source.name not in skip:
            (directory / source.name).symlink_to(source)
    return directory


# -t means --threads in every command that runs the model.


@pytest.mark.parametrize("command", [["generate", "hi"], ["perplexity", "file.txt"], ["bench"]])
def test_t_is_threads_in_every_command(command: list[str]) -> None:
    args = build_parser().parse_args([*command, "-t", "3"])
    assert args.threads == 3


def test_temperature_has_no_short_flag() -> None:
    args = build_parser().parse_args(["generate", "hi", "--temperature", "0.5"])
    assert args.temperature == 0.5
    with pytest.raises(SystemExit):
        build_parser().parse_args(["generate", "hi", "-t", "0.5"])  # not an integer thread count


# --stop understands backslash escapes.


def test_stop_escapes() -> None:
    assert unescape(r"\n\n") == "\n\n"
    assert unescape(r"a\tb\\n\x41\r") == "a\tb\\nA\r"
    assert unescape("plain: é") == "plain: é"
    args = build_parser().parse_args(["generate", "hi", "--stop", r"\n\n", "--stop", "x"])
    assert args.stop == ["\n\n", "x"]


@pytest.mark.parametrize("text", [r"\q", "trailing\\"])
def test_unknown_stop_escape_names_the_flag(capsys: pytest.CaptureFixture[str],
                                            text: str) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["generate", "hi", "--stop", text])
    assert "argument --stop: unknown escape" in capsys.readouterr().err


def test_stop_at_a_blank_line(capsys: pytest.CaptureFixture[str], model: gpt2cpu.Model) -> None:
    full = model.generate("ROMEO:", max_new_tokens=120, seed=4, ignore_eos=True)
    assert "\n\n" in full.text  # the bundled model writes plays: speeches end in blank lines
    code, out, err = run_cli(capsys, "generate", "ROMEO:", "-n", "120", "-s", "4", "-t", "1",
                             "--ignore-eos", "--stop", r"\n\n")
    assert code == 0, err
    assert out == full.text[: full.text.index("\n\n")]
    assert "(stop)" in err


# -n is capped to the context; -n max; errors name the flags.


def test_n_beyond_the_context_is_capped(capsys: pytest.CaptureFixture[str],
                                        model: gpt2cpu.Model) -> None:
    context = model.config.n_positions
    prompt = len(model.require_tokenizer("").encode("ROMEO:"))
    for n in ("5000", "max"):
        code, _, err = run_cli(capsys, "generate", "ROMEO:", "-n", n, "--ignore-eos", "-t", "1",
                               "-s", "1")
        assert code == 0, err
        lines = err.strip().splitlines()
        if n == "5000":
            assert "--max-new-tokens 5000 lowered to" in lines[0]
        else:
            assert len(lines) == 1  # "max" asks for the room: no notice
        summary = SUMMARY.match(lines[-1])
        # The last new token is never run: the context holds all but it.
        assert summary and summary.groups()[1:] == (str(context + 1 - prompt), "length")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["-n", "0"], "argument -n/--max-new-tokens: must be a positive integer or max"),
        (["--top-p", "2"], "--top-p must be in (0, 1]"),
        (["--logit-bias", "99999=1"], "--logit-bias key 99999"),
        (["-t", "0"], "--threads must be in"),
    ],
)
def test_errors_name_the_flag(capsys: pytest.CaptureFixture[str], args: list[str],
                              fragment: str) -> None:
    try:
        code = main(["generate", "ROMEO:", *args])
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and "max_new_tokens" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_prompt_that_fills_the_context_names_truncate(capsys: pytest.CaptureFixture[str],
                                                        model: gpt2cpu.Model) -> None:
    long = "ROMEO: " * model.config.n_positions
    code, _, err = run_cli(capsys, "generate", long, "-t", "1")
    assert code == 2 and "--truncate" in err and "truncate=True" not in err
    code, _, err = run_cli(capsys, "generate", long, "-t", "1", "-n", "5", "--truncate", "-q")
    assert code == 0 and err == ""


# More threads than cores warns, once.


def test_oversubscription_warns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads_module, "available_cores", lambda: 2)
    monkeypatch.setattr(threads_module, "_warned_oversubscription", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert threads_module.check_threads(2) == 2
        assert caught == []
        threads_module.check_threads(64)
        threads_module.check_threads(64)
    assert len(caught) == 1 and caught[0].category is threads_module.OversubscriptionWarning
    assert "threads=64 is more than the 2 usable cores" in str(caught[0].message)


def test_oversubscription_warning_in_the_cli(capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads_module, "available_cores", lambda: 1)
    monkeypatch.setattr(threads_module, "_warned_oversubscription", False)
    code, _, err = run_cli(capsys, "generate", "ROMEO:", "-n", "2", "-t", "4", "-q")
    assert code == 0
    assert err == ("gpt2cpu: warning: --threads=4 is more than the 1 usable cores; the extra "
                   "threads make every step slower (each waits for threads the cores cannot "
                   "run)\n")


# The bundled model's handle; dir(gpt2cpu); help(Model).


def test_from_pretrained_without_a_path_loads_the_bundled_model(model: gpt2cpu.Model) -> None:
    assert model.path == BUNDLED and (BUNDLED / "config.json").is_file()
    assert model.tokenizer is not None and model.config.vocab_size == 4096


def test_dir_shows_the_public_names() -> None:
    names = dir(gpt2cpu)
    for name in ("Model", "Tokenizer", "Sequence", "Sampler", "SamplingParams",
                 "GenerationConfig", "GenerationResult", "BUNDLED_MODEL_DIR", "__version__"):
        assert name in names
    assert "os" not in names and "TYPE_CHECKING" not in names
    assert set(gpt2cpu.__all__) <= set(names)


def test_help_of_model_hides_the_constructor() -> None:
    text = pydoc.render_doc(gpt2cpu.Model, renderer=pydoc.plaintext)  # type: ignore[attr-defined, unused-ignore]  # not in typeshed
    assert "from_pretrained(" in text and "core" not in text.split("from_pretrained(")[0]
    assert not inspect.signature(gpt2cpu.Model).parameters
    with pytest.raises(TypeError, match="from_pretrained"):
        gpt2cpu.Model()


# bench --shape's cache.


def test_bench_shape_says_where_its_cache_is(capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    import gpt2cpu.bench.measure

    monkeypatch.setenv("GPT2CPU_CACHE", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("GPT2CPU_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "gpt2cpu"

    assert build_parser().parse_args(["bench", "--shape", "124m"]).shape == "124m"
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    help_text = "".join(capsys.readouterr().out.split())  # argparse wraps at hyphens too
    assert str(tmp_path / "xdg" / "gpt2cpu") in help_text and "GPT2CPU_CACHE" in help_text
    assert "--remove-cache" in help_text

    # The benchmark itself is not what is tested: it stands in for the minutes a real one takes.
    made = tmp_path / "xdg" / "gpt2cpu" / "random-gpt2-124m"
    monkeypatch.setattr(gpt2cpu.bench.measure, "random_model_dir", lambda shape: made)
    monkeypatch.setattr(gpt2cpu.bench.measure, "run", lambda *a, **k: {"stub": True})
    assert main(["bench", "--shape", "124m", "--json", "-t", "1"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == {"stub": True}
    first = err.splitlines()[0]
    assert first.startswith(f"gpt2cpu bench: random GPT-2 124m model in {made} (writing it now")
    assert "gpt2cpu bench --remove-cache" in first

    (made / "x").mkdir(parents=True)
    (made.parent / "random-gpt2-355m.tmp1234").mkdir()  # a write that was interrupted
    (made.parent / "keep-me").mkdir()
    assert main(["bench", "--remove-cache"]) == 0
    assert capsys.readouterr().out.count("removed ") == 2
    assert sorted(p.name for p in made.parent.iterdir()) == ["keep-me"]
    assert main(["bench", "--remove-cache"]) == 0
    assert "no random models in" in capsys.readouterr().out


# The summary line.


def test_summary_starts_its_own_line_in_a_shared_pipe(model: gpt2cpu.Model) -> None:
    env = {**os.environ, "GPT2CPU_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}
    for prompt in ("ROMEO", ""):
        want = model.generate(prompt, max_new_tokens=1, temperature=0, ignore_eos=True)
        run = subprocess.run(
            [sys.executable, "-m", "gpt2cpu", "generate", prompt, "-n", "1", "--greedy",
             "--ignore-eos"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            encoding="utf-8", env=env, timeout=120, check=True)
        text, _, summary = run.stdout.removesuffix("\n").rpartition("\n")
        assert text == want.text.removesuffix("\n")
        numbers = SUMMARY.match(summary)
        assert numbers and numbers.group(2) == "1"
        assert "1 new token (" in summary
        if prompt:
            assert want.text == ":"  # the case that needs a newline before the summary
        else:
            assert summary.startswith("gpt2cpu: 1 prompt token, ")


# perplexity.


def test_perplexity_missing_file_is_one_line(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    assert main(["perplexity", str(missing)]) == 2
    assert capsys.readouterr().err == f"gpt2cpu perplexity: error: {missing}: file not found\n"


def test_perplexity_stride_equal_to_window(capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    text = tmp_path / "text.txt"
    text.write_text("ROMEO: What light through yonder window breaks?\n" * 12)
    assert main(["perplexity", str(text), "--window", "64", "--stride", "64", "-t", "1",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    windows = math.ceil((result["tokens"] - 64) / 64) + 1
    # Each window after the first starts without context: its first token is not scored.
    assert result["scored_tokens"] == result["tokens"] - windows
    assert main(["perplexity", str(text), "--window", "64", "--stride", "65", "-t", "1"]) == 2
    assert "error: --stride must be in [1, window = 64], got 65" in capsys.readouterr().err


# generation_config.json.


def write_generation_config(directory: Path, fields: dict[str, Any]) -> Path:
    copy_of_bundled(directory, skip=("generation_config.json",))
    (directory / "generation_config.json").write_text(json.dumps(fields))
    return directory


def test_generation_config_supplies_defaults(tmp_path: Path, model: gpt2cpu.Model) -> None:
    fields = {"do_sample": False, "temperature": 0.9, "top_k": 3, "max_new_tokens": 7,
              "eos_token_id": [5, 0], "bos_token_id": 1, "pad_token_id": 2,
              "transformers_version": "5.23.0", "num_beams": 1}
    configured = gpt2cpu.Model.from_pretrained(write_generation_config(tmp_path, fields),
                                               threads=1)
    defaults = configured.generation_defaults
    assert defaults.options == {"temperature": 0.0, "top_k": 3, "max_new_tokens": 7}
    assert (defaults.bos_token_id, defaults.eos_token_ids, defaults.pad_token_id) == (1, (5, 0), 2)

    ids = model.require_tokenizer("").encode("ROMEO:")
    greedy = configured.generate(ids, ignore_eos=True)
    assert len(greedy.token_ids) == 7
    assert greedy.token_ids == model.generate(ids, temperature=0, top_k=3, max_new_tokens=7,
                                              ignore_eos=True).token_ids
    # The caller's options win over the file's.
    sampled = configured.generate(ids, temperature=0.8, seed=3, max_new_tokens=12)
    assert sampled.token_ids == model.generate(ids, temperature=0.8, seed=3, top_k=3,
                                               max_new_tokens=12).token_ids
    # Each of the file's EOS ids ends a generation; its BOS starts an empty prompt.
    assert configured.generate(ids, logit_bias={5: 100.0}).finish_reason == "eos"
    assert model.generate(ids, logit_bias={5: 100.0}, max_new_tokens=2).token_ids == [5, 5]
    bos_run = configured.generate([], max_new_tokens=3, ignore_eos=True)
    assert bos_run.token_ids == model.generate([1], temperature=0, top_k=3, max_new_tokens=3,
                                               ignore_eos=True).token_ids
    assert bos_run.token_ids != model.generate([0], temperature=0, top_k=3, max_new_tokens=3,
                                               ignore_eos=True).token_ids


def test_generation_config_sampling_only_where_named(tmp_path: Path) -> None:
    # No do_sample: Hugging Face's implicit do_sample=False (greedy) is not taken.
    loaded = gpt2cpu.Model.from_pretrained(
        write_generation_config(tmp_path, {"temperature": 0.7}), threads=1)
    assert loaded.generation_defaults.options == {"temperature": 0.7}
    bundled = gpt2cpu.Model.from_pretrained(threads=1)
    assert bundled.generation_defaults.options == {}


@pytest.mark.parametrize(("fields", "fragment"), [
    ({"top_p": 2}, "top_p must be in (0, 1]"),
    ({"eos_token_id": 1.5}, "'eos_token_id' must hold token ids"),
    ({"eos_token_id": [0, "1"]}, "'eos_token_id' must hold token ids"),
    ({"do_sample": "false"}, "'do_sample' must be true or false"),
    ([1, 2], "expected a JSON object"),
])
def test_bad_generation_config_names_the_file(tmp_path: Path, fields: Any,
                                              fragment: str) -> None:
    directory = copy_of_bundled(tmp_path, skip=("generation_config.json",))
    (directory / "generation_config.json").write_text(json.dumps(fields))
    with pytest.raises(ModelFormatError) as error:
        gpt2cpu.Model.from_pretrained(directory, threads=1)
    message = str(error.value)
    assert message.startswith(str(directory / "generation_config.json")) and fragment in message


def test_generation_config_ids_past_the_vocabulary_are_dropped_with_a_warning(
    tmp_path: Path,
) -> None:
    """transformers writes its default 50256 even for a small vocabulary, and runs such a
    model without that token: so do we, as for config.json."""
    directory = copy_of_bundled(tmp_path, skip=("generation_config.json",))
    (directory / "generation_config.json").write_text(json.dumps({"eos_token_id": [50256, 0]}))
    with pytest.warns(UserWarning, match="'eos_token_id' = \\[50256, 0\\] is outside"):
        loaded = gpt2cpu.Model.from_pretrained(directory, threads=1)
    assert loaded.generation_defaults.eos_token_ids == (0,)


# help(), signatures and misspelled options.


@pytest.mark.parametrize("method", ["generate", "stream"])
def test_help_documents_every_option(method: str) -> None:
    function = getattr(gpt2cpu.Model, method)
    parameters = inspect.signature(function).parameters
    assert list(parameters)[:2] == ["self", "prompt"]
    assert tuple(parameters)[2:] == option_names()
    text = pydoc.render_doc(function, renderer=pydoc.plaintext)  # type: ignore[attr-defined, unused-ignore]  # not in typeshed
    documented = re.findall(r"^ {4}(\w+(?:, \w+)*):", text, re.MULTILINE)
    options = {name for line in documented for name in line.split(", ")}
    assert set(option_names()) | {"prompt"} <= options
    for field in ("text", "token_ids", "finish_reason", "stop", "prompt_tokens",
                  "prefill_seconds", "decode_steps"):
        assert field in options
    assert "Example:" in text and f"model.{method}(" in text


@pytest.mark.parametrize("method", ["generate", "stream"])
def test_a_misspelled_option_names_itself_and_the_method(model: gpt2cpu.Model,
                                                         method: str) -> None:
    with pytest.raises(TypeError) as error:
        getattr(model, method)("ROMEO:", temprature=0.5)
    message = str(error.value)
    assert message.startswith(f"Model.{method}() got an unexpected keyword argument 'temprature'")
    assert "did you mean 'temperature'" in message and "GenerationConfig" not in message
    with pytest.raises(TypeError, match=rf"Model\.{method}\(\): .*prompt"):
        getattr(model, method)()


def test_stream_takes_the_options_of_generate(model: gpt2cpu.Model) -> None:
    options: dict[str, Any] = dict(max_new_tokens=12, temperature=0.7, top_p=0.9, seed=5,
                                   stop="\n\n")
    pieces = model.stream("ROMEO:", **options)
    text = "".join(pieces)
    assert pieces.result is not None
    assert text == model.generate("ROMEO:", **options).text == pieces.result.text


# A chat on one sequence; the sampler for one's own loop.


def test_generate_continues_a_sequence(model: gpt2cpu.Model) -> None:
    tokenizer = model.require_tokenizer("")
    first, second = tokenizer.encode("ROMEO:"), tokenizer.encode("\nJULIET:")
    with model.new_sequence(100) as chat:
        one = model.generate(first, sequence=chat, max_new_tokens=8, temperature=0,
                             ignore_eos=True)
        assert chat.tokens == first + one.token_ids and one.prompt_tokens == len(first)
        two = model.generate(second, sequence=chat, max_new_tokens=8, temperature=0,
                             ignore_eos=True)
        history = first + one.token_ids + second
        assert chat.tokens == history + two.token_ids and two.prompt_tokens == len(second)
        # The same as running the whole conversation from scratch.
        fresh = model.generate(history, max_new_tokens=8, temperature=0, ignore_eos=True)
        assert two.token_ids == fresh.token_ids
        # An empty prompt continues from the sequence's last token.
        before = list(chat.tokens)
        three = model.stream("", sequence=chat, max_new_tokens=5, temperature=0,
                             ignore_eos=True)
        "".join(three)
        assert three.result is not None
        assert three.result.token_ids == model.generate(before, max_new_tokens=5, temperature=0,
                                                        ignore_eos=True).token_ids
        # Until the capacity is full.
        rest = model.generate([], sequence=chat, max_new_tokens=None, ignore_eos=True, seed=1)
        assert chat.length == chat.capacity == 100 and rest.finish_reason == "length"
        with pytest.raises(ValueError, match="leave no room for a new token"):
            model.generate("x", sequence=chat)
        chat.truncate(10)
        with pytest.raises(ValueError, match="truncate=True"):
            model.generate("x", sequence=chat, truncate=True)
        assert not chat.closed  # generation leaves a caller's sequence open


def test_sampler_is_exported_for_ones_own_loop(model: gpt2cpu.Model) -> None:
    from gpt2cpu import Sampler, SamplingParams

    ids = model.require_tokenizer("").encode("ROMEO:")
    sampler = Sampler(SamplingParams(temperature=0), model.config.vocab_size, ids)
    picked = []
    with model.new_sequence() as seq:
        logits = seq.append(ids)
        for _ in range(4):
            token = sampler.sample(logits)
            sampler.observe(token)
            picked.append(token)
            logits = seq.append([token])
    assert picked == model.generate(ids, max_new_tokens=4, temperature=0,
                                    ignore_eos=True).token_ids


# A directory whose tokenizer is unusable; config.json's JSON message.


def test_tokenizer_false_loads_a_directory_with_a_broken_tokenizer(tmp_path: Path) -> None:
    directory = copy_of_bundled(tmp_path, skip=("tokenizer.json",))
    (directory / "tokenizer.json").write_text('{"model": {"type": "Unigram"}}')
    with pytest.raises(TokenizerFormatError):
        gpt2cpu.Model.from_pretrained(directory, threads=1)
    ids_only = gpt2cpu.Model.from_pretrained(directory, threads=1, tokenizer=False)
    assert ids_only.tokenizer is None
    result = ids_only.generate([5, 6, 7], max_new_tokens=3, temperature=0, ignore_eos=True)
    assert len(result.token_ids) == 3 and result.text == ""
    assert ids_only.forward(np.array([5, 6, 7])).shape == (3, 4096)
    for call in (lambda: ids_only.generate("ROMEO:"), lambda: ids_only.stream([5, 6])):
        with pytest.raises(ValueError, match=r"loaded with tokenizer=False \(no tokenizer\)"):
            call()


def test_config_json_error_reads_well(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{\n  "n_layer": 2,\n  "n_head": "abc')
    with pytest.raises(ConfigError) as error:
        GPT2Config.from_file(path)
    assert str(error.value) == (f"{path}: not valid JSON (Unterminated string starting at: "
                                "line 3 column 13)")
