"""A model seam for ``bench_overload.py --extra-ms-per-batch``: the shipped model plus a fixed cost per batch.

On a 2-core machine the publishers cannot offer 9x of the agent's real capacity (~325 f32le
sensors), so the benchmark can lower the capacity honestly: the agent runs a TorchScript file
that calls the shipped int8 model unchanged (same outputs, same meta, its noise-floor methods) and spends a fixed
amount of CPU per *batch* in torch ops (``iterations`` 256x256 float matrix products chained
through ``tanh``, added to the output as ``0 * sum``, so nothing is optimised away). The
iteration count is calibrated here, one thread, to ``extra_ms`` of CPU time (``time.thread_time``,
so other jobs on the core do not inflate it); the agent's real cost per batch is then ``extra_ms`` + the model's own.

    .venv/bin/python benchmarks/slow_model.py --extra-ms 60 --out /tmp/slow.pt   # prints the calibration
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
import zipfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "drsn_cw_cwru.pt"
SIDE = 256


class Slowed(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module, iterations: int) -> None:
        super().__init__()
        self.inner = inner
        self.iterations = iterations
        self.register_buffer("weight", torch.randn(SIDE, SIDE, generator=torch.Generator().manual_seed(0)) / 16)

    def _extra(self) -> torch.Tensor:
        a = self.weight
        for _ in range(self.iterations):
            a = torch.tanh(a @ self.weight)
        return 0.0 * a.sum()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) + self._extra()

    @torch.jit.export
    def forward_with_noise_floor(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, floor = self.inner.forward_with_noise_floor(x)  # the agent's call when the meta has a noise floor
        return y + self._extra(), floor

    @torch.jit.export
    def noise_floor(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.noise_floor(x)


def _iteration_ms() -> float:
    weight = torch.randn(SIDE, SIDE) / 16
    times = []
    for _ in range(7):
        a = weight
        started = time.thread_time()  # CPU time: a core shared with other jobs must not inflate it
        for _ in range(50):
            a = torch.tanh(a @ weight)
        times.append((time.thread_time() - started) * 1000 / 50)
    return statistics.median(times)


def build(out: Path, extra_ms: float, model: Path = MODEL) -> dict[str, float]:
    """Write the slowed copy of ``model`` to ``out``; returns the calibration (ms per iteration, iterations)."""
    torch.set_num_threads(1)
    with zipfile.ZipFile(model) as archive:
        meta = next(archive.read(n) for n in archive.namelist() if n.endswith("/extra/meta.json"))
    inner = torch.jit.load(str(model), map_location="cpu")
    per_iteration_ms = _iteration_ms()
    iterations = max(1, round(extra_ms / per_iteration_ms))
    scripted = torch.jit.script(Slowed(inner, iterations).eval())
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer, _extra_files={"meta.json": meta})
    out.write_bytes(buffer.getvalue())
    extra = iterations * per_iteration_ms
    return {"iteration_ms": per_iteration_ms, "iterations": float(iterations), "extra_ms": extra}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--extra-ms", type=float, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    print(build(args.out, args.extra_ms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
