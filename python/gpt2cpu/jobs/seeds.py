"""The seed of each row of a job: one derivation, shared by every place that needs a
reproducible per-item seed (dataset jobs, the server, the batched API's per-prompt seeds)."""

from __future__ import annotations

import hashlib
import json
import numbers

# Bumping this changes every derived seed: it exists so that a future change of the
# derivation is a visible, deliberate break rather than a silent one.
_DOMAIN = b"gpt2cpu.row_seed.v1"


def canonical_id(row_id: object) -> str:
    """The text a row id is hashed as. An integer and its decimal string are one id (a CSV
    file has no types, so `7` in JSONL and `"7"` in CSV must seed alike); anything else
    hashes as its canonical JSON."""
    if isinstance(row_id, str):
        return row_id
    if isinstance(row_id, numbers.Integral) and not isinstance(row_id, bool):
        return str(int(row_id))
    return json.dumps(row_id, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def row_seed(base: int, row_id: object) -> int:
    """The sampling seed of the row `row_id` in a job whose seed is `base`.

    seed = the first 8 bytes, big-endian, of SHA-256("gpt2cpu.row_seed.v1" NUL base NUL id),
    with the top bit cleared (a non-negative int64), where base is written in decimal and id
    as `canonical_id` gives it (an integer and its decimal string are the same id).

    It depends on nothing else: not on the batch, the worker, the machine or the row's
    position, so a row's output is the same however a job is split or resumed. Distinct ids
    get unrelated seeds (no `base + id` arithmetic, under which job 1's row 0 would be job
    0's row 1).

    >>> row_seed(0, 7) == row_seed(0, "7")
    True
    """
    if isinstance(base, bool) or not isinstance(base, numbers.Integral) or base < 0:
        raise ValueError(f"base must be a non-negative integer, got {base!r}")
    message = b"\0".join((_DOMAIN, str(int(base)).encode(), canonical_id(row_id).encode()))
    digest = hashlib.sha256(message).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)
