"""GPT-2 in numpy, the plain reference for kernels and small models (after picoGPT)."""

from __future__ import annotations

import numpy as np


def gelu(x: np.ndarray) -> np.ndarray:
    y: np.ndarray = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    return y


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    y: np.ndarray = e / e.sum(axis=-1, keepdims=True)
    return y


def layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    y: np.ndarray = g * (x - mean) / np.sqrt(var + eps) + b
    return y


def bfloat16_rounded(x: np.ndarray) -> np.ndarray:
    """float32 x rounded to bfloat16 (to nearest, ties to even), as float32."""
    bits = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16
    out: np.ndarray = rounded.astype(np.uint32).view(np.float32).reshape(np.shape(x))
    return out


def causal_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, pos0: int,
                     scale: float) -> np.ndarray:
    """q (t, d) at positions [pos0, pos0 + t); k, v (n, d) hold positions [0, n)."""
    t, n = q.shape[0], k.shape[0]
    visible = np.arange(n)[None, :] <= (pos0 + np.arange(t))[:, None]
    scores = np.where(visible, q @ k.T * scale, -np.inf)
    y: np.ndarray = softmax(scores) @ v
    return y


def gpt2_forward(ids: np.ndarray, params: dict[str, np.ndarray], n_head: int,
                 eps: float = 1e-5) -> np.ndarray:
    """Logits (len(ids), vocab) from a state dict with Hugging Face names (no prefix)."""
    x = params["wte.weight"][ids] + params["wpe.weight"][: len(ids)]
    n_layer = 1 + max(int(k.split(".")[1]) for k in params if k.startswith("h."))
    for i in range(n_layer):
        p = {k[len(f"h.{i}."):]: v for k, v in params.items() if k.startswith(f"h.{i}.")}
        h = layer_norm(x, p["ln_1.weight"], p["ln_1.bias"], eps)
        q, k, v = np.split(h @ p["attn.c_attn.weight"] + p["attn.c_attn.bias"], 3, axis=-1)
        d = q.shape[1] // n_head
        heads = [
            causal_attention(q[:, j * d:(j + 1) * d], k[:, j * d:(j + 1) * d],
                             v[:, j * d:(j + 1) * d], 0, 1 / np.sqrt(d))
            for j in range(n_head)
        ]
        x = x + np.hstack(heads) @ p["attn.c_proj.weight"] + p["attn.c_proj.bias"]
        h = layer_norm(x, p["ln_2.weight"], p["ln_2.bias"], eps)
        x = x + gelu(h @ p["mlp.c_fc.weight"] + p["mlp.c_fc.bias"]) @ p["mlp.c_proj.weight"] \
            + p["mlp.c_proj.bias"]
    x = layer_norm(x, params["ln_f.weight"], params["ln_f.bias"], eps)
    logits: np.ndarray = x @ params["wte.weight"].T
    return logits
