"""Latency per window of float32 vs int8 TorchScript DRSN-CW on one CPU thread.

    .venv/bin/python benchmarks/bench_inference.py                      # widths 4,8,16 8,16,32 16,32,64
    .venv/bin/python benchmarks/bench_inference.py --widths 4,8,16 --batch 32 --batch 1
    .venv/bin/python benchmarks/bench_inference.py --model models/drsn_cw_cwru_float.pt \
        --model models/drsn_cw_cwru.pt --batch 32 --repeats 300

Random weights (timing does not depend on them); int8 is calibrated on random normal windows.
float32 and int8 calls alternate inside one loop, so load from other processes hits both alike.
Prints a markdown table of medians in milliseconds per window. With ``--model`` files, all files
alternate in one loop and each gets the ratio (first file's time / its time) per repeat: the
median of those per-pair ratios and their 10th-90th percentile (put the float32 reference first).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from cpuinfo import cpu_description

logger = logging.getLogger(__name__)

DEFAULT_WIDTHS = ((4, 8, 16), (8, 16, 32), (16, 32, 64))
Module = Callable[[torch.Tensor], torch.Tensor]


def parse_widths(text: str) -> tuple[int, ...]:
    widths = tuple(int(part) for part in text.split(","))
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"widths must be positive integers like 4,8,16, got {text!r}")
    return widths


def time_alternating(
    modules: dict[str, Module], inputs: torch.Tensor, *, repeats: int, warmup: int
) -> dict[str, float]:
    """Median seconds per call of each module; the modules take turns on every repeat."""
    samples = time_samples(modules, inputs, repeats=repeats, warmup=warmup)
    return {name: statistics.median(values) for name, values in samples.items()}


def time_samples(
    modules: dict[str, Module], inputs: torch.Tensor, *, repeats: int, warmup: int
) -> dict[str, list[float]]:
    """Seconds of every call of each module; the modules take turns on every repeat."""
    samples: dict[str, list[float]] = {name: [] for name in modules}
    with torch.inference_mode():
        for _ in range(warmup):
            for module in modules.values():
                module(inputs)
        for _ in range(repeats):
            for name, module in modules.items():
                started = time.perf_counter()
                module(inputs)
                samples[name].append(time.perf_counter() - started)
    return samples


def repeats_for(batch: int, budget_s: float, first_call_s: float) -> int:
    """Enough repeats to fill ``budget_s`` per module, between 5 and 200."""
    return max(5, min(200, int(budget_s / max(first_call_s, 1e-4))))


def build_pair(
    widths: tuple[int, ...], blocks_per_stage: int, window_samples: int, *, quantize_stem: bool = False
) -> tuple[dict[str, Module], dict]:
    """Float32 and int8 TorchScript of a random drsn_cw, built the way ``edge-agent export`` does."""
    from edge_agent.nn import get_model
    from edge_agent.training.export import build_torchscript, describe_model
    from edge_agent.training.quantize import quantize_boundaries

    torch.manual_seed(0)
    model = get_model(
        "drsn_cw", num_classes=10, widths=widths, blocks_per_stage=blocks_per_stage, window_samples=window_samples
    ).eval()
    meta = describe_model(
        model, name="bench", labels=[str(i) for i in range(10)], sample_rate_hz=12_000, architecture={}
    )
    calibration = torch.randn(64, 1, window_samples)
    fp32, _ = build_torchscript(model, meta)
    int8, _ = build_torchscript(model, meta, calibration=calibration, quantize_stem=quantize_stem)
    info = {"parameters": meta["parameters"], "macs": meta["macs_per_window"], **quantize_boundaries(int8)}
    return {"float32": fp32, "int8": int8}, info


def bench_widths(args: argparse.Namespace) -> list[str]:
    rows = [
        "| widths | params | MAC/window | batch | float32 ms/window | int8 ms/window | int8 speed-up | q/dq nodes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for widths in args.widths:
        modules, info = build_pair(widths, args.blocks_per_stage, args.window_samples, quantize_stem=args.quantize_stem)
        for batch in args.batch:
            medians = _bench(modules, batch, args.window_samples, args.budget_s)
            fp32, int8 = medians["float32"] / batch * 1e3, medians["int8"] / batch * 1e3
            rows.append(
                f"| {','.join(map(str, widths))} | {info['parameters']:,} | {info['macs'] / 1e6:.2f} M | {batch} | "
                f"{fp32:.3f} | {int8:.3f} | {fp32 / int8:.2f}x | {info['quantize']}/{info['dequantize']} |"
            )
            print(rows[-1], file=sys.stderr, flush=True)
    return rows


def bench_files(args: argparse.Namespace) -> list[str]:
    """All files alternate in one loop; ratios are per repeat against the first file."""
    from edge_agent.modelfile import load_model

    models = {str(path): load_model(path) for path in args.model}
    engines = {m.meta.quantized_engine for m in models.values()} - {None}
    if len(engines) > 1:  # the engine is process-global and decides how int8 weights were packed at load
        raise SystemExit(f"--model files need one quantized engine per run, got {sorted(engines)}")
    first = next(iter(models.values()))
    modules = {name: m.module for name, m in models.items()}
    rows = [
        "| model | precision | batch | repeats | ms/window (median) "
        "| first / this: median of per-repeat ratios (p10-p90) |",
        "|---|---|---|---|---|---|",
    ]
    for batch in args.batch:
        inputs = torch.randn(batch, first.channels, first.window_samples)
        samples = time_samples(modules, inputs, repeats=args.repeats, warmup=5)
        reference = samples[next(iter(samples))]
        for name, values in samples.items():
            ratios = sorted(r / v for r, v in zip(reference, values, strict=True))
            low, high = ratios[len(ratios) // 10], ratios[(9 * len(ratios)) // 10]
            rows.append(
                f"| {name} | {models[name].meta.precision} | {batch} | {len(values)} | "
                f"{statistics.median(values) / batch * 1e3:.3f} | "
                f"{statistics.median(ratios):.3f} ({low:.2f}-{high:.2f}) |"
            )
    return rows


def _bench(
    modules: dict[str, Module], batch: int, window_samples: int, budget_s: float, channels: int = 1
) -> dict[str, float]:
    inputs = torch.randn(batch, channels, window_samples)
    with torch.inference_mode():
        started = time.perf_counter()
        for module in modules.values():
            module(inputs)
        first_call_s = (time.perf_counter() - started) / len(modules)
    repeats = repeats_for(batch, budget_s, first_call_s)
    return time_alternating(modules, inputs, repeats=repeats, warmup=3)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=parse_widths, action="append", help="e.g. 4,8,16 (repeatable)")
    parser.add_argument("--batch", type=int, action="append", help="batch size (repeatable; default 32 and 1)")
    parser.add_argument("--blocks-per-stage", type=int, default=4)
    parser.add_argument("--window-samples", type=int, default=2048)
    parser.add_argument("--budget-s", type=float, default=2.0, help="timing budget per module and case")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quantize-stem", action="store_true", help="int8 stem conv too (export default: float)")
    parser.add_argument("--model", type=Path, action="append", help="exported TorchScript file(s) to time instead")
    parser.add_argument("--repeats", type=int, default=200, help="alternating repeats with --model files")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.widths = args.widths or list(DEFAULT_WIDTHS)
    args.batch = args.batch or [32, 1]
    if min(args.batch) < 1:
        raise SystemExit(f"--batch must be >= 1, got {args.batch}")
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*deprecated.*")
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    started = time.perf_counter()
    rows = bench_files(args) if args.model else bench_widths(args)
    print(f"CPU: {cpu_description()}")
    print(f"torch {torch.__version__}, {args.threads} thread(s), engine {torch.backends.quantized.engine}")
    print("\n".join(rows))
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
