"""GPT-2 hyper-parameters read from a Hugging Face `config.json`."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..files import read_regular

# The keys config.json may give each size under, in the order they win. transformers maps
# the generic names onto GPT-2's own and sets them after them, so a config.json holding
# both (with different values) gets the generic one's value; n_ctx, GPT-2's old name, last.
_KEYS = {
    "n_layer": ("num_hidden_layers", "n_layer"),
    "n_head": ("num_attention_heads", "n_head"),
    "n_embd": ("hidden_size", "n_embd"),
    "n_positions": ("max_position_embeddings", "n_positions", "n_ctx"),
}

# transformers' names for the activations this engine implements.
ACTIVATIONS = {
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "gelu_python_tanh": "gelu_tanh",
    "gelu_accurate": "gelu_tanh",  # the same tanh formula, with the constant precomputed
    "gelu": "gelu_erf",
    "gelu_python": "gelu_erf",
    "relu": "relu",
}

# Beyond any GPT-2-family model; rejects configs that would allocate absurd amounts.
_MAX_DIM = 1 << 20
_MAX_VOCAB = 1 << 24
_MAX_LAYERS = 4096
# The most float32 values the weights, or one full-context KV cache, may hold (256 GiB):
# five times the largest GPT-2-architecture checkpoints, as the C++ Config::validate says.
MAX_FLOATS = 1 << 36
# Real config.json files are a few kilobytes; this bounds what a wrong file makes us read.
_MAX_CONFIG_BYTES = 16 << 20


def read_json(path: Path) -> Any:
    """A small JSON file's value; ConfigError naming the file for anything else (a FIFO, a
    directory or a device in its place is "not a regular file", never read)."""
    try:
        raw = read_regular(path, ConfigError, _MAX_CONFIG_BYTES, f"a {path.name}")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # json's messages end in "at" ("Unterminated string starting at"), hence the colon.
        raise ConfigError(
            f"{path}: not valid JSON ({exc.msg}: line {exc.lineno} column {exc.colno})"
        ) from None
    except (ValueError, RecursionError) as exc:  # integers too long; nesting too deep
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None


# generation_config.json's sampling fields that are also generate()'s options.
_GENERATION_OPTIONS = ("max_new_tokens", "temperature", "top_k", "top_p", "min_p",
                       "repetition_penalty")


def token_ids(data: dict[str, Any], name: str, where: object,
              vocab_size: int) -> tuple[int, ...]:
    """Field `name` of a config file `where`: a token id or a list of them (transformers
    takes both), those in the vocabulary; () for none. transformers saves its default 50256
    even for a small vocabulary and runs such a model without that token; so do we, and
    warn."""
    value = data.get(name)
    if value is None:
        return ()
    values = value if isinstance(value, list) else [value]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"{where}: field {name!r} must hold token ids, got {value!r}")
    kept = [v for v in values if 0 <= v < vocab_size]
    if len(kept) < len(values):
        warnings.warn(
            f"{where}: field {name!r} = {value!r} is outside the vocabulary "
            f"[0, {vocab_size}); the model is used without that token",
            stacklevel=3,
        )
    return tuple(kept)


@dataclass(frozen=True)
class GenerationDefaults:
    """What a model directory's generation_config.json says, where it says it.

    options: generate()'s options named in the file (its do_sample=false as temperature
    0); Hugging Face's implicit values for the rest (do_sample=False, top_k=50) are not
    taken. The token ids override config.json's for generation; pad_token_id is kept for
    callers that pad.
    """

    options: dict[str, Any] = field(default_factory=dict)
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] | None = None
    pad_token_id: int | None = None

    @classmethod
    def from_file(cls, path: Path, vocab_size: int) -> GenerationDefaults:
        """The file's defaults; none when the file does not exist."""
        if not path.exists():
            return cls()
        data = read_json(path)
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")

        options = {name: data[name] for name in _GENERATION_OPTIONS if data.get(name) is not None}
        do_sample = data.get("do_sample")
        if do_sample is not None and not isinstance(do_sample, bool):
            raise ConfigError(f"{path}: field 'do_sample' must be true or false, got "
                              f"{do_sample!r}")
        if do_sample is False:
            options["temperature"] = 0.0  # greedy, however the file's temperature reads
        bos = token_ids(data, "bos_token_id", path, vocab_size)
        pad = token_ids(data, "pad_token_id", path, vocab_size)
        return cls(
            options=options,
            bos_token_id=bos[0] if bos else None,
            eos_token_ids=token_ids(data, "eos_token_id", path, vocab_size) or None,
            pad_token_id=pad[0] if pad else None,
        )


@dataclass(frozen=True)
class GPT2Config:
    n_layer: int
    n_head: int
    n_embd: int
    n_positions: int
    vocab_size: int
    n_inner: int | None = None
    layer_norm_epsilon: float = 1e-5
    activation_function: str = "gelu_new"
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False
    tie_word_embeddings: bool = True
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    # Every id config.json lists as ending a generation (eos_token_id is the first).
    eos_token_ids: tuple[int, ...] = ()

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def mlp_width(self) -> int:
        return self.n_inner or 4 * self.n_embd

    def kv_cache_floats(self, tokens: int | None = None) -> int:
        """Floats in one sequence's KV cache holding `tokens` (default: n_positions)."""
        return 2 * self.n_layer * self.n_embd * (self.n_positions if tokens is None else tokens)

    def parameter_count(self) -> int:
        c, f, v, p = self.n_embd, self.mlp_width, self.vocab_size, self.n_positions
        per_layer = 4 * c + (3 * c * c + 3 * c) + (c * c + c) + (c * f + f) + (f * c + c)
        head = 0 if self.tie_word_embeddings else v * c
        return v * c + p * c + self.n_layer * per_layer + 2 * c + head

    @classmethod
    def from_file(cls, path: str | Path) -> GPT2Config:
        path = Path(path)
        return cls.from_dict(read_json(path), source=str(path))

    @classmethod
    def from_dict(cls, data: Any, source: str = "config") -> GPT2Config:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
        model_type = data.get("model_type", "gpt2")
        if model_type != "gpt2":
            raise ConfigError(f"{source}: model_type is {model_type!r}; only 'gpt2' is supported")

        def size(name: str, limit: int) -> int:
            key = next((k for k in _KEYS.get(name, (name,)) if k in data), None)
            if key is None:
                raise ConfigError(f"{source}: missing field {name!r}")
            value = data[key]
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"{source}: field {key!r} must be an integer, got {value!r}")
            if not 1 <= value <= limit:
                raise ConfigError(f"{source}: field {key!r} must be in [1, {limit}], got {value}")
            return value

        def flag(name: str, default: bool) -> bool:
            value = data.get(name, default)
            if not isinstance(value, bool):
                raise ConfigError(f"{source}: field {name!r} must be true or false, got {value!r}")
            return value

        n_embd = size("n_embd", _MAX_DIM)
        n_head = size("n_head", _MAX_DIM)
        if n_embd % n_head:
            raise ConfigError(
                f"{source}: n_embd ({n_embd}) must be divisible by n_head ({n_head})"
            )
        n_inner = data.get("n_inner")
        if n_inner is not None and (
            not isinstance(n_inner, int) or isinstance(n_inner, bool)
            or not 1 <= n_inner <= 4 * _MAX_DIM
        ):
            raise ConfigError(
                f"{source}: field 'n_inner' must be a positive integer, got {n_inner!r}"
            )
        eps = data.get("layer_norm_epsilon", 1e-5)
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not 0 < eps < 1:
            raise ConfigError(
                f"{source}: field 'layer_norm_epsilon' must be in (0, 1), got {eps!r}"
            )
        activation = data.get("activation_function", "gelu_new")
        if not isinstance(activation, str) or activation not in ACTIVATIONS:
            raise ConfigError(
                f"{source}: activation_function {activation!r} is not supported "
                f"(supported: {', '.join(sorted(ACTIVATIONS))})"
            )
        vocab_size = size("vocab_size", _MAX_VOCAB)
        bos = token_ids(data, "bos_token_id", source, vocab_size)
        eos = token_ids(data, "eos_token_id", source, vocab_size)
        config = cls(
            n_layer=size("n_layer", _MAX_LAYERS),
            n_head=n_head,
            n_embd=n_embd,
            n_positions=size("n_positions", _MAX_DIM),
            vocab_size=vocab_size,
            n_inner=n_inner,
            layer_norm_epsilon=float(eps),
            activation_function=activation,
            scale_attn_weights=flag("scale_attn_weights", True),
            scale_attn_by_inverse_layer_idx=flag("scale_attn_by_inverse_layer_idx", False),
            tie_word_embeddings=flag("tie_word_embeddings", True),
            bos_token_id=bos[0] if bos else None,
            eos_token_id=eos[0] if eos else None,
            eos_token_ids=eos,
        )
        # Each size is bounded alone; together they may still describe terabytes.
        weights = config.parameter_count()
        if weights > MAX_FLOATS:
            raise ConfigError(
                f"{source}: n_layer={config.n_layer}, n_embd={config.n_embd}, "
                f"vocab_size={config.vocab_size} describe {weights:,} parameters "
                f"({weights * 4 / 2**30:,.0f} GiB as float32), beyond the "
                f"{MAX_FLOATS * 4 >> 30} GiB this engine accepts"
            )
        cache = config.kv_cache_floats()
        if cache > MAX_FLOATS:
            raise ConfigError(
                f"{source}: n_layer={config.n_layer}, n_embd={config.n_embd}, "
                f"n_positions={config.n_positions} need a {cache * 4 / 2**30:,.0f} GiB KV cache "
                f"per sequence, beyond the {MAX_FLOATS * 4 >> 30} GiB this engine accepts"
            )
        return config
