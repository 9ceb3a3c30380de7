"""One forward step over several sequences at once (the C++ core's `step`).

Each sequence runs its own new tokens (a prompt, or one sampled token) against its own KV
cache; their rows share every matrix product, so a step of 16 decoding sequences reads the
weights once. A sequence's outputs are the same bits whatever else shares its step.

step() checks every input before anything runs: a bad one raises (naming its index) and
no sequence changes. Each sequence is held for the step (holding.Held): one that another
thread is running raises RuntimeError naming it. step_sampled() is the generation loop's
decode step, for the tokens its samplers picked: it skips the checks of arbitrary input.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .. import _core
from .holding import Held
from .ids import IdsLike, Int, as_ids, int_in

if TYPE_CHECKING:
    from ..model import Sequence

Output = Literal["logits", "hidden", "all_hidden"]


@dataclass(frozen=True)
class StepOutputs:
    """What one step returned, one array per sequence, in the order given.

    outputs[i]: (last_n[i], width) logits or hidden states of sequence i's last positions
        ((last_n[i], n_layer + 1, n_embd) for output="all_hidden").
    hidden_states[i]: with hidden_states=True, every hidden state of those positions,
        (last_n[i], n_layer + 1, n_embd); else None.
    """

    outputs: list[np.ndarray[Any, Any]]
    hidden_states: list[np.ndarray[Any, Any]] | None = None


def step(
    sequences: Seq[Sequence],
    ids: Seq[IdsLike],
    *,
    last_n: int | Seq[int] = 1,
    output: Output = "logits",
    layer: Int = 0,
    hidden_states: bool = False,
) -> StepOutputs:
    """Run ids[i] at the next positions of sequences[i], all in one step, and return the
    outputs of each sequence's last last_n[i] new positions (0 for none: the sequence only
    takes in its tokens).

    output: "logits"; "hidden", the hidden state `layer` (0: the embeddings, n_layer: the
    final layer norm's output, as Hugging Face numbers output_hidden_states); or
    "all_hidden", every one of them. hidden_states=True with "logits" returns both.
    """
    if isinstance(sequences, (str, bytes)) or not isinstance(sequences, Seq):
        raise TypeError("sequences must be a list of Sequence objects")
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Seq):
        raise TypeError("ids must be a list with one array of token ids per sequence")
    if not sequences:
        raise ValueError("sequences must not be empty")
    if len(ids) != len(sequences):
        raise ValueError(f"ids must hold one entry per sequence: {len(ids)} for {len(sequences)}")
    if output not in ("logits", "hidden", "all_hidden"):
        raise ValueError(f"output must be 'logits', 'hidden' or 'all_hidden', got {output!r}")
    if not isinstance(hidden_states, bool):
        raise ValueError(f"hidden_states must be True or False, got {hidden_states!r}")
    if hidden_states and output != "logits":
        raise ValueError("hidden_states=True goes with output='logits'")
    model = sequences[0].model
    n_layer = model.config.n_layer
    index = int_in(layer, "layer", 0, n_layer) if output == "hidden" else 0
    arrays: list[np.ndarray[Any, Any]] = []
    for i, seq in enumerate(sequences):  # a repeated or closed sequence: Held says so
        if seq.model is not model:
            raise ValueError(f"sequences[{i}] belongs to another model than sequences[0]")
        arr = as_ids(ids[i], model.config.vocab_size, f"ids[{i}]")
        if arr.size == 0:
            raise ValueError(f"ids[{i}] must not be empty")
        arrays.append(arr)
    if isinstance(last_n, Seq):
        if len(last_n) != len(sequences):
            raise ValueError(
                f"last_n must hold one entry per sequence: {len(last_n)} for {len(sequences)}"
            )
        rows = [
            int_in(n, f"last_n[{i}]", 0, a.size)
            for i, (n, a) in enumerate(zip(last_n, arrays, strict=True))
        ]
    else:
        rows = [int_in(last_n, "last_n", 0, a.size) for a in arrays]
    return _run(sequences, arrays, rows, output, index, hidden_states)[0]


def step_sampled(sequences: Seq[Sequence],
                 tokens: Seq[int]) -> tuple[list[np.ndarray[Any, Any]], list[int]]:
    """The generation loop's decode step: tokens[i], which its sampler picked (so an id of
    the vocabulary, which the C++ core checks again), at the next position of sequences[i],
    each distinct and open. Returns each one's logits, (1, vocab_size), and their argmax
    (numpy's, computed by the step while the logits were in cache: greedy sampling's pick
    where nothing changes the logits). step() without the checks and conversions of
    arbitrary input, which took ~0.1 ms of a 16-sequence decode step on the caches the step
    leaves cold (as Sequence._append_sampled for one)."""
    ids = np.array(tokens, dtype=np.int64).reshape(-1, 1)
    out, best = _run(sequences, list(ids), [1] * len(sequences), "logits", 0, False,
                     argmax=True)
    assert best is not None
    return out.outputs, best.tolist()


def _run(sequences: Seq[Sequence], arrays: list[np.ndarray[Any, Any]], rows: list[int],
         output: Output, index: int, hidden_states: bool, *,
         argmax: bool = False) -> tuple[StepOutputs, np.ndarray[Any, Any] | None]:
    """The step of checked inputs: arrays[i] (int64 ids) at the next positions of
    sequences[i], the outputs of its last rows[i]; and with argmax, each row's argmax."""
    model = sequences[0].model
    with Held(sequences) as cores:
        for i, (seq, arr) in enumerate(zip(sequences, arrays, strict=True)):
            if seq.length + arr.size > seq.capacity:
                raise ValueError(
                    f"ids[{i}]: appending {arr.size} tokens to a sequence of {seq.length} "
                    f"would exceed its capacity of {seq.capacity} tokens"
                )
        out, hidden, best = _core.step(model._core, cores, arrays, rows, output, index,
                                       hidden_states, argmax)
        model.stats.count(steps=1, prefills=sum(1 for seq in sequences if not seq.tokens))
        for seq, arr in zip(sequences, arrays, strict=True):
            seq.tokens.extend(arr.tolist())
    outputs = StepOutputs(_split(out, rows), None if hidden is None else _split(hidden, rows))
    return outputs, best


def _split(out: np.ndarray[Any, Any], rows: list[int]) -> list[np.ndarray[Any, Any]]:
    """out's rows in consecutive pieces of rows[i] (views; np.split took ~15 us for 16)."""
    pieces = []
    start = 0
    for n in rows:
        pieces.append(out[start : start + n])
        start += n
    return pieces


def row_batches(sizes: Seq[int], budget: int) -> list[list[int]]:
    """Indices of sizes grouped in order so that each group's sum stays within budget (a
    bigger element goes alone): the steps a batch runs as, bounding their memory."""
    groups: list[list[int]] = []
    current: list[int] = []
    total = 0
    for i, size in enumerate(sizes):
        if current and total + size > budget:
            groups.append(current)
            current, total = [], 0
        current.append(i)
        total += size
    if current:
        groups.append(current)
    return groups
