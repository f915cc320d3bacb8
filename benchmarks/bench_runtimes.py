"""The shipped networks in TorchScript (int8, float32) against ONNX Runtime and OpenVINO, one thread.

    .venv/bin/python benchmarks/bench_runtimes.py                        # both models, batch 1, 8, 32
    .venv/bin/python benchmarks/bench_runtimes.py --model cwru --batch 32 --budget-s 4
    .venv/bin/python benchmarks/bench_runtimes.py --out docs/benchmarks.md   # also rewrite the doc's block
    .venv/bin/python benchmarks/bench_runtimes.py --isa avx2 --out docs/benchmarks.md  # AVX2 emulated, own block

Needs the ``bench`` extra (``pip install -e '.[bench]'``). Loads whatever ``models/`` holds: the
TorchScript files as the agent loads them, and the peers exported from the same weights (the eager
network rebuilt from the float32 file; see ``runtime_exports.py`` for how each peer is made).
Runtimes: ``ts-int8`` (shipped), ``ts-int8-fused`` (the fused int8 file beside it, where it and the op
library exist: ``make kernels``), ``ts-fp32``, ``ort-fp32``, ``ort-int8`` (QDQ), ``ov-fp32``,
``ov-int8`` (the QDQ model in OpenVINO), ``ov-bf16`` (only where OpenVINO reports BF16 for the CPU).

Timing: for every batch size all runtimes take turns call by call in one loop (in a new seeded
random order every repeat), on real held-out windows, so load from other processes hits all alike. The
table gives the median ms per window, the 10th-90th percentile of the calls, and the median of the
per-repeat ratios "shipped int8 time / this runtime's time" (> 1: faster than the shipped file).
Agreement: logits of every runtime against TorchScript float32 on the held-out windows, clean and
with white Gaussian noise at -5 dB: max |logit difference|, argmax agreement and accuracy.

``--isa avx2`` runs the TorchScript files as on an AVX2-only CPU (``isa_restrict.py``: the process is
re-executed with PyTorch, oneDNN, MKL and FBGEMM capped at AVX2, and the run checks and prints that the
cap took effect); the peers cannot be capped the same way (ONNX Runtime and OpenVINO pick kernels by
CPUID), so only ``ts-int8`` and ``ts-fp32`` run. Its results go into a block of their own.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import logging
import operator
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import isa_restrict
import numpy as np
import runtime_data
import runtime_exports
import torch
from cpuinfo import cpu_description

logger = logging.getLogger(__name__)

SECTION_BEGIN = "<!-- bench_runtimes:begin (written by benchmarks/bench_runtimes.py --out) -->"
SECTION_END = "<!-- bench_runtimes:end -->"
ISA_SECTION_BEGIN = "<!-- bench_runtimes-{isa}:begin (written by benchmarks/bench_runtimes.py --isa {isa} --out) -->"
ISA_SECTION_END = "<!-- bench_runtimes-{isa}:end -->"
TORCHSCRIPT = ("ts-int8", "ts-int8-fused", "ts-fp32")
HEADING = "## Runtimes: TorchScript against ONNX Runtime and OpenVINO"
PEERS = ("ort-fp32", "ort-int8", "ov-fp32", "ov-int8", "ov-bf16")
Samples = dict[str, list[float]]


def time_round_robin(runs: dict[str, runtime_exports.Runner], windows: np.ndarray, budget_s: float) -> Samples:
    """Seconds of every call per runtime; all take turns each repeat (in a new random order), ~``budget_s`` in all.

    The order changes because a runtime that hands the call to its own worker thread (OpenVINO) pays
    for waking it, more so on a loaded machine; a fixed order would always charge it after the same peer.
    """
    names = list(runs)
    for _ in range(3):
        for name in names:
            runs[name](windows)
    started = time.perf_counter()
    for name in names:
        runs[name](windows)
    repeats = max(10, min(400, int(budget_s / max(time.perf_counter() - started, 1e-6))))
    samples: Samples = {name: [] for name in names}
    order = np.random.default_rng(0)
    for _ in range(repeats):
        for index in order.permutation(len(names)):
            name = names[index]
            began = time.perf_counter()
            runs[name](windows)
            samples[name].append(time.perf_counter() - began)
    return samples


def summarise(samples: Samples, batch: int) -> dict[str, tuple[float, float, float, float]]:
    """Per runtime: (median ms/window, p10, p90, median of shipped-int8 / this per-repeat ratios)."""
    reference = samples["ts-int8"] if "ts-int8" in samples else next(iter(samples.values()))
    found = {}
    for name, values in samples.items():
        per_window = sorted(v / batch * 1e3 for v in values)
        ratios = [r / v for r, v in zip(reference, values, strict=True)]
        low, high = per_window[len(per_window) // 10], per_window[(9 * len(per_window)) // 10]
        found[name] = (statistics.median(per_window), low, high, statistics.median(ratios))
    return found


def agreement(exports: runtime_exports.Exports, names: tuple[str, ...], windows: np.ndarray, labels: np.ndarray):
    """Per runtime and condition: (max |logit diff| vs ts-fp32, argmax agreement, accuracy); and the fused
    files' (max |logit diff|, argmax agreement) against the shipped int8 file (ts-int8), where both ran."""
    runs = runtime_exports.runners(exports, 32, tuple(dict.fromkeys(("ts-fp32", *names))))
    conditions = {"clean": windows, "-5 dB": runtime_data.noisy(windows, -5.0)}
    found: dict[str, dict[str, tuple[float, float, float]]] = {name: {} for name in names}
    fused = [n for n in names if n.startswith(runtime_exports.FUSED)] if "ts-int8" in names else []
    against_int8: dict[str, dict[str, tuple[float, float]]] = {name: {} for name in fused}
    for condition, inputs in conditions.items():
        reference = runtime_exports.logits_in_batches(runs["ts-fp32"], inputs, 32)
        logits = {name: runtime_exports.logits_in_batches(runs[name], inputs, 32) for name in names}
        for name in names:
            found[name][condition] = (
                float(np.abs(logits[name] - reference).max()),
                float((logits[name].argmax(1) == reference.argmax(1)).mean()),
                float((logits[name].argmax(1) == labels).mean()),
            )
        for name in fused:
            int8 = logits["ts-int8"]
            difference = float(np.abs(logits[name] - int8).max())
            against_int8[name][condition] = (difference, float((logits[name].argmax(1) == int8.argmax(1)).mean()))
    return found, against_int8


def bench_model(key: str, args: argparse.Namespace, names: tuple[str, ...], folder: Path) -> list[str]:
    int8_path, float_path = runtime_data.model_paths(key, args.models)
    data = runtime_data.load_windows(int8_path, args.data)
    exports = runtime_exports.build_exports(int8_path, float_path, folder, data.calibration)
    if args.before is not None:
        exports = dataclasses.replace(exports, before=args.before)
    lines = [f"#### `{int8_path.name}` / `{float_path.name}`", "", f"Windows: {data.description}.", ""]
    if max(args.batch) > len(data.held_out):
        raise SystemExit(f"--batch at most {len(data.held_out)} (the held-out windows of {key})")
    missing_fused = runtime_exports.fused_unavailable(int8_path) if runtime_exports.FUSED in names else None
    if missing_fused is not None:
        names = tuple(n for n in names if n not in (runtime_exports.FUSED, runtime_exports.FUSED_BEFORE))
        lines += [f"{runtime_exports.FUSED} left out: {missing_fused}.", ""]
    if runtime_exports.FUSED_BEFORE in names:
        earlier = args.before / runtime_exports.fused_path(int8_path).name
        if not earlier.is_file():
            names = tuple(n for n in names if n != runtime_exports.FUSED_BEFORE)
            lines += [f"{runtime_exports.FUSED_BEFORE} left out: no {earlier}.", ""]
    timings = {}
    for batch in args.batch:
        runs = runtime_exports.runners(exports, batch, names)
        samples = time_round_robin(runs, np.ascontiguousarray(data.held_out[:batch]), args.budget_s)
        timings[batch] = (summarise(samples, batch), len(next(iter(samples.values()))), samples)
        print(f"{key} batch {batch}: {timings[batch][1]} repeats", file=sys.stderr, flush=True)
    reference = "int8" if "ts-int8" in names else names[0]  # what summarise() divides by
    header = " | ".join(f"batch {b}: ms/window (p10-p90) | {reference} / this" for b in args.batch)
    lines += [f"| runtime | {header} |", "|---|" + "---|---|" * len(args.batch)]
    for name in names:
        cells = []
        for batch in args.batch:
            median, low, high, ratio = timings[batch][0][name]
            cells.append(f"{median:.3f} ({low:.3f}-{high:.3f}) | {ratio:.2f}")
        lines.append(f"| {name} | {' | '.join(cells)} |")
    repeats = ", ".join(f"batch {b}: {timings[b][1]}" for b in args.batch)
    lines += ["", f"Repeats (every runtime once each): {repeats}.", ""]
    windows, labels = runtime_data.subset(data, args.agreement_windows)
    agree, against_int8 = agreement(exports, names, windows, labels)
    lines += [
        f"Agreement with ts-fp32 on {len(windows)} windows, batches of 32 (-5 dB: white Gaussian noise, seed 7):",
        "",
        "| runtime | clean: max abs logit diff | clean: argmax agreement | clean: accuracy "
        "| -5 dB: max abs logit diff | -5 dB: argmax agreement | -5 dB: accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in names:
        cells = [f"{d:.2g} | {a:.2%} | {acc:.2%}" for d, a, acc in agree[name].values()]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    if against_int8:
        lines += [
            "",
            "Fused against the shipped int8 file (ts-int8), same windows:",
            "",
            "| runtime | clean: max abs logit diff | clean: argmax agreement "
            "| -5 dB: max abs logit diff | -5 dB: argmax agreement |",
            "|---|---|---|---|---|",
        ]
        for name, conditions in against_int8.items():
            cells = [f"{d:.2g} | {a:.2%}" for d, a in conditions.values()]
            lines.append(f"| {name} | {' | '.join(cells)} |")
    return [*lines, "", *goals(timings, names, args.batch, args.isa), ""]


def goals(timings: dict, names: tuple[str, ...], batches: list[int], isa: str = "native") -> list[str]:
    """The issue's goals for the shipped int8 file (and the fused one), judged on per-repeat time ratios own / peer."""
    rows = ["| goal | result (ms/window; median of per-repeat own / peer time ratios) | met? |", "|---|---|---|"]
    labels = {"ts-int8": "int8", "ts-int8-fused": "fused int8"}

    def ratio(batch: int, peer: str, own: str) -> float:
        if own == "ts-int8":  # summarise() already holds the per-repeat ratios against ts-int8
            return timings[batch][0][peer][3]
        samples = timings[batch][2]
        return statistics.median(map(operator.truediv, samples[own], samples[peer]))

    def compare(batch: int, peer: str, own: str = "ts-int8") -> tuple[str, bool]:
        summary, value = timings[batch][0], ratio(batch, peer, own)
        text = f"{own} {summary[own][0]:.3f}, {peer} {summary[peer][0]:.3f}; {labels[own]} / {peer} {value:.2f}"
        return text, value <= 1.0

    peers = [n for n in PEERS if n in names]
    for own in (n for n in labels if n in names):
        if 32 in timings and peers:
            text, ok = compare(32, max(peers, key=lambda n: ratio(32, n, own)), own)
            rows.append(f"| {labels[own]} batch 32 <= fastest peer | {text} | {_met(ok)} |")
        if 1 in timings and "ort-fp32" in names:
            text, ok = compare(1, "ort-fp32", own)
            rows.append(f"| {labels[own]} batch 1 <= ORT fp32 | {text} | {_met(ok)} |")
        if "ts-fp32" in names:
            text = "; ".join(f"batch {b}: {compare(b, 'ts-fp32', own)[0]}" for b in batches)
            judged = "; ".join(f"batch {b} {_met(compare(b, 'ts-fp32', own)[1])}" for b in batches)
            verdict = f"{judged} (AVX2 emulated)" if isa == "avx2" else "-"
            rows.append(f"| {labels[own]} >= float32 speed (a goal for AVX2-only CPUs) | {text} | {verdict} |")
    return rows


def _met(ok: bool) -> str:
    return "met" if ok else "missed"


def header(args: argparse.Namespace, names: tuple[str, ...], started: datetime.datetime) -> list[str]:
    import onnxruntime
    import openvino

    command = " ".join(["benchmarks/bench_runtimes.py", *sys.argv[1:]])
    return [
        f"Measured {started:%Y-%m-%d %H:%M} UTC. CPU: {cpu_description()}; "
        f"OpenVINO CPU capabilities: {', '.join(openvino.Core().get_property('CPU', 'OPTIMIZATION_CAPABILITIES'))}.",
        f"Python {platform.python_version()}, torch {torch.__version__} (quantized engine from each file's meta), "
        f"onnxruntime {onnxruntime.__version__}, openvino {openvino.__version__}; one thread per runtime; "
        f"runtimes {', '.join(names)}; load average at start {os.getloadavg()[0]:.2f} "
        f"({os.cpu_count()} cores, shared with other jobs).",
        "",
        "```sh",
        f".venv/bin/python {command}",
        "```",
        "",
    ]


def write_section(path: Path, section: str, isa: str = "native") -> None:
    """Replace the generated block of ``path`` (the ``--isa`` run's own block), or append it with the heading."""
    begin, end = (SECTION_BEGIN, SECTION_END) if isa == "native" else (ISA_SECTION_BEGIN, ISA_SECTION_END)
    begin, end = begin.format(isa=isa), end.format(isa=isa)
    block = f"{begin}\n{section}{end}\n"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        before = text[: text.index(begin)]
        after = text[text.index(end) + len(end) :].lstrip("\n")
        path.write_text(before + block + ("\n" + after if after else ""))
    else:
        path.write_text(text.rstrip("\n") + f"\n\n{HEADING}\n\n{block}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(runtime_data.MODELS), action="append", help="default: both")
    parser.add_argument("--batch", type=int, action="append", help="batch size (repeatable; default 1, 8, 32)")
    parser.add_argument("--runtime", choices=runtime_exports.RUNTIMES, action="append", help="default: all")
    parser.add_argument("--budget-s", type=float, default=8.0, help="timing seconds per model and batch size")
    parser.add_argument("--agreement-windows", type=int, default=650, help="held-out windows (0: all)")
    parser.add_argument("--models", type=Path, default=Path("models"), help="folder of the shipped files")
    parser.add_argument("--data", help="data folder (default $EDGE_AGENT_DATA or ../shared/data)")
    parser.add_argument(
        "--before",
        type=Path,
        help="a folder of earlier files of the same names: adds ts-int8-before, ts-fp32-before, ts-int8-fused-before",
    )
    parser.add_argument("--out", type=Path, help="rewrite (or append) the generated block of this markdown file")
    parser.add_argument(
        "--isa", choices=("native", *isa_restrict.ISA_ENV), default="native", help="cap the ISA (TorchScript only)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.isa != "native":
        isa_restrict.restrict(args.isa)  # re-executes this process with the ISA capped (returns once it is)
        if any(name not in TORCHSCRIPT for name in args.runtime or ()):
            raise SystemExit(f"--isa {args.isa} caps only TorchScript: use --runtime ts-int8 / ts-fp32")
        args.runtime = args.runtime or list(TORCHSCRIPT)
    args.batch = args.batch or [1, 8, 32]
    if min(args.batch) < 1:
        raise SystemExit(f"--batch must be >= 1, got {args.batch}")
    logging.basicConfig(level=logging.ERROR)  # onnxruntime.quantization warns on the root logger
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    peers = ("onnxruntime", "openvino", "onnx", "onnxscript")
    missing = [name for name in peers if importlib.util.find_spec(name) is None]
    if missing:
        raise SystemExit(f"needs the bench extra (pip install -e '.[bench]'); missing: {', '.join(missing)}")
    names = tuple(args.runtime or runtime_exports.RUNTIMES)
    if args.before is not None:
        earlier = (*runtime_exports.BEFORE, runtime_exports.FUSED_BEFORE)
        names = (*names, *(b for b in earlier if b.removesuffix("-before") in names))
    if "ov-bf16" in names and not runtime_exports.openvino_has_bf16():
        names = tuple(n for n in names if n != "ov-bf16")
        print("OpenVINO reports no BF16 on this CPU: ov-bf16 left out", file=sys.stderr)
    started = datetime.datetime.now(datetime.UTC)
    lines = header(args, names, started)
    if args.isa != "native":
        lines += isa_restrict.verify(args.isa)
    with tempfile.TemporaryDirectory(prefix="bench-runtimes-") as folder:
        for key in args.model or ["cwru", "audio"]:
            lines += bench_model(key, args, names, Path(folder))
    elapsed_s = (datetime.datetime.now(datetime.UTC) - started).total_seconds()
    lines.append(f"({elapsed_s:.0f} s in all; load average at the end {os.getloadavg()[0]:.2f})")
    section = "\n".join(lines) + "\n"
    print(section)
    if args.out:
        write_section(args.out, section, args.isa)
    return 0


if __name__ == "__main__":
    sys.exit(main())
