"""Cost per window of the vibration indicators, against the shipped model's inference on the same windows.

    .venv/bin/python benchmarks/bench_indicators.py                  # both cases, batch 1 and 32
    .venv/bin/python benchmarks/bench_indicators.py --repeats 500 --no-model

Cases: CWRU vibration (12 kHz, window 2048, ``models/drsn_cw_cwru.pt``) and audio (16 kHz, window
4096, ``models/drsn_cw_bldc_audio.pt``); one channel, random normal windows. The indicators run
with every option on (Hann taper, 10-1000 Hz velocity, four band levels, an ISO zone), which is
their most expensive setting. Indicators and model calls alternate inside one loop, so load from
other processes hits both alike; each repeat gives the ratio indicator time / model time, and the
table shows the median of those per-pair ratios with their 10th-90th percentile. One thread
(``torch.set_num_threads``; numpy's FFT and small products are single-threaded anyway).
Prints the CPU model and the SIMD flags that decide both costs, then a markdown table.
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
import sys
import time
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cpuinfo import cpu_description

from edge_agent.pipeline.indicators import IndicatorSettings, compute_indicators, make_plan

logger = logging.getLogger(__name__)

CASES = (
    ("vibration", 12_000.0, 2048, "models/drsn_cw_cwru.pt"),
    ("audio", 16_000.0, 4096, "models/drsn_cw_bldc_audio.pt"),
)
SETTINGS = IndicatorSettings(
    bands_hz=((10.0, 1000.0), (1000.0, 2000.0), (2000.0, 4000.0), (4000.0, 6000.0)), machine_group=2
)


def versions() -> str:
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "?"

    python = platform.python_version()
    return f"Python {python}, numpy {np.__version__}, scipy {version('scipy')}, torch {version('torch')}"


def time_case(rate_hz: float, window: int, batch: int, model: Any, repeats: int) -> tuple[list[float], list[float]]:
    """Seconds per call of the indicators and of the model (empty without one), alternating."""
    plan = make_plan(SETTINGS, rate_hz, window)
    windows = np.random.default_rng(0).standard_normal((batch, 1, window)).astype(np.float32)
    indicator_s: list[float] = []
    model_s: list[float] = []
    call_model = None
    if model is not None:
        import torch

        inputs = torch.from_numpy(windows)

        def call_model() -> None:
            with torch.inference_mode():
                model(inputs)

    for repeat in range(repeats + 5):  # the first 5 are warm-up
        started = time.perf_counter()
        compute_indicators(plan, windows)
        elapsed = time.perf_counter() - started
        if repeat >= 5:
            indicator_s.append(elapsed)
        if call_model is not None:
            started = time.perf_counter()
            call_model()
            elapsed = time.perf_counter() - started
            if repeat >= 5:
                model_s.append(elapsed)
    return indicator_s, model_s


def load(path: str) -> Any:
    from edge_agent.modelfile import load_model

    try:
        return load_model(Path(__file__).resolve().parents[1] / path).module
    except (OSError, ValueError) as error:
        logger.warning("%s: cannot be loaded (%s); timing the indicators alone", path, error)
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, action="append", help="windows per call (repeatable; default 1 and 32)")
    parser.add_argument("--repeats", type=int, default=300, help="alternating repeats per case and batch")
    parser.add_argument("--no-model", action="store_true", help="time the indicators alone (no torch)")
    args = parser.parse_args(argv)
    batches = args.batch or [1, 32]
    if min(batches) < 1 or args.repeats < 10:
        raise SystemExit(f"--batch must be >= 1 and --repeats >= 10, got {batches} and {args.repeats}")
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    if not args.no_model:
        import torch

        torch.set_num_threads(1)
    started = time.perf_counter()
    rows = [
        "| case | rate Hz | window | batch | indicators µs/window (median, p10-p90) | model µs/window (median) "
        "| indicators / model: median of per-repeat ratios (p10-p90) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rate_hz, window, model_path in CASES:
        model = None if args.no_model else load(model_path)
        for batch in batches:
            ind_s, mod_s = time_case(rate_hz, window, batch, model, args.repeats)
            ind = sorted(s / batch * 1e6 for s in ind_s)
            spread = f"{statistics.median(ind):.1f} ({ind[len(ind) // 10]:.1f}-{ind[9 * len(ind) // 10]:.1f})"
            if mod_s:
                ratios = sorted(i / m for i, m in zip(ind_s, mod_s, strict=True))
                model_cell = f"{statistics.median(mod_s) / batch * 1e6:.0f}"
                ratio_cell = (
                    f"{statistics.median(ratios):.3f} ({ratios[len(ratios) // 10]:.3f}-"
                    f"{ratios[9 * len(ratios) // 10]:.3f})"
                )
            else:
                model_cell = ratio_cell = "-"
            rows.append(f"| {name} | {rate_hz:.0f} | {window} | {batch} | {spread} | {model_cell} | {ratio_cell} |")
            print(rows[-1], file=sys.stderr, flush=True)
    print(f"CPU: {cpu_description()}")
    print(f"{versions()}; one thread; {args.repeats} repeats per row")
    print("\n".join(rows))
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
