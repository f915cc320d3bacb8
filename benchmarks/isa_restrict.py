"""Run a benchmark as if the CPU had AVX2 only ("AVX2 emulated on an AVX-512 CPU"), and prove it took effect.

    .venv/bin/python benchmarks/bench_runtimes.py --isa avx2 --runtime ts-int8 --runtime ts-fp32

:func:`restrict` re-executes the process with the variables below set (each library reads them once,
at its first use, so they must be in the environment from the start):

- ``ATEN_CPU_CAPABILITY=avx2``: PyTorch's own vectorised kernels (elementwise ops, reductions, the
  quantize / dequantize loops) dispatch to their AVX2 build;
- ``ONEDNN_MAX_CPU_ISA=AVX2``: oneDNN (the onednn int8 engine, float convolutions at batch > 1);
- ``MKL_ENABLE_INSTRUCTIONS=AVX2``: MKL (matrix products: linear layers, the batch-1 float convolution);
- ``FBGEMM_ENABLE_INSTRUCTIONS=AVX2``: FBGEMM (the fbgemm / x86 int8 engines).

:func:`probe` checks what each library then does: PyTorch's reported CPU capability, the ISA oneDNN
reports and the kernel it picks for an int8 and a float32 convolution (``ONEDNN_VERBOSE`` output of
one call each), and the time of four kernels, so that :func:`verify` can compare them with a child
process that runs without the restriction. MKL prints no ISA on AMD CPUs; its kernel timing is the
only evidence for it. What the emulation is not: the caches, clocks and memory of this CPU stay, so it
is not a measurement of a real AVX2 CPU (docs/benchmarks.md keeps those apart).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ISA_ENV = {
    "avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",
        "EDGE_AGENT_OPS_ISA": "avx2",  # the op library of the fused files (edge_agent/kernels)
    }
}
MARKER = "EDGE_AGENT_BENCH_ISA"
KERNELS = ("int8 conv 32x64x1x256 (onednn)", "float32 conv 32x64x1x256", "sgemm 256x256x256", "sigmoid 1M floats")


def restrict(isa: str) -> None:
    """Re-execute this process with :data:`ISA_ENV` ``[isa]`` unless it already runs with it."""
    if os.environ.get(MARKER) == isa:
        return
    env = {**os.environ, **ISA_ENV[isa], MARKER: isa}
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def _median_us(function: Callable[[], object], repeats: int = 30) -> float:
    for _ in range(3):
        function()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        function()
        times.append(time.perf_counter() - began)
    return sorted(times)[len(times) // 2] * 1e6


def _onednn_lines(function: Callable[[], object]) -> list[str]:
    """``ONEDNN_VERBOSE`` lines printed (by C code, to fd 1) while ``function`` runs."""
    import torch

    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile(mode="w+") as capture:
        os.dup2(capture.fileno(), 1)
        try:
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                function()
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
        capture.seek(0)
        return [line.strip() for line in capture if line.startswith("onednn_verbose")]


def probe() -> dict[str, object]:
    """What PyTorch, oneDNN and MKL use in this process, and the time of :data:`KERNELS` (µs, one thread)."""
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = "onednn"
    try:
        generator = torch.Generator().manual_seed(0)
        weight = torch.quantize_per_channel(
            torch.randn(64, 64, 1, 3, generator=generator),
            torch.full((64,), 0.01),
            torch.zeros(64).long(),
            0,
            torch.qint8,
        )
        packed = torch.ops.quantized.conv2d_prepack(weight, None, [1, 1], [0, 1], [1, 1], 1)
        activations = torch.rand(32, 64, 1, 256, generator=generator).contiguous(memory_format=torch.channels_last)
        quantized = torch.quantize_per_tensor(activations, 0.02, 0, torch.quint8)
        float_weight = torch.randn(64, 64, 1, 3, generator=generator)
        a, b = torch.randn(256, 256, generator=generator), torch.randn(256, 256, generator=generator)
        floats = torch.randn(1 << 20, generator=generator)
        with torch.inference_mode():
            calls = (
                lambda: torch.ops.quantized.conv2d(quantized, packed, 0.05, 0),
                lambda: torch.nn.functional.conv2d(activations, float_weight, padding=(0, 1)),
                lambda: torch.mm(a, b),
                lambda: torch.sigmoid(floats),
            )
            lines = _onednn_lines(lambda: (calls[0](), calls[1]()))
            times = {name: round(_median_us(call), 1) for name, call in zip(KERNELS, calls, strict=True)}
    finally:
        torch.backends.quantized.engine = previous
    isa = next((line.split("isa:", 1)[1] for line in lines if ",isa:" in line), "?")
    convolutions = [line.split(",")[6] for line in lines if ",exec," in line and ",convolution," in line]
    return {
        "aten_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn_isa": isa,
        "onednn_convolutions": convolutions,
        "kernel_us": times,
    }


def unrestricted_probe() -> dict[str, object]:
    """:func:`probe` in a child process without the restriction (and without this process's marker)."""
    env = {k: v for k, v in os.environ.items() if k != MARKER and not any(k in e for e in ISA_ENV.values())}
    code = "import json, isa_restrict; print(json.dumps(isa_restrict.probe()))"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=Path(__file__).parent, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def verify(isa: str) -> list[str]:
    """Markdown lines proving the restriction to ``isa`` took effect; ``SystemExit`` where it did not."""
    here, native = probe(), unrestricted_probe()
    wanted = isa.upper()
    problems = []
    if str(here["aten_capability"]).upper() != wanted:
        problems.append(f"PyTorch reports CPU capability {here['aten_capability']}")
    if wanted not in str(here["onednn_isa"]).upper() or "512" in str(here["onednn_isa"]):
        problems.append(f"oneDNN reports isa {here['onednn_isa']}")
    if any("512" in kernel or "amx" in kernel for kernel in here["onednn_convolutions"]):  # type: ignore[union-attr]
        problems.append(f"oneDNN picked {here['onednn_convolutions']}")
    if problems:
        raise SystemExit(f"the {isa} restriction did not take effect: {'; '.join(problems)}")
    settings = " ".join(f"{k}={v}" for k, v in ISA_ENV[isa].items())
    lines = [
        f"**{isa.upper()} emulated on this CPU** ({settings}). Checked in this run: PyTorch reports CPU "
        f"capability {here['aten_capability']} (unrestricted: {native['aten_capability']}); oneDNN reports "
        f"`isa:{here['onednn_isa']}` (unrestricted: `{native['onednn_isa']}`) and runs the int8 / float32 "
        f"convolution as `{'`, `'.join(here['onednn_convolutions'])}` (unrestricted: "  # type: ignore[arg-type]
        f"`{'`, `'.join(native['onednn_convolutions'])}`). Kernel times, µs, median of 30 (restricted, "  # type: ignore[arg-type]
        "unrestricted in a child process; a ratio near 1 says that library picked the same code either way):",
        "",
        "| kernel | restricted | unrestricted | restricted / unrestricted |",
        "|---|---|---|---|",
    ]
    for name in KERNELS:
        slow, fast = here["kernel_us"][name], native["kernel_us"][name]  # type: ignore[index]
        lines.append(f"| {name} | {slow} | {fast} | {slow / fast:.2f} |")
    return [*lines, ""]
