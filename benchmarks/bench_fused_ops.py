"""Each op of the edge_agent op library against the ATen ops it replaces, one thread, alternating.

    make kernels && .venv/bin/python benchmarks/bench_fused_ops.py
    .venv/bin/python benchmarks/bench_fused_ops.py --batch 1 --isa avx2

Shapes are the CWRU network's units at batch ``--batch`` (16 channels x 512 samples, 32 x 256,
64 x 128, the stem's 16 x 1024; the int8 convolutions against ``quantized::conv2d`` on the units' inputs,
random weights and inputs); every repeat times each variant once, in turn, and the table gives
the p10 and median microseconds per call and the median of the per-repeat ratios ATen / fused (> 1:
the fused op is faster). Each pair is checked for the same output first (bit for bit where the op
promises it). ``--isa`` picks the kernels' instruction set (``$EDGE_AGENT_OPS_ISA``, set before loading).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from cpuinfo import cpu_description

logger = logging.getLogger(__name__)

Pair = tuple[Callable[[], object], Callable[[], object]]


def channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def pairs(batch: int, channels: int, length: int) -> dict[str, Pair]:
    """(fused, ATen) callables for one unit's shape."""
    g = torch.Generator().manual_seed(0)
    x = channels_last(torch.randn(batch, channels, 1, length, generator=g))
    q = torch.quantize_per_tensor(x * 2, 0.05, 116, torch.quint8)
    tau = torch.rand(batch, channels, generator=g) * 0.3
    a, b = torch.rand(channels, generator=g) + 0.5, torch.randn(channels, generator=g)
    a4, b4, t4 = a.view(1, -1, 1, 1), b.view(1, -1, 1, 1), tau.view(batch, channels, 1, 1)
    ops = torch.ops.edge_agent

    def aten_unit() -> tuple[torch.Tensor, torch.Tensor]:
        y = q.dequantize()
        y = y.sub_(torch.clamp(y, -t4, t4)).add_(x)
        return y, torch.quantize_per_tensor(torch.addcmul(b4, y, a4), 0.04, 0, torch.quint8)

    def aten_head() -> torch.Tensor:
        y = q.dequantize()
        y = y.sub_(torch.clamp(y, -t4, t4)).add_(x)
        return torch.relu_(torch.addcmul(b4, y, a4)).mean(dim=(2, 3))

    return {
        "abs_sum (dequantize, abs, sum)": (lambda: ops.abs_sum(q), lambda: q.dequantize().abs().sum(dim=(2, 3))),
        "affine_quantize (addcmul, quantize)": (
            lambda: ops.affine_quantize(x, a, b, 0.04, 0),
            lambda: torch.quantize_per_tensor(torch.addcmul(b4, x, a4), 0.04, 0, torch.quint8),
        ),
        "shrink_add_quantize (dequantize ... quantize, 7 ops)": (
            lambda: ops.shrink_add_quantize(q, tau, x, 1, a, b, 0.04, 0),
            aten_unit,
        ),
        "shrink_add_head (dequantize ... mean, 7 ops)": (lambda: ops.shrink_add_head(q, tau, x, 1, a, b), aten_head),
    }


def conv_pairs(batch: int, channels: int, outs: int, length: int, stride: int) -> dict[str, Pair]:
    """(op library, PyTorch) callables for one unit's int8 convolutions: ``conv1`` (``channels -> outs``,
    ``stride``, ReLU) alone, and the unit (``conv1``, then ``conv2`` ``outs -> outs`` and ``sum |y|``)."""
    from edge_agent.nn.fused import pack_conv

    g = torch.Generator().manual_seed(1)
    q = torch.quantize_per_tensor(
        channels_last(torch.rand(batch, channels, 1, length, generator=g)), 0.01, 0, torch.quint8
    )
    convs = []
    for c_in, c_out, s, relu in ((channels, outs, stride, True), (outs, outs, 1, False)):
        scales = torch.rand(c_out, generator=g) * 0.004 + 0.002
        weight = torch.quantize_per_channel(
            torch.randn(c_out, c_in, 1, 3, generator=g) * 0.2,
            scales,
            torch.zeros(c_out, dtype=torch.long),
            0,
            torch.qint8,
        )
        bias = torch.randn(c_out, generator=g) * 0.1 if relu else None
        out_scale, out_zero_point = (0.02, 0) if relu else (0.05, 120)
        packed = torch.ops.quantized.conv2d_prepack(weight, bias, [1, s], [0, 1], [1, 1], 1)
        kind = torch.ops.quantized.conv2d_relu if relu else torch.ops.quantized.conv2d
        module = torch.nn.Conv2d(c_in, c_out, (1, 3), stride=(1, s), padding=(0, 1))
        ours = pack_conv(module, weight, bias, out_scale, out_zero_point)
        convs.append((lambda x, k=kind, p=packed, o=out_scale, z=out_zero_point: k(x, p, o, z), ours))
    (aten1, p1), (aten2, p2) = convs
    ops = torch.ops.edge_agent
    conv1 = p1.args()
    unit = (*conv1, p1.stride, p1.scale, p1.zero_point, *p2.args(), p2.scale, p2.zero_point)
    return {
        f"qconv1d (quantized::conv2d_relu, stride {stride}, -> {outs})": (
            lambda: ops.qconv1d(q, *conv1, p1.stride, p1.scale, p1.zero_point, True),
            lambda: aten1(q),
        ),
        f"conv_unit (conv2d_relu, conv2d, abs_sum; -> {outs})": (
            lambda: ops.conv_unit(q, *unit),
            lambda: (lambda y: (y, ops.abs_sum(y)))(aten2(aten1(q))),
        ),
    }


def check(fused: object, aten: object) -> str:
    """How the two outputs agree: bit for bit, or the max relative difference."""
    left = list(fused) if isinstance(fused, tuple) else [fused]
    right = list(aten) if isinstance(aten, tuple) else [aten]
    worst = 0.0
    for one, other in zip(left, right, strict=True):
        one = one.int_repr() if one.is_quantized else one
        other = other.int_repr() if other.is_quantized else other
        if not torch.equal(one, other):
            difference = (one.float() - other.float()).abs() / other.float().abs().clamp_min(1e-6)
            worst = max(worst, float(difference.max()))
    return "bit-identical" if worst == 0.0 else f"max rel diff {worst:.1e}"


def time_pair(pair: Pair, repeats: int) -> tuple[list[float], list[float]]:
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for index in (0, 1):
            began = time.perf_counter()
            pair[index]()
            times[index].append(time.perf_counter() - began)
    return times


def timed_row(name: str, pair: Pair, shape: str, repeats: int) -> str:
    """One table row: agreement, p10 / median us of the op library and of ATen, and the median ratio."""
    agreement = check(pair[0](), pair[1]())
    fused, aten = time_pair(pair, repeats)
    ratio = statistics.median(a / f for a, f in zip(aten, fused, strict=True))
    cells = [f"{sorted(t)[len(t) // 10] * 1e6:.1f} / {statistics.median(t) * 1e6:.1f}" for t in (fused, aten)]
    return f"| {name} | {shape} | {agreement} | {cells[0]} | {cells[1]} | {ratio:.2f} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--isa", choices=("avx512", "avx2", "generic"), help="kernels to use (default: the widest)")
    args = parser.parse_args(argv)
    if args.isa:
        os.environ["EDGE_AGENT_OPS_ISA"] = args.isa
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from edge_agent.kernels import load_ops, ops_status

    if not load_ops():
        raise SystemExit(f"the op library does not load ({ops_status().reason}); build it: make kernels")
    print(
        f"CPU: {cpu_description()}; torch {torch.__version__}, one thread; kernels {ops_status().isa}, "
        f"convolutions {torch.ops.edge_agent.conv_isa()}; "
        f"batch {args.batch}; load average {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores, shared)"
    )
    print("\n| op | shape | outputs | fused p10 / median us | ATen p10 / median us | ATen / fused (median of pairs) |")
    print("|---|---|---|---|---|---|")
    with torch.inference_mode():
        for channels, length in ((16, 1024), (16, 512), (32, 256), (64, 128)):
            for name, pair in pairs(args.batch, channels, length).items():
                if name.startswith("affine") != (length == 1024):
                    continue  # affine_quantize is the stem's op; the others the units'
                print(timed_row(name, pair, f"{args.batch}x{channels}x1x{length}", args.repeats))
        for channels, outs, length, stride in (
            (16, 16, 8, 1),
            (16, 16, 1024, 2),
            (16, 16, 512, 1),
            (16, 32, 512, 2),
            (32, 64, 256, 2),
        ):
            for name, pair in conv_pairs(args.batch, channels, outs, length, stride).items():
                print(timed_row(name, pair, f"{args.batch}x{channels}x1x{length}", args.repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
