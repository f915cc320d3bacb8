"""Extra cost per window of the noise floor: ``forward`` against ``forward_with_noise_floor`` (what the agent calls).

    .venv/bin/python benchmarks/bench_noise_floor.py                       # shipped models, batch 32 and 1
    .venv/bin/python benchmarks/bench_noise_floor.py --batch 32 --repeats 300

For each shipped file (float32 and int8, vibration and audio), the three calls ``forward``,
``forward_with_noise_floor`` and ``noise_floor`` alone take turns inside one loop on the same random
windows (in turn first and last), so load from other processes hits them alike. Each repeat gives the ratio
``forward_with_noise_floor`` time / ``forward`` time; the table shows the median ms per window and the
median of those per-repeat ratios with their 10th-90th percentile. One thread, like the agent's
inference worker. Prints the CPU model and its SIMD flags (bench_inference.py's caveat: int8 speed
depends on VNNI/AMX).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_indicators import cpu_description, versions
from edge_agent.modelfile import load_model

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
FILES = ("drsn_cw_cwru_float.pt", "drsn_cw_cwru.pt", "drsn_cw_bldc_audio_float.pt", "drsn_cw_bldc_audio.pt")


def time_methods(module: torch.jit.ScriptModule, inputs: torch.Tensor, repeats: int) -> dict[str, list[float]]:
    calls = {
        "forward": module.forward,
        "forward_with_noise_floor": module.forward_with_noise_floor,
        "noise_floor": module.noise_floor,
    }
    samples: dict[str, list[float]] = {name: [] for name in calls}
    with torch.inference_mode():
        for _ in range(5):
            for call in calls.values():
                call(inputs)
        names = list(calls)
        for repeat in range(repeats):
            for name in names if repeat % 2 else reversed(names):  # no method always runs first (warm caches)
                started = time.perf_counter()
                calls[name](inputs)
                samples[name].append(time.perf_counter() - started)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, action="append", help="batch sizes (default: 32 and 1)")
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per method (default: 200)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning)
    print(f"CPU: {cpu_description()}\n{versions()}, one thread\n")
    print("| model | batch | forward ms/window | with noise floor ms/window | extra (median ratio, p10-p90) "
          "| noise_floor alone ms/window |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name in FILES:
        loaded = load_model(REPO / "models" / name)
        for batch in args.batch or [32, 1]:
            inputs = torch.randn(batch, loaded.channels, loaded.window_samples)
            samples = time_methods(loaded.module, inputs, args.repeats)
            ratios = sorted(b / f for f, b in zip(samples["forward"], samples["forward_with_noise_floor"], strict=True))
            low, high = ratios[len(ratios) // 10], ratios[(9 * len(ratios)) // 10]
            per_window = {key: 1e3 * statistics.median(values) / batch for key, values in samples.items()}
            print(
                f"| {name} | {batch} | {per_window['forward']:.3f} | {per_window['forward_with_noise_floor']:.3f} | "
                f"{100 * (statistics.median(ratios) - 1):+.1f} % ({100 * (low - 1):+.1f} to {100 * (high - 1):+.1f}) | "
                f"{per_window['noise_floor']:.3f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    raise SystemExit(main())
