"""What the CPU can compute natively, from its flags: which reduced precisions are worth offering.

bf16 needs AVX512-BF16 or AMX-BF16; int8 needs VNNI (AVX512-VNNI, AVX-VNNI) or AMX-INT8. Without them a runtime
emulates the precision, slower than f32, so it is never a candidate (`model.inference.runtime_choice`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

PRECISIONS = ("f32", "bf16", "int8")
UNITS: dict[str, frozenset[str]] = {
    "f32": frozenset(),
    "bf16": frozenset({"avx512_bf16", "amx_bf16"}),
    "int8": frozenset({"avx512_vnni", "avx_vnni", "amx_int8"}),
}
SHOWN = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni", "avx_vnni", "amx_int8", "amx_tile")


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The flags of /proc/cpuinfo's first processor (empty where there is no such file)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_name() -> str:
    """The processor's model name, or 'unknown'."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def missing_units(precision: str, flags: frozenset[str] | None = None) -> str | None:
    """None when the CPU computes `precision` natively, else what it lacks (for logs and refusals)."""
    needed = UNITS[precision]
    flags = cpu_flags() if flags is None else flags
    if not needed or needed & flags:
        return None
    return f"{precision} needs one of {'/'.join(sorted(needed))}, which this CPU lacks"


def shown_flags(flags: frozenset[str] | None = None) -> str:
    """The flags that decide runtimes and precisions, present ones only (for benchmarks and logs)."""
    flags = cpu_flags() if flags is None else flags
    return " ".join(f for f in SHOWN if f in flags) or "(none of the vector flags)"
