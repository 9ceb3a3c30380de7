"""Type stubs for the C++ extension (csrc/bindings)."""

from typing import Any

import numpy as np

class Activation:
    gelu_tanh: Activation
    gelu_erf: Activation
    relu: Activation

class Config:
    n_layer: int
    n_head: int
    n_embd: int
    n_positions: int
    vocab_size: int
    n_inner: int
    layer_norm_epsilon: float
    activation: Activation
    scale_attn_weights: bool
    scale_attn_by_inverse_layer_idx: bool
    tie_word_embeddings: bool
    def __init__(self) -> None: ...
    def validate(self) -> None: ...

def tensor_specs(config: Config) -> list[tuple[str, tuple[int, ...]]]: ...

DTYPES: tuple[str, ...]

class Model:
    threads: int
    def __init__(self, config: Config, threads: int, dtype: str = "float32") -> None: ...
    def load_tensor(self, name: str, array: np.ndarray[Any, Any]) -> None: ...
    def finalize(self) -> None: ...
    @property
    def ready(self) -> bool: ...
    @property
    def weight_bytes(self) -> int: ...
    @property
    def dtype(self) -> str: ...
    @property
    def config(self) -> Config: ...

class Sequence:
    def __init__(self, model: Model, capacity: int) -> None: ...
    def append(self, ids: np.ndarray[Any, Any], n_logits: int = 1) -> np.ndarray[Any, Any]: ...
    def truncate(self, length: int) -> None: ...
    def fork(self) -> Sequence: ...
    @property
    def length(self) -> int: ...
    @property
    def capacity(self) -> int: ...
    @property
    def allocated(self) -> int: ...

def step(
    model: Model,
    sequences: list[Sequence],
    ids: list[np.ndarray[Any, Any]],
    n_out: list[int],
    output: str = "logits",
    layer: int = 0,
    hidden_states: bool = False,
) -> Any: ...

class PackedWeight:
    def __init__(
        self, weight: np.ndarray[Any, Any], dtype: str = "float32", threads: int = 1
    ) -> None: ...
    @property
    def shape(self) -> tuple[int, int]: ...
    @property
    def dtype(self) -> str: ...
    @property
    def nbytes(self) -> int: ...
    def dequantized(self) -> np.ndarray[Any, Any]: ...
    def matmul(
        self,
        inp: np.ndarray[Any, Any],
        bias: np.ndarray[Any, Any] | None = None,
        out: np.ndarray[Any, Any] | None = None,
        threads: int = 1,
        activation: Activation | None = None,
        team: bool = False,
    ) -> np.ndarray[Any, Any]: ...

class _Kernels:
    PackedWeight: type[PackedWeight]
    def sum(self, x: np.ndarray[Any, Any], streams: int = 1) -> float: ...
    def read_bandwidth(self, bytes: int, threads: int, repeats: int = 5) -> float: ...
    def multiply_add(self, rounds: int, x: float) -> float: ...
    def multiply_add_peak(
        self, threads: int, rounds: int = 10_000_000, repeats: int = 3
    ) -> float: ...
    def isa(self) -> str: ...
    def available_isas(self) -> list[str]: ...
    def set_isa(self, name: str) -> None: ...
    def matmul(
        self,
        inp: np.ndarray[Any, Any],
        weight: np.ndarray[Any, Any],
        bias: np.ndarray[Any, Any] | None = None,
        out: np.ndarray[Any, Any] | None = None,
        threads: int = 1,
        activation: Activation | None = None,
        team: bool = False,
    ) -> np.ndarray[Any, Any]: ...
    def layernorm(
        self,
        x: np.ndarray[Any, Any],
        weight: np.ndarray[Any, Any],
        bias: np.ndarray[Any, Any],
        eps: float = 1e-5,
        threads: int = 1,
        team: bool = False,
    ) -> np.ndarray[Any, Any]: ...
    def activation(
        self, x: np.ndarray[Any, Any], kind: Activation = ..., threads: int = 1, team: bool = False
    ) -> np.ndarray[Any, Any]: ...
    def attention(
        self,
        q: np.ndarray[Any, Any],
        k: np.ndarray[Any, Any],
        v: np.ndarray[Any, Any],
        pos0: int,
        scale: float,
        threads: int = 1,
        team: bool = False,
    ) -> np.ndarray[Any, Any]: ...
    TEAM_ROWS: int
    MULTIPLY_ADD_LANES: int
    def check_team(self, threads: int, rounds: int, delay_us: int = 0) -> int: ...

kernels: _Kernels

class _Sampling:
    def repetition_penalty(
        self, x: np.ndarray[Any, Any], ids: np.ndarray[Any, Any], penalty: float
    ) -> np.ndarray[Any, Any]: ...
    def softmax_weights(self, x: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], float]: ...
    def top_p_floor(self, w: np.ndarray[Any, Any], budget: float) -> float: ...
    def kth_largest(self, x: np.ndarray[Any, Any], k: int) -> float: ...
    def draw(self, w: np.ndarray[Any, Any], floor: float, u: float) -> int: ...

sampling: _Sampling
