"""Sequences held by one thread for the length of one call (Held)."""

from __future__ import annotations

from collections.abc import Sequence as Seq
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .. import _core
    from ..model import Sequence


class Held:
    """`with Held(sequences) as cores`: the sequences' open C++ sequences, held by this
    thread for one call. The C++ core refuses a second thread's call while one runs, but
    `tokens` changes after it returns: held here, the cache and `tokens` change together,
    and a call from another thread in between raises instead of leaving them disagreeing.
    A closed sequence raises ValueError, a held one RuntimeError, one given twice ValueError
    (each naming its index in sequences where named): the step's one check of these, and
    nothing stays held. A class
    rather than a context manager per sequence: a 16-sequence decode step spent ~30 us
    entering and leaving those."""

    def __init__(self, sequences: Seq[Sequence], *, named: bool = True) -> None:
        # A copy: the caller's list may change on another thread while the step runs
        # without the GIL, and the locks released must be the ones taken.
        self._sequences = tuple(sequences)
        self._named = named
        self._taken = 0

    def __enter__(self) -> list[_core.Sequence]:
        cores = []
        try:
            for i, seq in enumerate(self._sequences):
                try:
                    core = seq._open_core()
                except ValueError:
                    if self._named:
                        raise ValueError(f"sequences[{i}] is closed") from None
                    raise
                if not seq._busy.acquire(blocking=False):
                    if any(seq is other for other in self._sequences[:i]):  # held just now
                        raise ValueError(f"sequences[{i}] appears twice; a sequence takes one "
                                         "step at a time")
                    raise RuntimeError(
                        f"{self._where(i)}this sequence is in use by another thread"
                    )
                self._taken += 1
                cores.append(core)
        except BaseException:
            self._release()
            raise
        return cores

    def __exit__(self, *exc: object) -> None:
        self._release()

    def _where(self, i: int) -> str:
        return f"sequences[{i}]: " if self._named else ""

    def _release(self) -> None:
        for seq in self._sequences[: self._taken]:
            seq._busy.release()
        self._taken = 0
