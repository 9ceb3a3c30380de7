"""Rules of the sources that no compiler or linter checks: where intrinsics may live in
the C++, and how the Python package's folders may import each other."""

from __future__ import annotations

import ast
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


# The 256-bit code the avx2 and avx512 layers share is part of those two layers: a kernel
# set reaches it only through them, and the neon and generic layers (built where AVX may
# not exist) never include it.
X86_SHARED = "vec_x86_avx.h"
X86_LAYERS = {"vec_avx2.h", "vec_avx512.h"}


def test_the_shared_x86_header_is_included_only_by_the_x86_layers() -> None:
    includers = {
        path.name
        for path in CSRC.rglob("*")
        if path.suffix in {".h", ".cpp", ".inc", ".cc", ".hpp"}
        and re.search(rf'#include\s+"(\.\./)*(simd/)?{re.escape(X86_SHARED)}"', path.read_text())
    }
    assert (CSRC / "src" / "simd" / X86_SHARED).is_file()
    assert includers == X86_LAYERS


# The Python package's layers, lowest first. A module may import from its own folder and
# from lower layers, never from a higher one nor from another folder of its own layer, so
# the folders form no cycle. model.py (with __init__.py and __main__.py) is the facade that
# every layer is reached through: it is outside the ranks, and the layers name it for
# types and to load a model.
PACKAGE = Path(__file__).resolve().parent.parent / "python" / "gpt2cpu"
LAYERS: list[set[str]] = [
    {"_core", "errors", "files", "progress"},  # shared leaves
    {"tokenizer", "loading"},  # a model directory's files
    {"engine"},  # the batched step over the core's sequences, and the ids it takes
    {"tasks"},  # one forward pass: score, embed, classify, perplexity, logprobs
    {"generation"},  # the token-by-token loops over the step
    {"bench", "jobs", "server"},  # applications of the model
    {"cli"},
]
RANK = {group: rank for rank, groups in enumerate(LAYERS) for group in groups}
# ray.py is a public name users import (gpt2cpu.ray.Gpt2cpuPredictor), a re-export of jobs/ray.
FACADE = {"__init__", "__main__", "model", "ray"}


def imported_groups(source: str, module: str) -> list[tuple[int, str]]:
    """(line, name under gpt2cpu) of each gpt2cpu import in the source of module (dotted,
    a package as its __init__), type-only and function-level imports included."""
    package = module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                target = package[: len(package) - node.level + 1]
                target += node.module.split(".") if node.module else []
            elif node.module and node.module.split(".")[0] == "gpt2cpu":
                target = node.module.split(".")
            else:
                continue
            if len(target) > 1:
                found.append((node.lineno, target[1]))
            else:  # from gpt2cpu import x: a module of the top, or a name of __init__
                found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "gpt2cpu" and len(parts) > 1:
                    found.append((node.lineno, parts[1]))
    return found


def layer_offenders(source: str, module: str) -> list[str]:
    group = module.split(".")[1]
    if group in FACADE:
        return []
    assert group in RANK, f"{module}: add its folder to LAYERS"
    return [
        f"{module}:{line}: imports {target}"
        for line, target in imported_groups(source, module)
        # its own folder, the facade, or a name of gpt2cpu/__init__.py are fine
        if target != group and target in RANK and RANK[target] >= RANK[group]
    ]


def test_python_folders_import_only_lower_layers() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        offenders += layer_offenders(path.read_text(), module)
    assert not offenders, "imports of a layer not below:\n" + "\n".join(offenders)


def test_the_layer_rule_would_catch_them() -> None:
    assert layer_offenders("from ..generation.loop import resolve", "gpt2cpu.tasks.x")
    assert layer_offenders("from .. import server", "gpt2cpu.jobs.x")
    assert layer_offenders("import gpt2cpu.cli", "gpt2cpu.engine.x")
    assert layer_offenders("from ...loading import x", "gpt2cpu.tokenizer.sub.x")
    assert not layer_offenders(
        "from ..model import Model\nfrom .. import _core\nfrom .inputs import batch_ids\n"
        "from ..engine.batch import step\nfrom .. import __version__", "gpt2cpu.tasks.x"
    )


def test_the_package_top_holds_only_the_facade_and_the_shared_leaves() -> None:
    """A new module goes in the folder of what it does: the top stays this short."""
    top = {path.stem for path in PACKAGE.glob("*.py")}
    assert top == FACADE | {"errors", "files", "progress"}
