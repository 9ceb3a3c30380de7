"""Random-weight Hugging Face GPT-2 models of real shapes, saved as model directories."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

SMALL = dict(n_layer=2, n_embd=72, n_head=6, vocab_size=1001, n_positions=64)
GPT2_124M = dict(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024)

# The hf_model_dir fixture (conftest.py): make(**shape) -> (directory, torch model).
HfModelDir = Callable[..., tuple[Path, Any]]


def make_hf_model(directory: Path, *, seed: int = 0, hub_layout: bool = False,
                  dtype: str = "float32", **config: Any) -> Any:
    """Build a GPT2LMHeadModel with seeded random weights and save it to directory.

    hub_layout=True re-saves the tensors without the "transformer." prefix, as the original
    gpt2 checkpoints on the hub are stored. Returns the model (float32, eval mode).
    """
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    vocab = config.get("vocab_size", 50257)
    cfg = GPT2Config(bos_token_id=vocab - 1, eos_token_id=vocab - 1, **config)
    model = perturb_biases(GPT2LMHeadModel(cfg).eval())
    model = model.to(getattr(torch, dtype))
    model.save_pretrained(directory, safe_serialization=True)
    if hub_layout:
        path = Path(directory) / "model.safetensors"
        tensors = load_file(path)
        save_file({k.removeprefix("transformer."): v for k, v in tensors.items()}, path,
                  metadata={"format": "pt"})
    return model.float()


def perturb_biases(model: Any) -> Any:
    """Add noise from torch's global generator (the caller seeds it) to every bias and
    layer-norm parameter of a transformers model, in place; returns the model.

    HF's init leaves them at 0/1, where a swapped or ignored bias would go unnoticed.
    """
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model


def hf_logits(model: Any, ids: Sequence[int] | np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """A transformers model's float32 logits (len(ids), vocab) for one sequence of ids."""
    import torch

    with torch.no_grad():
        out = model(torch.as_tensor(np.asarray(ids, dtype=np.int64))[None]).logits[0]
    logits: np.ndarray[Any, Any] = out.float().numpy()
    return logits
