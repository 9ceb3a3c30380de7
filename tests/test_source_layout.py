"""Rules of the C++ sources that no compiler checks."""

from __future__ import annotations

import re
from pathlib import Path

CSRC = Path(__file__).resolve().parent.parent / "csrc"

# Intrinsics, their types and headers: only the vector layers may use them (and tile
# kernels, which have no vector-layer form). Kernels are written once over the layers.
INTRINSICS = re.compile(
    r"_mm\w*\(|__m(128|256|512)\w*|\bvld1q|\bvst1q|<immintrin\.h>|<arm_neon\.h>"
)
ALLOWED = {CSRC / "src" / "simd"}


def test_intrinsics_live_only_in_the_vector_layers() -> None:
    offenders = []
    for path in sorted(CSRC.rglob("*")):
        if path.suffix not in {".h", ".cpp", ".inc", ".cc", ".hpp"}:
            continue
        if any(folder in path.parents for folder in ALLOWED) or "amx" in path.name:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if INTRINSICS.search(line):
                offenders.append(f"{path.relative_to(CSRC)}:{n}: {line.strip()}")
    assert not offenders, "intrinsics outside csrc/src/simd/:\n" + "\n".join(offenders)


def test_the_rule_would_catch_them() -> None:
    for line in ("__m256 x = _mm256_setzero_ps();", "#include <immintrin.h>", "vld1q_f32(p)"):
        assert INTRINSICS.search(line)
