"""The keyword options of `Model.generate` and `Model.stream`, written once for both.

`signature` below is their one signature; `generation_method` gives it to a method
that receives only the options its caller passed (so a model's generation_config.json can
supply the rest), for IDEs and `help()`, and composes the method's help from the option and
result descriptions that `SamplingParams`, `GenerationConfig` and `GenerationResult`
document. Type checkers read the same options from `Options` (a test holds their names equal),
and from its narrower variants, which let the methods' overloads type a single prompt's
result apart from a list's.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypedDict, TypeVar, cast

if TYPE_CHECKING:
    from collections.abc import Sequence as Seq

    from ..engine.ids import IdsLike
    from ..model import Model, Sequence
    from .decoding import LogprobsMode

F = TypeVar("F", bound=Callable[..., Any])


def signature(
    self: Model,
    prompt: str | IdsLike | Seq[str | IdsLike],
    *,
    sequence: Sequence | None = None,
    n: int = 1,
    logprobs: int | None = None,
    logprobs_mode: LogprobsMode = "raw",
    max_new_tokens: int | None = 64,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    repetition_penalty: float = 1.0,
    presence_penalty: float = 0.0,
    frequency_penalty: float = 0.0,
    logit_bias: Mapping[int, float] | None = None,
    stop: str | Iterable[str] | None = None,
    ignore_eos: bool = False,
    seed: int | Seq[int] | None = None,
    truncate: bool = False,
) -> None:
    """prompt: text, or a list of token ids (a model loaded without a tokenizer takes ids
        only). Empty: generation starts from the BOS (else EOS) token. A list of prompts
        (texts or id lists) generates them together, all advancing in one batched step,
        and returns a list of results (stream: (index, piece) pairs); each prompt gets the
        tokens it gets alone with the same seed. A list of ints (or []) is one prompt.
        A prompt that does not fit the context raises ValueError naming its index before
        any prompt runs.
    n: samples of each prompt, from one prefill (the prompt's cache is forked); with n > 1
        or a list of prompts the result is a list, prompt i's k-th sample at i * n + k.
        Sample k draws with seed gpt2cpu.generation.sampling.sample_seed(seed, k) (k=0: seed).
    logprobs: k in [0, 20]: each result carries per generated token its log-probability
        and the k most likely alternatives (result.logprobs). None: none.
    logprobs_mode: "raw" (default, as vLLM): log_softmax of the model's logits, before the
        temperature, penalties and filters; "processed": of the logits sampling drew from
        (after them; filtered tokens have -inf).
    seed may be a list, one per prompt.
    sequence: a `Sequence` of this model to continue (a chat that keeps its KV cache). The
        prompt's tokens are appended after the sequence's (an empty prompt continues from
        its last token) and so is every new token: afterwards the sequence holds its earlier
        tokens, the prompt's and result.token_ids. max_new_tokens=None then runs until the
        sequence's capacity is full; truncate=True is refused (cached tokens cannot be
        dropped from the front). The repetition penalty counts the sequence's tokens as
        prompt. The sequence stays open; a stream closed early leaves it holding the tokens
        run so far.
    """


class _SharedOptions(TypedDict, total=False):
    """The options of `signature` that every call may pass as they are: all but n, logprobs
    and seed, whose values decide whether a single prompt's call is batched."""

    sequence: Sequence | None
    logprobs_mode: LogprobsMode
    max_new_tokens: int | None
    temperature: float
    top_k: int
    top_p: float
    min_p: float
    repetition_penalty: float
    presence_penalty: float
    frequency_penalty: float
    logit_bias: Mapping[int, float] | None
    stop: str | Iterable[str] | None
    ignore_eos: bool
    truncate: bool


class OneSampleOptions(_SharedOptions, total=False):
    """The options of `signature` but n, for type checkers (**options: Unpack[...])."""

    logprobs: int | None
    seed: int | Seq[int] | None


class Options(OneSampleOptions, total=False):
    """Every option of `signature`, for type checkers."""

    n: int


class UnbatchedOptions(_SharedOptions, total=False):
    """Every option of `signature`, with the values that keep a single prompt off the
    batched path (batch.wants_batch): one sample, no logprobs, one seed."""

    n: Literal[1]
    logprobs: None
    seed: int | None


def _entries(cls: type) -> str:
    """The option entries of a class docstring: everything after its first paragraph."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    return doc.split("\n\n", 1)[1] if "\n\n" in doc else ""


def options_help() -> str:
    """Every option's meaning, in the order of the signature."""
    from .loop import GenerationConfig
    from .sampling import SamplingParams

    return "\n".join(
        (inspect.cleandoc(signature.__doc__ or ""), _entries(GenerationConfig),
         _entries(SamplingParams))
    )


def option_names() -> tuple[str, ...]:
    """The keyword options, in the order of the signature (prompt excluded)."""
    parameters = inspect.signature(signature).parameters.values()
    return tuple(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)


def generation_method(stub: Callable[..., None]) -> Callable[[F], F]:
    """Gives a method that takes (self, prompt, **options) the keywords of `stub`: at run
    time through __signature__ (type checkers read the method's own annotations or
    overloads, with Options), and in its help the meaning of each option and the result's
    fields. A misspelled option raises a TypeError naming it and the method. The method
    receives the options its caller gave, and only those."""

    def decorate(impl: F) -> F:
        from .loop import GenerationResult

        shown = inspect.signature(stub).replace(
            return_annotation=inspect.signature(impl).return_annotation
        )
        known = option_names()
        public = f"Model.{impl.__name__}()"

        @functools.wraps(impl)
        def method(*args: Any, **kwargs: Any) -> Any:
            for name in kwargs:
                if name not in shown.parameters:
                    near = difflib.get_close_matches(name, known, n=1)
                    hint = f"; did you mean {near[0]!r}?" if near else ""
                    raise TypeError(
                        f"{public} got an unexpected keyword argument {name!r}{hint} "
                        f"(its options: {', '.join(known)})"
                    )
            try:
                given = shown.bind(*args, **kwargs).arguments
            except TypeError as exc:
                raise TypeError(f"{public}: {exc}") from None
            model, prompt = given.pop("self"), given.pop("prompt")
            return impl(model, prompt, **given)

        method.__signature__ = shown  # type: ignore[attr-defined]
        method.__doc__ = "\n\n".join(
            (
                inspect.cleandoc(impl.__doc__ or ""),
                "Options (a model directory's generation_config.json replaces the defaults\n"
                "shown for the options it names; the caller's options replace both):",
                options_help(),
                "The GenerationResult's fields:",
                _entries(GenerationResult),
            )
        )
        return cast(F, method)

    return decorate
