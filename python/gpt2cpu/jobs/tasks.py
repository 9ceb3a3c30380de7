"""What a job does to a batch of rows: one small adapter per task around a model method.

Each adapter checks every row first (tokens, the context), so that one bad row becomes an
error row and the rest of the batch still runs, then hands the good rows to the model.
Adapters are stateless past their options: the same row gives the same result in any batch,
on any worker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, cast

import numpy as np

from .rows import Row
from .seeds import row_seed

if TYPE_CHECKING:
    from ..model import Model
    from ..tasks.embedding import Pooling

IdArray = np.ndarray[Any, np.dtype[np.int64]]


@dataclass(frozen=True)
class Outcome:
    """One row's result (the task's fields) or its error; tokens: the tokens the model
    read and produced for it (for tokens/s)."""

    index: int
    id: Any
    result: dict[str, Any] | None
    error: str | None = None
    tokens: int = 0


class Task:
    """A task adapter: `run(model, rows)` gives one Outcome per row, in order."""

    name: ClassVar[str]
    # The result's keys, in output order, and their types (formats.write_table's).
    types: ClassVar[dict[str, str]]
    fields: ClassVar[tuple[str, ...]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.fields = tuple(cls.types)

    def columns(self) -> dict[str, str]:
        """The result's columns and their types (embed's depend on its pooling)."""
        return dict(self.types)

    def check(self, model: Model) -> None:
        """Raises before any row runs if the model cannot do the task."""
        model.require_tokenizer(f"--task {self.name} reads text")

    def most_tokens(self, model: Model) -> int:
        return model.config.n_positions

    def run(self, model: Model, rows: Sequence[Row]) -> list[Outcome]:
        tokenizer = model.require_tokenizer(f"--task {self.name} reads text")
        most = self.most_tokens(model)
        outcomes: list[Outcome | None] = []
        good: list[tuple[int, Row, IdArray]] = []
        for row in rows:
            if row.problem is not None or row.text is None:
                outcomes.append(Outcome(row.index, row.id, None, row.problem or "no text"))
                continue
            ids = np.array(tokenizer.encode(row.text), dtype=np.int64)
            problem = self.problem(model, ids, most)
            if problem is not None:
                outcomes.append(Outcome(row.index, row.id, None, problem))
                continue
            good.append((len(outcomes), row, ids))
            outcomes.append(None)
        if good:
            results = self.compute(model, [row for _, row, _ in good], [ids for *_, ids in good])
            for (slot, row, _), (result, tokens) in zip(good, results, strict=True):
                outcomes[slot] = Outcome(row.index, row.id, result, None, tokens)
        return [o for o in outcomes if o is not None]

    def problem(self, model: Model, ids: IdArray, most: int) -> str | None:
        if ids.size == 0:
            return "the text encodes to no tokens"
        if ids.size > most:
            return (f"the text has {ids.size} tokens, more than the {most} this task takes "
                    f"(the model's context is {model.config.n_positions} tokens)")
        return None

    def compute(self, model: Model, rows: list[Row],
                ids: list[IdArray]) -> list[tuple[dict[str, Any], int]]:
        raise NotImplementedError


class GenerateTask(Task):
    """Continue each text; the row's seed is row_seed(seed, row id). A prompt longer than
    the context is an error row (unless truncate); more new tokens than the room left are
    capped to it (the finish reason is then "length")."""

    name = "generate"
    types = {"text": "string", "finish_reason": "string", "prompt_tokens": "int64",
             "new_tokens": "int64"}

    def __init__(self, options: Mapping[str, Any], seed: int) -> None:
        row_seed(seed, 0)  # checks seed now rather than on the first row
        self.options = dict(options)
        self.seed = seed

    def check(self, model: Model) -> None:
        super().check(model)
        from ..generation.loop import resolve

        resolve(model, self.options)  # a bad option fails the job before any row runs

    def problem(self, model: Model, ids: IdArray, most: int) -> str | None:
        if ids.size == 0:
            return "the text encodes to no tokens"
        if ids.size > most and not self.options.get("truncate"):
            return (f"the prompt has {ids.size} tokens, more than the model's context of "
                    f"{most} tokens (truncate is off)")
        return None

    def compute(self, model: Model, rows: list[Row],
                ids: list[IdArray]) -> list[tuple[dict[str, Any], int]]:
        # One batched generation: every row's prompt advances in the same steps, each with
        # its own seed, and gets the tokens it would get alone (the step is batch-invariant).
        # The library caps a row's new tokens to the room its prompt leaves ("length").
        results = model.generate([prompt.tolist() for prompt in ids],
                                 seed=[row_seed(self.seed, row.id) for row in rows],
                                 **self.options)
        assert isinstance(results, list)  # a list of prompts gives a list of results
        out = []
        for result in results:
            fields = {"text": result.text, "finish_reason": result.finish_reason,
                      "prompt_tokens": result.prompt_tokens,
                      "new_tokens": len(result.token_ids)}
            out.append((fields, result.prompt_tokens + len(result.token_ids)))
        return out


class ScoreTask(Task):
    """Each text's log-probability: every token's given its prefix (the first has none),
    their sum, and whether each was the model's most likely next token (greedy)."""

    name = "score"
    types = {"logprob": "float64", "tokens": "int64", "greedy": "bool",
             "token_logprobs": "list<float64>"}

    def most_tokens(self, model: Model) -> int:
        return model.config.n_positions + 1  # the last token is only ever a target

    def compute(self, model: Model, rows: list[Row],
                ids: list[IdArray]) -> list[tuple[dict[str, Any], int]]:
        pairs = [(r.logprobs, r.greedy_tokens) for r in model.score(ids)]
        return [
            ({"logprob": float(logprobs.sum()), "tokens": int(one.size),
              "greedy": bool(greedy.all()), "token_logprobs": logprobs.tolist()}, int(one.size))
            for (logprobs, greedy), one in zip(pairs, ids, strict=True)
        ]


class EmbedTask(Task):
    """Each text's hidden-state features through Model.embed."""

    name = "embed"
    types = {"embedding": "list<float64>"}

    def __init__(self, pooling: Pooling = "mean", layer: int = -1, normalize: bool = False) -> None:
        self.pooling, self.layer, self.normalize = pooling, layer, normalize

    def columns(self) -> dict[str, str]:
        return {"embedding": "list<list<float64>>" if self.pooling == "none"
                else "list<float64>"}

    def check(self, model: Model) -> None:
        super().check(model)
        from ..tasks.embedding import check_layer

        check_layer(model, self.layer)  # the range depends on the model: checked on it

    def compute(self, model: Model, rows: list[Row],
                ids: list[IdArray]) -> list[tuple[dict[str, Any], int]]:
        vectors = model.embed(ids, pooling=self.pooling, layer=self.layer,
                              normalize=self.normalize)
        return [({"embedding": np.asarray(v).tolist()}, int(one.size))
                for v, one in zip(vectors, ids, strict=True)]


class ClassifyTask(Task):
    """Each text's label and class probabilities through Model.classify (a
    GPT2ForSequenceClassification checkpoint)."""

    name = "classify"
    types = {"label": "string", "label_id": "int64", "probabilities": "list<float64>"}

    def check(self, model: Model) -> None:
        super().check(model)
        from ..tasks.heads import require_head

        require_head(model, "sequence_classification", "--task classify")

    def compute(self, model: Model, rows: list[Row],
                ids: list[IdArray]) -> list[tuple[dict[str, Any], int]]:
        classes = model.classify(ids)
        return [({"label": str(c.label), "label_id": int(c.label_id),
                  "probabilities": np.asarray(c.probabilities).tolist()}, int(one.size))
                for c, one in zip(classes, ids, strict=True)]


TASKS: dict[str, type[Task]] = {
    t.name: t for t in (GenerateTask, ScoreTask, EmbedTask, ClassifyTask)
}


def make_task(name: str, *, options: Mapping[str, Any] | None = None, seed: int = 0,
              pooling: str = "mean", layer: int = -1, normalize: bool = False) -> Task:
    """The adapter for task `name` with its options (each task takes the ones it uses)."""
    if name == "generate":
        return GenerateTask(options or {}, seed)
    if name == "embed":
        if pooling not in ("mean", "last", "none"):
            raise ValueError(f"pooling must be 'mean', 'last' or 'none', got {pooling!r}")
        return EmbedTask(cast("Pooling", pooling), layer, normalize)
    if name in TASKS:
        return TASKS[name]()
    raise ValueError(f"task must be one of {', '.join(TASKS)}, got {name!r}")
