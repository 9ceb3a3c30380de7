"""The user-facing model: load a Hugging Face GPT-2 directory, run it, generate from it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from collections.abc import Sequence as Seq
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast, overload

import numpy as np

from . import _core
from .engine.holding import Held
from .engine.ids import IdsLike, Int, as_ids, int_in
from .engine.threads import check_threads, default_threads
from .errors import ModelFormatError
from .generation.options import generation_method, signature
from .loading.checkpoint import (
    core_config,
    load_into,
    locate_tensors,
    open_checkpoint,
    untie_distinct_head,
)
from .loading.config import GenerationDefaults, GPT2Config
from .tasks.heads import load_head

# A bad GPT2CPU_ISA is a ValueError here, as the engine loads, not at the first prompt.
_core.init_default_isa()

# What from_pretrained(dtype=) and (kv_dtype=) accept, the first being the default.
DTYPES: tuple[str, ...] = tuple(_core.DTYPES)
KV_DTYPES: tuple[str, ...] = tuple(_core.KV_DTYPES)


def _check_choice(option: str, value: str | None, valid: tuple[str, ...]) -> str:
    """value as the engine names it (None: the first of valid); ValueError listing them."""
    if value is None:
        return valid[0]
    if not isinstance(value, str) or value not in valid:
        raise ValueError(f"{option} must be one of {', '.join(valid)}; got {value!r}")
    return value


def check_dtype(dtype: str | None) -> str:
    """dtype as the engine names it (None: float32); ValueError listing the valid ones."""
    return _check_choice("dtype", dtype, DTYPES)


def check_kv_dtype(kv_dtype: str | None) -> str:
    """kv_dtype as the engine names it (None: float32); ValueError listing the valid ones."""
    return _check_choice("kv_dtype", kv_dtype, KV_DTYPES)


def check_isa(isa: str | None) -> str | None:
    """isa as given (None: the process's default), checked before any file is read:
    ValueError (TypeError for a non-string) listing the sets this CPU can run."""
    if isa is None:
        return isa
    if not isinstance(isa, str):
        raise TypeError(f"isa must be a string, one of {', '.join(_core.available_isas())} "
                        f"or 'auto'; got {isa!r}")
    _core.check_isa(isa)  # the engine's rule and words: unknown, or not on this CPU
    return isa


if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .generation.batch import BatchStream
    from .generation.loop import GenerationResult, GenerationStream
    from .generation.options import OneSampleOptions, Options, UnbatchedOptions
    from .tasks.embedding import ForwardOutput, Pooling
    from .tasks.heads import Choice, Classification, TaskHead, TokenClassification
    from .tasks.scoring import ScoreResult
    from .tokenizer.tokenizer import Tokenizer

_Engine = _core.Model


@dataclass
class EngineStats:
    """prefills: times a sequence's first tokens ran (a forked sequence runs none);
    steps: batched steps run (engine.step), each counted once however many sequences."""

    prefills: int = 0
    steps: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def count(self, *, steps: int = 0, prefills: int = 0) -> None:
        """Adds to the counters; threads that share a model count through it (`+=` on an
        attribute is a read and a write another thread's may fall between)."""
        with self._lock:
            self.steps += steps
            self.prefills += prefills


class Sequence:
    """One sequence with its own KV cache: feed a prompt, then one token at a time.

    Created by `Model.new_sequence()`. Each `append` runs only the new tokens and returns the
    logits of the last position; earlier tokens' keys and values are kept in the cache.
    Sequences of one model are independent and may run on different threads at once.
    `close()` (or leaving a `with` block) hands the cache back at once; the sequence is
    unusable after it. The model keeps closed sequences' caches for the next sequences to
    reuse (mapping fresh pages costs ~5% of a long prompt), within the most it had in use
    at once and its weights' size, and frees the rest.
    """

    def __init__(self, model: Model, capacity: Int | None = None, *,
                 reserve: bool = False) -> None:
        n_positions = model.config.n_positions
        if capacity is None:
            capacity = n_positions
        if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)):
            raise TypeError(f"capacity must be an integer, got {capacity!r}")
        capacity = int(capacity)
        if not 1 <= capacity <= n_positions:
            raise ValueError(
                f"capacity must be in [1, {n_positions}] (the model's n_positions), got {capacity}"
            )
        self.model = model
        self._core: _core.Sequence | None = _core.Sequence(model._core, capacity)
        if reserve:
            self._core.reserve(capacity)
        self._capacity = capacity
        self.tokens: list[int] = []
        self._busy = threading.Lock()

    @property
    def length(self) -> int:
        return len(self.tokens)

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def closed(self) -> bool:
        return self._core is None

    def close(self) -> None:
        """Hand the KV cache back now rather than when the sequence is garbage-collected."""
        # A call running on another thread keeps the C++ sequence alive until it returns.
        self._core = None

    @property
    def cache_bytes(self) -> int:
        """Bytes the KV cache takes now: the positions it has memory for (it grows as
        tokens are added), in the model's kv_dtype."""
        return int(self._open_core().cache_bytes)

    def __enter__(self) -> Sequence:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open_core(self) -> _core.Sequence:
        core = self._core
        if core is None:
            raise ValueError("this sequence is closed")
        return core

    @contextmanager
    def _in_use(self) -> Iterator[_core.Sequence]:
        """The open C++ sequence, held by this thread for one call (see Held)."""
        with Held([self], named=False) as cores:
            yield cores[0]

    def append(
        self, ids: IdsLike, *, all_logits: bool = False, last_n: Int | None = None
    ) -> np.ndarray[Any, Any]:
        """Run ids at the next positions. Returns the last position's logits (vocab_size,);
        with all_logits=True those of every new position (len(ids), vocab_size); with
        last_n=n those of the last n new positions (n, vocab_size). The LM head runs only
        for the positions returned."""
        self._open_core()
        arr = as_ids(ids, self.model.config.vocab_size)
        if arr.size == 0:
            raise ValueError("ids must not be empty")
        if last_n is not None:
            if all_logits:
                raise ValueError("give all_logits or last_n, not both")
            last_n = int_in(last_n, "last_n", 1, arr.size)
        rows = arr.size if all_logits else (last_n or 1)
        with self._in_use() as core:
            self._check_room(arr.size)
            if not self.tokens:
                self.model.stats.count(prefills=1)
            logits = core.append(arr, rows)
            self.tokens.extend(arr.tolist())
        return logits if all_logits or last_n is not None else logits[0]

    def _check_room(self, n: int) -> None:
        if self.length + n > self.capacity:
            raise ValueError(
                f"appending {n} tokens to a sequence of {self.length} would exceed its "
                f"capacity of {self.capacity} tokens"
            )

    def _append_sampled(self, token: int) -> np.ndarray[Any, Any]:
        """append([token]) for a token the sampler picked, so an id of the vocabulary (and
        the C++ core checks it again): the generation loop's step, without as_ids, whose
        numpy checks take some 50 us on the caches a decode step leaves cold."""
        with self._in_use() as core:
            self._check_room(1)
            row: np.ndarray[Any, Any] = core.append(np.array([token], dtype=np.int64), 1)[0]
            self.tokens.append(token)
        return row

    def fork(self) -> Sequence:
        """A new sequence holding this one's tokens and a copy of their keys and values, so
        that a shared prefix (a few-shot prompt, one prompt sampled several times) is
        computed once. The two are independent from then on. Copying the cache is one
        memcpy, about 1% of computing the prefix again (README: measured)."""
        twin = object.__new__(Sequence)
        twin.model = self.model
        with self._in_use() as core:
            twin._core = core.fork()
            twin.tokens = list(self.tokens)
        twin._capacity = self._capacity
        twin._busy = threading.Lock()
        return twin

    def reserve(self, tokens: Int) -> None:
        """Memory for `tokens` tokens (at most the capacity) now, where you know what the
        sequence will hold: the cache otherwise grows as tokens come, copying itself each
        time it doubles (a 16-sequence decode that grew its caches twice ran ~10% slower).
        Room never used costs no memory: pages become resident as tokens are written."""
        with self._in_use() as core:
            core.reserve(int_in(tokens, "tokens", 0, self.capacity))

    def truncate(self, length: Int) -> None:
        """Forget every token from position `length` on (to re-use a shared prefix)."""
        with self._in_use() as core:
            length = int_in(length, "length", 0, self.length)
            core.truncate(length)
            del self.tokens[length:]


class Model:
    """A GPT-2-architecture model loaded into the C++ engine: `Model.from_pretrained(path)`,
    or `Model.from_pretrained()` for the bundled demo model.

    Read-only once loaded: any number of sequences, on any number of threads, may use it.
    """

    _core: _Engine
    _tokenizer_skipped: bool
    config: GPT2Config
    tokenizer: Tokenizer | None
    path: Path | None
    generation_defaults: GenerationDefaults
    stats: EngineStats
    """Counters of the engine's work for this model (prefills run)."""
    head: TaskHead | None
    """A fine-tuned task head (classification, multiple choice), if the checkpoint has one."""

    def __init__(self) -> None:
        raise TypeError("load a Model with Model.from_pretrained(path)")

    @classmethod
    def _create(cls, core: _Engine, config: GPT2Config, tokenizer: Tokenizer | None,
                path: Path | None = None,
                generation_defaults: GenerationDefaults | None = None,
                tokenizer_skipped: bool = False) -> Model:
        # The constructor's arguments are the engine's internals, so help(Model) and users
        # see from_pretrained instead.
        model = cls.__new__(cls)
        model._core = core
        model.config = config
        model.tokenizer = tokenizer
        model.path = path
        model.generation_defaults = generation_defaults or GenerationDefaults()
        model._tokenizer_skipped = tokenizer_skipped
        model.head = None
        model.stats = EngineStats()
        return model

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path | None = None,
        threads: int | None = None,
        dtype: str | None = None,
        *,
        progress: bool | None = None,
        tokenizer: bool = True,
        isa: str | None = None,
        kv_dtype: str | None = None,
    ) -> Model:
        """Load a Hugging Face model directory: config.json, model.safetensors (or sharded
        with model.safetensors.index.json), when present the tokenizer files and
        generation_config.json (defaults for generate and stream).

        path: the directory; None: the bundled demo model, gpt2cpu.BUNDLED_MODEL_DIR (a
            3.5M-parameter GPT-2 trained on Tiny Shakespeare).
        threads: compute threads (default: GPT2CPU_NUM_THREADS, else the usable cores).
        dtype: what the weight matrices are stored and read as, converted at load from
            whatever the checkpoint holds: "float32" (the default), "bfloat16", "float16",
            "int8" or "int4" (docs/precisions.md gives each one's accuracy and speed).
        progress: show a progress line while loading (default: when stderr is a terminal).
        tokenizer: False skips the tokenizer files, for token-ids-in, ids-out work with a
            directory whose tokenizer is missing or unusable; text then raises ValueError.
        isa: the kernel set this model runs, one of `gpt2cpu.available_isas()` (default:
            GPT2CPU_ISA, else the best this CPU has). Fixed for the model's life; models
            with different sets can run side by side.
        kv_dtype: what every sequence's KV cache holds the keys and values as: "float32"
            (the default) or "bfloat16", half the memory and half the bytes a decode step's
            attention reads, at a small cost in accuracy (docs/precisions.md, "The KV
            cache"). Queries and all arithmetic stay float32.
        """
        from .loading.bundled import default_model_dir

        directory = default_model_dir() if path is None else Path(path)
        if not directory.is_dir():
            if directory.exists():
                raise NotADirectoryError(f"{directory}: not a directory; give the model's "
                                         "directory (config.json's folder)")
            raise FileNotFoundError(f"{directory}: model directory not found")
        n_threads = default_threads() if threads is None else check_threads(threads)
        weight_dtype = check_dtype(dtype)
        cache_dtype = check_kv_dtype(kv_dtype)
        isa = check_isa(isa)
        config = GPT2Config.from_file(directory / "config.json")
        defaults = _generation_defaults(directory, config)
        with open_checkpoint(directory) as checkpoint:
            config = untie_distinct_head(config, checkpoint)
            located = locate_tensors(config, checkpoint)
            core = _core.Model(core_config(config), n_threads, weight_dtype, isa, cache_dtype)
            # The engine reads the weights with the GIL released while this thread reads
            # the tokenizer and imports what generation needs, which is Python's work:
            # neither waits for the other. The pool's exit waits for the weights before the
            # files close, whatever is raised.
            with ThreadPoolExecutor(1, thread_name_prefix="gpt2cpu-load") as pool:
                weights = pool.submit(load_into, core, located, progress=progress)
                try:
                    tok = _load_tokenizer(directory) if tokenizer else None
                    _import_generation()
                finally:
                    weights.result()  # a checkpoint's error comes first, as it always did
            head = load_head(directory, checkpoint.files, config.n_embd)
        model = cls._create(
            core, config, tok, directory, defaults, tokenizer_skipped=not tokenizer,
        )
        model.head = head
        return model

    def require_tokenizer(self, need: str) -> Tokenizer:
        """The tokenizer, or ValueError saying why there is none and `need`."""
        if self.tokenizer is not None:
            return self.tokenizer
        why = (
            "this model was loaded with tokenizer=False (no tokenizer)"
            if self._tokenizer_skipped
            else "this model has no tokenizer files"
        )
        raise ValueError(f"{why}; {need}")

    def eos_token_ids(self) -> frozenset[int]:
        """The tokens that end a generation: generation_config.json's, else config.json's,
        else the tokenizer's end-of-text token."""
        listed = self.generation_defaults.eos_token_ids or self.config.eos_token_ids
        if listed:
            return frozenset(listed)
        tokenizer_eos = self.tokenizer.eos_token_id if self.tokenizer else None
        return frozenset() if tokenizer_eos is None else frozenset((tokenizer_eos,))

    @property
    def threads(self) -> int:
        return int(self._core.threads)

    @threads.setter
    def threads(self, value: int) -> None:
        self._core.threads = check_threads(value)

    @property
    def isa(self) -> str:
        """The kernel set this model runs ("generic", "avx2", "avx512", "neon")."""
        return str(self._core.isa)

    def kernel_info(self) -> dict[str, Any]:
        """The kernel set this model runs: "isa" (its name), "features" (the CPU features
        its code uses), "gemm_rows" (its GEMM register tile's rows) and "cpu" (each feature
        the sets depend on, and whether this CPU and OS have it)."""
        info = dict(self._core.kernel_info())
        info["cpu"] = _core.cpu_features()
        return info

    @property
    def weight_bytes(self) -> int:
        """Bytes the stored weights occupy (scales included): what a decode step reads."""
        return int(self._core.weight_bytes)

    @property
    def dtype(self) -> str:
        """What the weight matrices are stored as: one of gpt2cpu.DTYPES."""
        return str(self._core.dtype)

    @property
    def kv_dtype(self) -> str:
        """What every sequence's KV cache holds keys and values as: one of
        gpt2cpu.KV_DTYPES."""
        return str(self._core.kv_dtype)

    @property
    def kv_bytes_per_position(self) -> int:
        """Bytes a sequence's KV cache takes per position (keys and values of every layer,
        in kv_dtype)."""
        return int(self._core.kv_bytes_per_position)

    def new_sequence(self, capacity: Int | None = None, *, reserve: bool = False) -> Sequence:
        """A fresh sequence with a KV cache for `capacity` tokens (default: n_positions).
        reserve=True: the cache's room for all of them now, as `Sequence.reserve` takes it,
        where the sequence will hold about that many (generate, the server and bench do)."""
        return Sequence(self, capacity, reserve=reserve)

    @overload
    def forward(self, ids: IdsLike) -> np.ndarray[Any, Any]: ...
    @overload
    def forward(self, ids: IdsLike, *, hidden_states: Literal[False]) -> np.ndarray[Any, Any]: ...
    @overload
    def forward(self, ids: IdsLike, *, hidden_states: Literal[True]) -> ForwardOutput: ...

    def forward(
        self, ids: IdsLike, *, hidden_states: bool = False
    ) -> np.ndarray[Any, Any] | ForwardOutput:
        """Logits for every position of ids: float32 (len(ids), vocab_size). Stateless.

        hidden_states=True: a ForwardOutput with the logits and every hidden state, (n_layer
        + 1, len(ids), n_embd), as transformers' output_hidden_states gives them (the
        embeddings first, the final layer norm's output last).
        """
        if not isinstance(hidden_states, bool):
            raise ValueError(f"hidden_states must be True or False, got {hidden_states!r}")
        arr = as_ids(ids, self.config.vocab_size)
        if not 1 <= arr.size <= self.config.n_positions:
            raise ValueError(
                f"ids must hold 1 to {self.config.n_positions} tokens (the model's n_positions), "
                f"got {arr.size}"
            )
        if hidden_states:
            from .tasks.embedding import forward_hidden

            return forward_hidden(self, arr)
        return self.new_sequence(arr.size).append(arr, all_logits=True)

    def step(
        self,
        sequences: Seq[Sequence],
        ids: Seq[IdsLike],
        *,
        last_n: int | Seq[int] = 1,
    ) -> list[np.ndarray[Any, Any]]:
        """Run ids[i] at the next positions of sequences[i], all in one forward pass whose
        matrix products read the weights once for all of them, and return each sequence's
        logits of its last last_n[i] new positions, (last_n[i], vocab_size). A sequence
        gets the same bits whatever shares its step. Every input is checked first; a bad
        one raises ValueError naming it, and then no sequence has changed."""
        from .engine import step

        for i, seq in enumerate(sequences):
            if not isinstance(seq, Sequence) or seq.model is not self:
                raise ValueError(f"sequences[{i}] must be a Sequence of this model")
        return step(sequences, ids, last_n=last_n).outputs

    def score(
        self, texts: Seq[str | IdsLike], *, prepend_bos: bool = False
    ) -> list[ScoreResult]:
        """The log-probability of every token of each text given the tokens before it, in
        batched steps: a list of ScoreResult (per-token logprobs, their total, and whether
        each token is the greedy choice, as lm-eval's log-likelihood needs).

        texts: strings (encoded with the tokenizer) or token id lists; a text holds at most
        n_positions + 1 tokens. The first token has no log-probability unless prepend_bos,
        which scores every token after the BOS token (config's bos_token_id, else
        eos_token_id). A bad element raises ValueError naming it before anything runs.
        """
        from .tasks.scoring import score

        return score(self, texts, prepend_bos=prepend_bos)

    def embed(
        self,
        texts: Seq[str | IdsLike],
        *,
        pooling: Pooling = "mean",
        layer: int = -1,
        normalize: bool = False,
    ) -> np.ndarray[Any, Any] | list[np.ndarray[Any, Any]]:
        """Hidden-state features of each text, in batched steps.

        layer: which hidden state, numbered as transformers' output_hidden_states (0: the
            embeddings; -1, the default: the final layer norm's output).
        pooling: "mean" over the tokens or the "last" token's, as an array (len(texts),
            n_embd); "none": a list of (tokens, n_embd) arrays.
        normalize: scale each vector to unit L2 norm.
        """
        from .tasks.embedding import embed

        return embed(self, texts, pooling=pooling, layer=layer, normalize=normalize)

    # One prompt and one sample: one result; a list of prompts: a list (n > 1 too); one
    # prompt with an n not known to be 1: either.
    @overload
    def generate(  # type: ignore[overload-overlap]  # a str is also a Seq[str]
        self, prompt: str | IdsLike, *, n: Literal[1] = 1, **options: Unpack[OneSampleOptions]
    ) -> GenerationResult: ...

    @overload
    def generate(  # type: ignore[overload-overlap]  # the same
        self, prompt: str | IdsLike, **options: Unpack[Options]
    ) -> GenerationResult | list[GenerationResult]: ...

    @overload
    def generate(
        self, prompt: Seq[str | IdsLike], **options: Unpack[Options]
    ) -> list[GenerationResult]: ...

    @generation_method(signature)
    def generate(
        self, prompt: str | IdsLike | Seq[str | IdsLike], **options: Any
    ) -> GenerationResult | list[GenerationResult]:
        """Continue prompt (text, or token ids) and return the new text and ids.

        temperature 0 is greedy; top_k, top_p, min_p and repetition_penalty follow Hugging
        Face, presence_penalty and frequency_penalty OpenAI; logit_bias adds to token logits;
        generation ends at max_new_tokens (None: the end of the context), a stop string
        (excluded from the text) or the EOS token unless ignore_eos. The same seed gives the
        same output. Bad options raise ValueError (TypeError for an unknown one) before
        anything runs.

        Example:
            model = gpt2cpu.Model.from_pretrained()
            result = model.generate("ROMEO:", max_new_tokens=40, temperature=0.8, seed=1)
            print(result.text, result.finish_reason)

        Returns a GenerationResult; a list of them for a list of prompts or n > 1.
        """
        from .generation.batch import batch_stream, pop_batch_options, wants_batch
        from .generation.loop import generate, resolve

        if wants_batch(prompt, options):
            run = batch_stream(self, prompt, options, text=False)
            for _ in run:
                pass
            assert run.results is not None
            return run.results if run.listed else run.results[0]
        pop_batch_options(options)
        sequence = options.pop("sequence", None)
        return generate(self, cast("str | IdsLike", prompt), resolve(self, options), sequence)

    # As generate's, by batch.wants_batch: one prompt with options that cannot batch it (n
    # 1, logprobs None, one seed): a GenerationStream; a list of prompts: a BatchStream; one
    # prompt with other options: either.
    @overload
    def stream(  # type: ignore[overload-overlap]  # a str is also a Seq[str]
        self, prompt: str | IdsLike, **options: Unpack[UnbatchedOptions]
    ) -> GenerationStream: ...

    @overload
    def stream(  # type: ignore[overload-overlap]  # the same
        self, prompt: str | IdsLike, **options: Unpack[Options]
    ) -> GenerationStream | BatchStream: ...

    @overload
    def stream(
        self, prompt: Seq[str | IdsLike], **options: Unpack[Options]
    ) -> BatchStream: ...

    @generation_method(signature)
    def stream(
        self, prompt: str | IdsLike | Seq[str | IdsLike], **options: Any
    ) -> GenerationStream | BatchStream:
        """Like `generate`, with the same options, but yields the new text in pieces as it
        is produced; a stop string never appears, even in part. Bad options raise here,
        before anything runs. Needs the model's tokenizer.

        Example:
            for piece in (pieces := model.stream("ROMEO:", max_new_tokens=40, seed=1)):
                print(piece, end="", flush=True)
            print(pieces.result.finish_reason)

        Returns a GenerationStream: an iterator of str pieces whose `result` holds the
        GenerationResult once it is exhausted (the pieces joined are its text). For a list
        of prompts, n > 1 or logprobs: a BatchStream, an iterator of (index, piece) whose
        `results` hold the GenerationResults once it is exhausted.
        """
        from .generation.batch import batch_stream, pop_batch_options, wants_batch
        from .generation.loop import resolve, stream

        if wants_batch(prompt, options):
            return batch_stream(self, prompt, options, text=True)

        pop_batch_options(options)
        sequence = options.pop("sequence", None)
        return stream(self, cast("str | IdsLike", prompt), resolve(self, options), sequence)

    def classify(self, texts: Seq[str | IdsLike]) -> list[Classification]:
        """Each text's label and class probabilities from a GPT2ForSequenceClassification
        checkpoint's head, pooled at the text's last token that is not pad_token_id (as
        transformers pools). Batched; a bad element raises ValueError naming it."""
        from .tasks.heads import classify

        return classify(self, texts)

    def classify_tokens(self, texts: Seq[str | IdsLike]) -> list[TokenClassification]:
        """Each token's label and probabilities from a GPT2ForTokenClassification head."""
        from .tasks.heads import classify_tokens

        return classify_tokens(self, texts)

    def choose(
        self, choices: Seq[str | IdsLike], *, cls_index: Seq[int] | None = None
    ) -> Choice:
        """The most likely of one question's choices (each the full text: question and
        answer) under a GPT2DoubleHeadsModel's multiple-choice head, read at each choice's
        cls_index token (default: its last, transformers' mc_token_ids)."""
        from .tasks.heads import choose

        return choose(self, choices, cls_index)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"Model({str(self.path)!r}, n_layer={c.n_layer}, n_embd={c.n_embd}, "
            f"n_head={c.n_head}, vocab_size={c.vocab_size}, dtype={self.dtype!r}, "
            f"kv_dtype={self.kv_dtype!r}, threads={self.threads})"
        )


# Every file Tokenizer.from_pretrained reads a vocabulary from.
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "encoder.json", "vocab.bpe")


def _generation_defaults(directory: Path, config: GPT2Config) -> GenerationDefaults:
    from .generation.loop import GenerationConfig

    path = directory / "generation_config.json"
    defaults = GenerationDefaults.from_file(path, config.vocab_size)
    try:  # checked now: a bad value in the file is the file's fault, not a caller's
        GenerationConfig(**defaults.options)
    except ValueError as exc:
        raise ModelFormatError(f"{path}: {exc}") from None
    return defaults


def _import_generation() -> None:
    """Imports what a first generate would, so that it is no slower than the next: a
    load is everything before the first token."""
    import numpy.random  # noqa: F401  # numpy imports it on first use of np.random

    from .generation import batch, loop  # noqa: F401


def _load_tokenizer(directory: Path) -> Tokenizer | None:
    from .tokenizer.tokenizer import Tokenizer

    try:
        return Tokenizer.from_pretrained(directory)
    except FileNotFoundError:
        # No tokenizer at all is fine (ids in, logits out); half of one is a broken model.
        if any((directory / name).exists() for name in _TOKENIZER_FILES):
            raise
        return None
