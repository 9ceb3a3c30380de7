"""The fine-tuned task heads Hugging Face puts on GPT-2, run on the engine's hidden states
(the final layer norm's output):

- GPT2ForSequenceClassification: `score` (num_labels x n_embd, no bias) at the last token
  that is not padding (the last token whose id is not pad_token_id, as transformers pools;
  without pad_token_id, the last token, as transformers does for one text);
- GPT2ForTokenClassification: `classifier` (with bias) at every token;
- GPT2DoubleHeadsModel: `multiple_choice_head.summary` (1 x n_embd, bias) at each choice's
  classification token (default its last), its optional tanh, softmax over the choices.

A head is tiny next to the transformer: its product runs in numpy on the few pooled rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..errors import ModelFormatError
from .embedding import hidden_rows
from .inputs import batch_ids

if TYPE_CHECKING:
    from ..engine.ids import IdsLike
    from ..loading.safetensors import SafetensorsFile
    from ..model import Model

HeadKind = Literal["sequence_classification", "token_classification", "multiple_choice"]

ARCHITECTURES: dict[str, HeadKind] = {
    "GPT2ForSequenceClassification": "sequence_classification",
    "GPT2ForTokenClassification": "token_classification",
    "GPT2DoubleHeadsModel": "multiple_choice",
}
# Each head's tensors: (weight, bias or None), with or without the checkpoint's prefix.
_TENSORS: dict[HeadKind, tuple[str, str | None]] = {
    "sequence_classification": ("score.weight", None),
    "token_classification": ("classifier.weight", "classifier.bias"),
    "multiple_choice": ("multiple_choice_head.summary.weight", "multiple_choice_head.summary.bias"),
}


@dataclass(frozen=True)
class TaskHead:
    """A loaded head: weight (outputs, n_embd) and bias (outputs,) as float32."""

    kind: HeadKind
    weight: np.ndarray[Any, Any]
    bias: np.ndarray[Any, Any] | None
    labels: tuple[str, ...]  # id2label in id order; empty for multiple choice
    pad_token_id: int | None
    multi_label: bool  # problem_type "multi_label_classification": sigmoid, not softmax
    tanh: bool  # the multiple-choice summary's activation

    def apply(self, hidden: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """(rows, n_embd) hidden states -> (rows, outputs) logits, in float32 as torch.

        Row by row: a BLAS product over many rows blocks them differently from one row, so a
        text's logits would depend on what shares its batch (the engine's outputs do not)."""
        weight_t = np.ascontiguousarray(self.weight.T)
        out: np.ndarray[Any, Any] = (
            np.stack([row @ weight_t for row in hidden]) if len(hidden)
            else np.zeros((0, self.weight.shape[0]), np.float32)
        )
        if self.bias is not None:
            out = out + self.bias
        return np.tanh(out) if self.tanh else out

    def probabilities(self, logits: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        wide: np.ndarray[Any, Any] = logits.astype(np.float64)
        if self.multi_label:
            sigmoid: np.ndarray[Any, Any] = 1.0 / (1.0 + np.exp(-wide))
            return sigmoid
        e: np.ndarray[Any, Any] = np.exp(wide - wide.max(axis=-1, keepdims=True))
        softmax: np.ndarray[Any, Any] = e / e.sum(axis=-1, keepdims=True)
        return softmax


def _labels(config: dict[str, Any], where: Path, count: int) -> tuple[str, ...]:
    id2label = config.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        raise ModelFormatError(f"{where}: a classification head needs 'id2label' (its labels)")
    labels: list[str] = []
    for i in range(count):
        label = id2label.get(str(i), id2label.get(i))
        if not isinstance(label, str):
            raise ModelFormatError(
                f"{where}: id2label has no label for id {i} (the head has {count} outputs)"
            )
        labels.append(label)
    if len(id2label) != count:
        raise ModelFormatError(
            f"{where}: id2label holds {len(id2label)} labels but the head has {count} outputs"
        )
    return tuple(labels)


def load_head(directory: Path, files: list[SafetensorsFile], n_embd: int) -> TaskHead | None:
    """The task head of a checkpoint whose config.json names one of ARCHITECTURES, read from
    its safetensors files; None for a plain language model. ModelFormatError naming the
    file and field for a head that cannot be used."""
    where = directory / "config.json"
    config = json.loads(where.read_text(encoding="utf-8"))
    architectures = config.get("architectures") if isinstance(config, dict) else None
    if not isinstance(architectures, list):
        return None
    kind = next((ARCHITECTURES[a] for a in architectures if a in ARCHITECTURES), None)
    if kind is None:
        return None
    weight_name, bias_name = _TENSORS[kind]

    def tensor(name: str) -> np.ndarray[Any, Any]:
        for f in files:
            for key in (name, "transformer." + name):
                if key in f.tensors:
                    return np.array(f.to_float32(key), dtype=np.float32, copy=True)
        raise ModelFormatError(f"{files[0].path}: missing tensor {name!r} of the {kind} head")

    weight = tensor(weight_name)
    if weight.ndim != 2 or weight.shape[1] != n_embd or weight.shape[0] < 1:
        raise ModelFormatError(
            f"{files[0].path}: tensor {weight_name!r} has shape {weight.shape}; the head needs "
            f"(outputs, {n_embd})"
        )
    bias = tensor(bias_name) if bias_name is not None else None
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ModelFormatError(
            f"{files[0].path}: tensor {bias_name!r} has shape {bias.shape}; the head needs "
            f"({weight.shape[0]},)"
        )
    tanh = False
    labels: tuple[str, ...] = ()
    if kind == "multiple_choice":
        if config.get("summary_type", "cls_index") != "cls_index" or not config.get(
            "summary_use_proj", True
        ):
            raise ModelFormatError(
                f"{where}: only summary_type 'cls_index' with summary_use_proj is supported"
            )
        activation = config.get("summary_activation")
        if activation not in (None, "tanh"):
            raise ModelFormatError(f"{where}: summary_activation {activation!r} is not supported")
        tanh = activation == "tanh"
        if weight.shape[0] != 1:
            raise ModelFormatError(f"{where}: the multiple-choice head must have one output")
    else:
        labels = _labels(config, where, weight.shape[0])
    pad = config.get("pad_token_id")
    if pad is not None and (isinstance(pad, bool) or not isinstance(pad, int)):
        raise ModelFormatError(f"{where}: pad_token_id must be an integer or null, got {pad!r}")
    return TaskHead(
        kind=kind,
        weight=weight,
        bias=bias,
        labels=labels,
        pad_token_id=pad,
        multi_label=config.get("problem_type") == "multi_label_classification",
        tanh=tanh,
    )


@dataclass(frozen=True)
class Classification:
    """One text's class: label (from id2label), label_id, and probabilities (num_labels,)
    in id order (softmax; sigmoid for a multi-label model). logits: the head's raw output."""

    label: str
    label_id: int
    probabilities: np.ndarray[Any, Any]
    logits: np.ndarray[Any, Any]


@dataclass(frozen=True)
class TokenClassification:
    """Each token's class: token_ids, labels (one per token), probabilities and logits
    (tokens, num_labels)."""

    token_ids: list[int]
    labels: list[str]
    probabilities: np.ndarray[Any, Any]
    logits: np.ndarray[Any, Any]


@dataclass(frozen=True)
class Choice:
    """The answer to one multiple-choice question: index of the most likely choice,
    probabilities over the choices (softmax of logits)."""

    index: int
    probabilities: np.ndarray[Any, Any]
    logits: np.ndarray[Any, Any]


def require_head(model: Model, kind: HeadKind, method: str) -> TaskHead:
    head = model.head
    if head is None:
        raise ValueError(
            f"{method} needs a task-head checkpoint ({', '.join(ARCHITECTURES)}); this model "
            "is a plain language model"
        )
    if head.kind != kind:
        others = {
            "sequence_classification": "classify",
            "token_classification": "classify_tokens",
            "multiple_choice": "choose",
        }
        raise ValueError(
            f"{method} needs a {kind} head; this model's is {head.kind} (use {others[head.kind]})"
        )
    return head


def pooled_position(ids: np.ndarray[Any, Any], pad_token_id: int | None) -> int:
    """transformers' pooled position: the last token that is not pad_token_id (0 if all
    are), or the last token without one."""
    if pad_token_id is None:
        return int(ids.size - 1)
    kept = np.flatnonzero(ids != pad_token_id)
    return int(kept[-1]) if kept.size else 0


def classify(model: Model, texts: Seq[str | IdsLike]) -> list[Classification]:
    head = require_head(model, "sequence_classification", "classify")
    all_ids = batch_ids(model, texts, "texts", most=model.config.n_positions)
    # Only the prefix up to the pooled token matters: causal attention never looks ahead.
    prefixes = [ids[: pooled_position(ids, head.pad_token_id) + 1] for ids in all_ids]
    states = hidden_rows(model, prefixes, [1] * len(prefixes), model.config.n_layer)
    logits = head.apply(np.concatenate(states))
    probs = head.probabilities(logits)
    out = []
    for row, p in zip(logits, probs, strict=True):
        best = int(np.argmax(row))
        out.append(Classification(head.labels[best], best, p, row))
    return out


def classify_tokens(model: Model, texts: Seq[str | IdsLike]) -> list[TokenClassification]:
    head = require_head(model, "token_classification", "classify_tokens")
    all_ids = batch_ids(model, texts, "texts", most=model.config.n_positions)
    states = hidden_rows(model, all_ids, [ids.size for ids in all_ids], model.config.n_layer)
    out = []
    for ids, hidden in zip(all_ids, states, strict=True):
        logits = head.apply(hidden)
        best = logits.argmax(axis=1)
        labels = [head.labels[int(b)] for b in best]
        out.append(TokenClassification(ids.tolist(), labels, head.probabilities(logits), logits))
    return out


def choose(model: Model, choices: Seq[str | IdsLike], cls_index: Seq[int] | None = None) -> Choice:
    head = require_head(model, "multiple_choice", "choose")
    all_ids = batch_ids(model, choices, "choices", most=model.config.n_positions)
    if cls_index is None:
        positions = [ids.size - 1 for ids in all_ids]
    else:
        if len(cls_index) != len(all_ids):
            raise ValueError(
                f"cls_index must hold one position per choice: {len(cls_index)} for {len(all_ids)}"
            )
        positions = []
        for i, (p, ids) in enumerate(zip(cls_index, all_ids, strict=True)):
            if (
                isinstance(p, bool)
                or not isinstance(p, (int, np.integer))
                or not (0 <= p < ids.size)
            ):
                raise ValueError(f"cls_index[{i}] must be in [0, {ids.size}), got {p!r}")
            positions.append(int(p))
    prefixes = [ids[: p + 1] for ids, p in zip(all_ids, positions, strict=True)]
    states = hidden_rows(model, prefixes, [1] * len(prefixes), model.config.n_layer)
    logits = head.apply(np.concatenate(states))[:, 0]
    e = np.exp(logits.astype(np.float64) - logits.max())
    return Choice(int(np.argmax(logits)), e / e.sum(), logits)
