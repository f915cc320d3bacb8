"""Latency per window of float32 vs int8 TorchScript DRSN-CW on one CPU thread.

    .venv/bin/python benchmarks/bench_inference.py                      # widths 4,8,16 8,16,32 16,32,64
    .venv/bin/python benchmarks/bench_inference.py --widths 4,8,16 --batch 32 --batch 1
    .venv/bin/python benchmarks/bench_inference.py --model models/drsn_cw_cwru_float.pt \
        --model models/drsn_cw_cwru.pt --batch 32 --repeats 300

    .venv/bin/python benchmarks/bench_inference.py --model OLD_float.pt --model OLD.pt \
        --model models/drsn_cw_cwru_float.pt --model models/drsn_cw_cwru.pt --batch 1 --batch 8 --batch 32 \
        --allocator default --allocator tuned --rounds 3

Random weights (timing does not depend on them); int8 is calibrated on random normal windows.
float32 and int8 calls alternate inside one loop, so load from other processes hits both alike.
Prints a markdown table of medians in milliseconds per window. With ``--model`` files, all files
alternate in one loop and each gets the ratio (first file's time / its time) per repeat: the
median of those per-pair ratios and their 10th-90th percentile (put the float32 reference first).

``--allocator`` (with ``--model``; repeatable) runs the same file benchmark in a subprocess per
allocator setting (``default``: glibc, no ``MALLOC_*`` variables; ``tuned``: :data:`TUNED_MALLOC`;
``jemalloc``: jemalloc preloaded, :data:`JEMALLOC`; or ``NAME=VALUE,NAME=VALUE``), the settings taking
turns for ``--rounds`` rounds; it prints each setting's median over the rounds of every file's ms/window,
the ratio to the first setting, the peak RSS and which allocator the subprocess really ran (a preload
that is not installed is ignored by the loader).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from cpuinfo import cpu_description

logger = logging.getLogger(__name__)

DEFAULT_WIDTHS = ((4, 8, 16), (8, 16, 32), (16, 32, 64))
# what systemd/edge-agent.service sets: allocations up to 32 MiB (glibc's largest mmap threshold on 64-bit)
# come from the heap and the heap is trimmed only past 128 MiB free, so the activation buffers of each call
# are reused instead of mmapped and page-faulted afresh (glibc's dynamic threshold does not settle here)
TUNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(128 << 20)}
MALLOC_VARIABLES = (
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_ARENA_MAX",
    "LD_PRELOAD",
    "MALLOC_CONF",
)
JEMALLOC = {"LD_PRELOAD": "libjemalloc.so.2"}  # as the systemd unit preloads it (Debian: libjemalloc2)
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


def time_files(args: argparse.Namespace) -> dict[str, dict[int, list[float]]]:
    """Seconds per call of every ``--model`` file at every ``--batch``, the files alternating in one loop."""
    from edge_agent.modelfile import load_model

    models = {str(path): load_model(path) for path in args.model}
    engines = {m.meta.quantized_engine for m in models.values()} - {None}
    if len(engines) > 1:  # the engine is process-global and decides how int8 weights were packed at load
        raise SystemExit(f"--model files need one quantized engine per run, got {sorted(engines)}")
    first = next(iter(models.values()))
    modules = {name: m.module for name, m in models.items()}
    found: dict[str, dict[int, list[float]]] = {name: {} for name in modules}
    for batch in args.batch:
        inputs = torch.randn(batch, first.channels, first.window_samples)
        for name, values in time_samples(modules, inputs, repeats=args.repeats, warmup=5).items():
            found[name][batch] = values
    return found


def allocator_env(setting: str) -> dict[str, str]:
    """The environment of a subprocess for ``setting`` (``default``, ``tuned`` or ``NAME=VALUE,...``)."""
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_VARIABLES}
    if setting == "tuned":
        env.update(TUNED_MALLOC)
    elif setting == "jemalloc":
        env.update(JEMALLOC)
    elif setting != "default":
        env.update(dict(item.split("=", 1) for item in setting.split(",")))
    return env


def bench_allocators(args: argparse.Namespace) -> list[str]:
    """Each allocator setting in its own subprocess, settings taking turns for ``args.rounds`` rounds."""
    command = [sys.executable, __file__, "--json", "--repeats", str(args.repeats), "--threads", str(args.threads)]
    command += [f"--model={path}" for path in args.model] + [f"--batch={b}" for b in args.batch]
    medians: dict[str, list[dict]] = {setting: [] for setting in args.allocator}
    for _ in range(args.rounds):
        for setting in args.allocator:
            done = subprocess.run(command, env=allocator_env(setting), capture_output=True, text=True, check=True)
            medians[setting].append(json.loads(done.stdout.splitlines()[-1]))
    first, names = args.allocator[0], args.allocator
    rows = [
        f"| model | batch | {' | '.join(f'{s}: ms/window median; p10; CPU ms/window; faults/call' for s in names)} "
        f"| {' | '.join(f'{first} / {s}: median; p10; CPU' for s in args.allocator[1:])} |",
        "|---|---|" + "---|" * (2 * len(args.allocator) - 1),
    ]
    keys = ("ms_per_window", "ms_per_window_p10", "cpu_ms_per_window", "page_faults_per_call")
    for name in map(str, args.model):
        for batch in args.batch:
            ms, fast, cpu, faults = (
                {s: statistics.median(r[key][name][str(batch)] for r in medians[s]) for s in medians} for key in keys
            )
            cells = [f"{ms[s]:.3f}; {fast[s]:.3f}; {cpu[s]:.3f}; {faults[s]:.0f}" for s in args.allocator]
            ratios = [
                f"{ms[first] / ms[s]:.2f}; {fast[first] / fast[s]:.2f}; {cpu[first] / cpu[s]:.2f}"
                for s in args.allocator[1:]
            ]
            rows.append(f"| {name} | {batch} | {' | '.join(cells)} | {' | '.join(ratios)} |")
    for setting, runs in medians.items():
        rss = max(r["max_rss_mib"] for r in runs)
        variables = {k: v for k, v in allocator_env(setting).items() if k in MALLOC_VARIABLES} or "no variables"
        ran = sorted({r["allocator"] for r in runs})
        rows.append(f"\n{setting}: {variables}, ran {' / '.join(ran)}, peak RSS {rss:.0f} MiB")
    return rows


def cpu_and_faults(args: argparse.Namespace) -> dict[str, dict[str, dict[str, float]]]:
    """Per file and batch: this process's CPU ms per window and page faults per call over ``args.repeats`` calls.

    CPU time (user + system, the page faults' kernel work included) hardly depends on what other
    processes do, unlike wall time on a shared machine.
    """
    from edge_agent.modelfile import load_model

    found: dict[str, dict[str, dict[str, float]]] = {}
    for path in args.model:
        model = load_model(path)
        found[str(path)] = {}
        for batch in args.batch:
            inputs = torch.randn(batch, model.channels, model.window_samples)
            with torch.inference_mode():
                for _ in range(5):
                    model.module(inputs)
                before, started = resource.getrusage(resource.RUSAGE_SELF), time.process_time()
                for _ in range(args.repeats):
                    model.module(inputs)
                cpu_s, after = time.process_time() - started, resource.getrusage(resource.RUSAGE_SELF)
            found[str(path)][str(batch)] = {
                "cpu_ms_per_window": 1e3 * cpu_s / (args.repeats * batch),
                "page_faults_per_call": (after.ru_minflt - before.ru_minflt) / args.repeats,
            }
    return found


def json_files(args: argparse.Namespace) -> str:
    """One JSON line: per file and batch the median and p10 ms/window, CPU time and page faults, peak RSS."""
    from edge_agent.common.allocator import allocator

    found = time_files(args)
    ms = {n: {str(b): 1e3 * statistics.median(v) / b for b, v in per.items()} for n, per in found.items()}
    fast = {n: {str(b): 1e3 * _p10(v) / b for b, v in per.items()} for n, per in found.items()}
    cost = cpu_and_faults(args)
    cpu = {n: {b: c["cpu_ms_per_window"] for b, c in per.items()} for n, per in cost.items()}
    faults = {n: {b: c["page_faults_per_call"] for b, c in per.items()} for n, per in cost.items()}
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return json.dumps(
        {
            "ms_per_window": ms,
            "ms_per_window_p10": fast,
            "cpu_ms_per_window": cpu,
            "page_faults_per_call": faults,
            "max_rss_mib": rss_mib,
            "allocator": allocator(),  # what the loader really mapped (a missing preload is ignored)
        }
    )


def bench_files(args: argparse.Namespace) -> list[str]:
    """All files alternate in one loop; ratios are per repeat against the first file."""
    from edge_agent.modelfile import load_model

    precision = {str(path): load_model(path).meta.precision for path in args.model}
    found = time_files(args)
    rows = [
        "| model | precision | batch | repeats | ms/window (median) "
        "| first / this: median of per-repeat ratios (p10-p90) | ms/window (p10) | first / this (p10s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for batch in args.batch:
        samples = {name: per[batch] for name, per in found.items()}
        reference = samples[next(iter(samples))]
        for name, values in samples.items():
            ratios = sorted(r / v for r, v in zip(reference, values, strict=True))
            low, high = ratios[len(ratios) // 10], ratios[(9 * len(ratios)) // 10]
            # the 10th percentile: the calls that other processes on a shared machine did not interrupt
            fast, fast_reference = _p10(values), _p10(reference)
            rows.append(
                f"| {name} | {precision[name]} | {batch} | {len(values)} | "
                f"{statistics.median(values) / batch * 1e3:.3f} | "
                f"{statistics.median(ratios):.3f} ({low:.2f}-{high:.2f}) | "
                f"{fast / batch * 1e3:.3f} | {fast_reference / fast:.3f} |"
            )
    return rows


def _p10(values: list[float]) -> float:
    return sorted(values)[len(values) // 10]


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
    parser.add_argument(
        "--allocator", action="append", help="with --model: default, tuned or NAME=VALUE,... (repeatable)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="turns of each --allocator setting")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # one subprocess of --allocator
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
    if args.json:
        print(json_files(args))
        return 0
    if args.allocator and not args.model:
        raise SystemExit("--allocator needs --model files")
    started = time.perf_counter()
    if args.allocator:
        rows = bench_allocators(args)
    else:
        rows = bench_files(args) if args.model else bench_widths(args)
    print(f"CPU: {cpu_description()}")
    engine = "of each file" if args.allocator else torch.backends.quantized.engine
    print(f"torch {torch.__version__}, {args.threads} thread(s), engine {engine}")
    print("\n".join(rows))
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
