"""The public home of gpt2cpu's Ray Data class, `gpt2cpu.ray.Gpt2cpuPredictor` (the name
the dataset-jobs issue promised users); it lives with the other job code in jobs/ray.py."""

from .jobs.ray import Gpt2cpuPredictor

__all__ = ["Gpt2cpuPredictor"]
