"""The batched step: a sequence's logits are the same bits whatever shares its step and on
any thread count, mixtures of prompt and decode rows, batch sizes 1-64; the step's
checks (a bad element names itself and changes nothing); KV caches that grow with what
they hold; forked sequences."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gpt2cpu
import numpy as np
import pytest
from gpt2cpu import _core
from gpt2cpu.engine import step
from gpt2cpu.engine.batch import step_sampled
from model_files import model_dir

# Wide enough (C % 16 == 0, several panels) for every matmul path, small enough to be quick.
SHAPE: dict[str, Any] = dict(
    model_type="gpt2", n_layer=2, n_embd=64, n_head=4, n_positions=256, vocab_size=503,
    activation_function="gelu_new", layer_norm_epsilon=1e-5,
)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> gpt2cpu.Model:
    return gpt2cpu.Model.from_pretrained(model_dir(tmp_path_factory.mktemp("m"), SHAPE, seed=3),
                                         threads=2)


def prompts(seed: int, count: int, longest: int = 40) -> list[np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, SHAPE["vocab_size"], size=int(rng.integers(1, longest + 1)))
            for _ in range(count)]


def alone(model: gpt2cpu.Model, prefix: np.ndarray[Any, Any], new: np.ndarray[Any, Any],
          last_n: int) -> np.ndarray[Any, Any]:
    """The logits of a sequence holding prefix, stepped alone with new."""
    with model.new_sequence() as seq:
        if prefix.size:
            seq.append(prefix)
        return model.step([seq], [new], last_n=last_n)[0]


def test_one_sequence_step_matches_append(model: gpt2cpu.Model) -> None:
    ids = prompts(1, 1)[0]
    with model.new_sequence() as a, model.new_sequence() as b:
        want = a.append(ids, all_logits=True)
        got = model.step([b], [ids], last_n=ids.size)[0]
    assert np.array_equal(want, got)


@pytest.mark.parametrize("batch", [1, 2, 3, 7, 16, 33, 64])
def test_decode_rows_are_batch_invariant(model: gpt2cpu.Model, batch: int) -> None:
    """Each sequence holds a prompt of its own length and takes one token: its logits
    are those it gets stepping alone. Totals of rows cross 16 (the team), 48 (the blocked
    GEMM) and 64."""
    rng = np.random.default_rng(batch)
    ps = prompts(batch, batch)
    new = [rng.integers(0, SHAPE["vocab_size"], size=1) for _ in range(batch)]
    sequences = [model.new_sequence() for _ in range(batch)]
    for seq, p in zip(sequences, ps, strict=True):
        seq.append(p)
    got = model.step(sequences, new)
    for i in range(batch):
        assert np.array_equal(got[i], alone(model, ps[i], new[i], 1)), f"sequence {i} of {batch}"


@pytest.mark.parametrize("batch", [2, 5, 12, 40])
def test_prompt_and_decode_rows_mixed(model: gpt2cpu.Model, batch: int) -> None:
    """Some sequences run whole prompts (several rows each, some wanting all their logits,
    some the last), others one token: every one gets its solo bits."""
    rng = np.random.default_rng(100 + batch)
    prefixes, news, last_ns = [], [], []
    for i in range(batch):
        if i % 3 == 0:  # a prompt from scratch
            prefixes.append(np.zeros(0, dtype=np.int64))
            n = int(rng.integers(2, 30))
            news.append(rng.integers(0, SHAPE["vocab_size"], size=n))
            last_ns.append(n if i % 2 else 1)
        else:  # a decode step after a prompt
            prefixes.append(rng.integers(0, SHAPE["vocab_size"], size=int(rng.integers(1, 60))))
            news.append(rng.integers(0, SHAPE["vocab_size"], size=1))
            last_ns.append(1)
    sequences = [model.new_sequence() for _ in range(batch)]
    for seq, p in zip(sequences, prefixes, strict=True):
        if p.size:
            seq.append(p)
    got = model.step(sequences, news, last_n=last_ns)
    for i in range(batch):
        want = alone(model, prefixes[i], news[i], last_ns[i])
        assert np.array_equal(got[i], want), f"sequence {i} of {batch}"


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_batch_is_thread_count_invariant(tmp_path: Path, threads: int) -> None:
    directory = model_dir(tmp_path, SHAPE, seed=3)
    ps = prompts(7, 20)

    def run(n_threads: int) -> list[np.ndarray[Any, Any]]:
        model = gpt2cpu.Model.from_pretrained(directory, threads=n_threads)
        sequences = [model.new_sequence() for _ in ps]
        first = model.step(sequences, ps)
        second = model.step(sequences, [[int(np.argmax(f[0]))] for f in first])
        return first + second

    reference = run(1)
    for a, b in zip(run(threads), reference, strict=True):
        assert np.array_equal(a, b)


def test_step_over_several_steps_matches_a_long_prompt(model: gpt2cpu.Model) -> None:
    """64 sequences decoding together for a few steps: each one's logits track what its own
    sequence gives token by token alone."""
    ps = prompts(9, 64, longest=20)
    sequences = [model.new_sequence() for _ in ps]
    out = model.step(sequences, ps)
    solo = [model.new_sequence() for _ in ps]
    solo_out = [s.append(p) for s, p in zip(solo, ps, strict=True)]
    for _ in range(3):
        tokens = [[int(np.argmax(o[-1]))] for o in out]
        for a, b in zip(out, solo_out, strict=True):
            assert np.array_equal(a[-1], b)
        out = model.step(sequences, tokens)
        solo_out = [s.append(t) for s, t in zip(solo, tokens, strict=True)]


@pytest.mark.parametrize("rows", [1, 5, 16])
def test_step_argmax_is_numpys_on_its_logits(tmp_path: Path, isa: str, rows: int) -> None:
    """The argmax a step computes for greedy sampling, on every kernel set, over decode
    rows (1 and 5 in a team) and a prompt's (16: a region an operator); only with logits."""
    model = gpt2cpu.Model.from_pretrained(model_dir(tmp_path, SHAPE, seed=3), threads=2,
                                          isa=isa)
    ps = prompts(rows, rows)
    seqs = [_core.Sequence(model._core, 64) for _ in ps]
    ids = [p if rows == 16 else p[-1:] for p in ps]
    for seq, p in zip(seqs, ps, strict=True):
        if rows < 16 and p.size > 1:
            seq.append(p[:-1], 0)
    logits, hidden, best = _core.step(model._core, seqs, ids, [1] * rows, argmax=True)
    assert hidden is None and best is not None and best.shape == (rows,)
    np.testing.assert_array_equal(best, np.argmax(logits, axis=1))
    with pytest.raises(ValueError, match="argmax=True goes with output='logits'"):
        _core.step(model._core, seqs, ids, [1] * rows, "hidden", 1, argmax=True)


def test_hidden_outputs(model: gpt2cpu.Model) -> None:
    ids = prompts(2, 1, longest=30)[0]
    full = model.forward(ids, hidden_states=True)
    assert full.hidden_states.shape == (SHAPE["n_layer"] + 1, ids.size, SHAPE["n_embd"])
    assert np.array_equal(full.logits, model.forward(ids))
    with model.new_sequence() as seq:
        every = step([seq], [ids], last_n=ids.size, output="all_hidden").outputs[0]
    assert np.array_equal(every.transpose(1, 0, 2), full.hidden_states)
    for layer in range(SHAPE["n_layer"] + 1):
        with model.new_sequence() as seq:
            out = step([seq], [ids], last_n=ids.size, output="hidden",
                                      layer=layer)
        assert np.array_equal(out.outputs[0], full.hidden_states[layer])
        # Fewer rows wanted: the last block attends from those alone (query by query rather
        # than in blocks), which may round differently.
        with model.new_sequence() as seq:
            out = step([seq], [ids], last_n=3, output="hidden", layer=layer)
        np.testing.assert_allclose(out.outputs[0], full.hidden_states[layer][-3:], atol=1e-5)


def test_cache_grows_with_what_it_holds(model: gpt2cpu.Model) -> None:
    with model.new_sequence() as seq:
        seq.append([1] * 10)
        core = seq._core
        assert core is not None
        assert core.allocated < SHAPE["n_positions"]
        before = core.allocated
        logits = [seq.append([2]) for _ in range(before)]  # crosses the first growth
        assert core.allocated > before
    # What grew still attends over what was there: the same as a prompt of it all, up to
    # rounding (a prompt attends in blocks, a decode step query by query).
    with model.new_sequence() as ref:
        want = ref.append([1] * 10 + [2] * before, all_logits=True)
    np.testing.assert_allclose(np.stack(logits), want[10:], atol=1e-5)


def test_fork_shares_the_prefix(model: gpt2cpu.Model) -> None:
    prefix = prompts(4, 1, longest=50)[0]
    with model.new_sequence() as seq:
        seq.append(prefix)
        twin = seq.fork()
        assert twin.tokens == seq.tokens
        a = seq.append([5])
        b = twin.append([6])
        c = twin.append([7])
    assert np.array_equal(a, alone(model, prefix, np.array([5]), 1)[0])
    assert np.array_equal(b, alone(model, prefix, np.array([6]), 1)[0])
    with model.new_sequence() as ref:
        ref.append(prefix)
        ref.append([6])
        assert np.array_equal(c, ref.append([7]))
    assert twin.length == prefix.size + 2


def test_bad_element_names_itself_and_changes_nothing(model: gpt2cpu.Model) -> None:
    seqs = [model.new_sequence(capacity=8) for _ in range(3)]
    with pytest.raises(ValueError, match=r"ids\[1\] must not be empty"):
        model.step(seqs, [[1], [], [2]])
    with pytest.raises(ValueError, match=r"ids\[2\].*capacity of 8"):
        model.step(seqs, [[1], [2], list(range(9))])
    with pytest.raises(ValueError, match=r"ids\[0\]\[1\] = 503 is outside"):
        model.step(seqs, [[1, 503], [2], [3]])
    with pytest.raises(ValueError, match=r"sequences\[2\] appears twice"):
        model.step([seqs[0], seqs[1], seqs[0]], [[1], [2], [3]])
    with pytest.raises(ValueError, match=r"last_n\[1\]"):
        model.step(seqs, [[1], [2], [3]], last_n=[1, 2, 1])
    with pytest.raises(ValueError, match="sequences must not be empty"):
        model.step([], [])
    closed = model.new_sequence()
    closed.close()
    with pytest.raises(ValueError, match=r"sequences\[1\] is closed"):
        model.step([seqs[0], closed], [[1], [2]])
    # The generation loop's lean step: a repeat or a closed sequence still names itself,
    # and leaves no sequence held.
    with pytest.raises(ValueError, match=r"sequences\[2\] appears twice"):
        step_sampled([seqs[0], seqs[1], seqs[0]], [1, 2, 3])
    with pytest.raises(ValueError, match=r"sequences\[1\] is closed"):
        step_sampled([seqs[0], closed], [1, 2])
    assert all(s.length == 0 for s in seqs)
    logits, best = step_sampled(seqs, [1, 2, 3])
    assert best == [int(np.argmax(row[0])) for row in logits]
    assert all(s.length == 1 for s in seqs)


def test_core_checks_what_python_does_not(model: gpt2cpu.Model) -> None:
    """The C++ step checks every input itself: a duplicated sequence or an id outside the
    vocabulary passed straight to _core names the input and changes nothing."""
    a = _core.Sequence(model._core, 8)
    b = _core.Sequence(model._core, 8)
    ids = np.array([1], dtype=np.int64)
    with pytest.raises(ValueError, match=r"inputs\[2\]: the same sequence"):
        _core.step(model._core, [a, b, a], [ids, ids, ids], [1, 1, 1])
    with pytest.raises(IndexError, match=r"inputs\[1\]: token id 999"):
        _core.step(model._core, [a, b], [ids, np.array([999])], [1, 1])
    with pytest.raises(IndexError, match=r"inputs\[0\]"):
        _core.step(model._core, [a], [np.arange(9)], [1])
    with pytest.raises(ValueError, match=r"inputs\[1\]: n_out"):
        _core.step(model._core, [a, b], [ids, ids], [1, 2])
    assert a.length == 0 and b.length == 0


def test_steps_on_threads_at_once(model: gpt2cpu.Model) -> None:
    """Two Python threads stepping their own batches at once (the GIL is released in the
    step) each get what they get alone."""
    import threading

    groups = [prompts(20 + g, 6, longest=12) for g in range(2)]

    def run(group: list[np.ndarray[Any, Any]]) -> list[np.ndarray[Any, Any]]:
        sequences = [model.new_sequence() for _ in group]
        out = model.step(sequences, group)
        for _ in range(5):
            out = model.step(sequences, [[int(np.argmax(o[-1]))] for o in out])
        return out

    want = [run(g) for g in groups]
    got: list[Any] = [None, None]

    def work(i: int) -> None:
        got[i] = run(groups[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(got, want, strict=True):
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_a_sequence_may_want_no_outputs(model: gpt2cpu.Model) -> None:
    """last_n=0: the sequence only takes in its tokens (their keys and values), and its next
    step gives what it gives after a solo append of them."""
    a, b = prompts(30, 2, longest=20)
    sa, sb = model.new_sequence(), model.new_sequence()
    out = model.step([sa, sb], [a, b], last_n=[0, 1])
    assert out[0].shape == (0, SHAPE["vocab_size"])
    assert np.array_equal(out[1], alone(model, np.zeros(0, dtype=np.int64), b, 1))
    with model.new_sequence() as ref:
        ref.append(a)
        assert np.array_equal(sa.append([9]), ref.append([9]))
    only_cache = model.step([sa], [[4, 5]], last_n=0)
    assert only_cache[0].shape == (0, SHAPE["vocab_size"]) and sa.length == a.size + 3


def test_fork_of_an_empty_sequence_and_of_a_grown_one(model: gpt2cpu.Model) -> None:
    with model.new_sequence() as empty:
        twin = empty.fork()
        assert twin.length == 0 and twin.append([3]).shape == (SHAPE["vocab_size"],)
    with model.new_sequence() as seq:
        for t in range(70):  # past the first 64 positions: the cache has grown once
            seq.append([t % 50])
        twin = seq.fork()
        core = twin._core
        assert core is not None and 70 <= core.allocated < SHAPE["n_positions"]
        assert np.array_equal(twin.append([1]), seq.append([1]))
