"""The CPU a benchmark ran on: its model name and the SIMD flags that decide int8 and float speed.

Every benchmark prints :func:`cpu_description` first: the machines of this project change CPU
between sessions (an AVX2-only AMD EPYC, an AVX-512/VNNI/AMX Intel Xeon), so a number is only
comparable with numbers of the same CPU class (docs/benchmarks.md keeps results per class).
"""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path

CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")


def cpu_model_and_flags() -> tuple[str, tuple[str, ...]]:
    """The ``model name`` of the first processor in /proc/cpuinfo and which of :data:`CPU_FLAGS` it lists."""
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            fields.setdefault(name.strip(), value.strip())
    present = set(fields.get("flags", "").split())
    model = fields.get("model name") or platform.processor() or "unknown"
    return model, tuple(flag for flag in CPU_FLAGS if flag in present)


def cpu_description() -> str:
    """One line: ``<model> (<arch>); avx2 yes, avx512f no, ...``."""
    model, present = cpu_model_and_flags()
    shown = ", ".join(f"{flag} {'yes' if flag in present else 'no'}" for flag in CPU_FLAGS)
    return f"{model} ({platform.machine()}); {shown}"


def pin_to(cpu: int) -> None:
    """Pin this process to core ``cpu`` where the machine has that core (-1: leave it where it is)."""
    if cpu >= 0 and (os.cpu_count() or 1) > cpu:
        os.sched_setaffinity(0, {cpu})
