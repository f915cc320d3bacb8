"""Cost per window of an anomaly model in the agent: batch 32, one thread.

    .venv/bin/python benchmarks/bench_anomaly.py                                # learns a baseline first
    .venv/bin/python benchmarks/bench_anomaly.py --model models/pump-baseline.pt --batch 32 --batch 1

Without ``--model`` it learns one with ``edge-agent learn`` from a generated 12 kHz tone (window
2048, the defaults otherwise; weights do not change the timing). Two numbers per file and batch, medians
in milliseconds per window: the TorchScript call alone, and the inference worker's whole batch
(stacking the windows, the call, one scored Prediction per window handed to a no-op consumer).
Prints the CPU first (benchmarks/cpuinfo.py): numbers compare only within one CPU class.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
import torch
from cpuinfo import cpu_description

from edge_agent.cli import main as edge_agent
from edge_agent.config import InferenceSection
from edge_agent.metrics import AgentMetrics
from edge_agent.modelfile import load_runtime_model
from edge_agent.pipeline.inference import InferenceWorker, QueuedWindow
from edge_agent.types import Window

RATE_HZ = 12_000


def learned_baseline(folder: Path, window_samples: int) -> Path:
    t = np.arange(60 * RATE_HZ) / RATE_HZ
    rng = np.random.default_rng(0)
    x = 0.3 * np.sin(2 * np.pi * 157 * t) + 0.1 * np.sin(2 * np.pi * 471 * t) + 0.01 * rng.standard_normal(t.size)
    wav = folder / "healthy.wav"
    with wave.open(str(wav), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(RATE_HZ)
        handle.writeframes(np.round(x * 32767).astype("<i2").tobytes())
    out = folder / "baseline.pt"
    args = ["learn", "--out", str(out), "--window-samples", str(window_samples), "--steps", "200", "--quiet"]
    if edge_agent([*args, str(wav)]) != 0:
        raise SystemExit("edge-agent learn failed")
    return out


def per_window_ms(path: Path, batch: int, repeats: int) -> tuple[float, float]:
    loaded = load_runtime_model(path, key="--model")
    worker = InferenceWorker({"m": loaded}, InferenceSection(threads=1), AgentMetrics(), lambda _p: None)
    rng = np.random.default_rng(1)
    shape = (loaded.channels, loaded.window_samples)
    windows = [Window("s", 0.0, 1.0, rng.standard_normal(shape).astype(np.float32)) for _ in range(batch)]
    queued = [QueuedWindow("m", w) for w in windows]
    inputs = torch.from_numpy(np.stack([w.samples for w in windows]))
    call, whole = [], []
    with torch.inference_mode():
        for _ in range(10):
            loaded.module(inputs)
        for _ in range(repeats):
            started = time.perf_counter()
            loaded.module(inputs)
            call.append(time.perf_counter() - started)
            started = time.perf_counter()
            worker._process(queued)  # the worker's own batch path, on this thread
            whole.append(time.perf_counter() - started)
    return 1000 * statistics.median(call) / batch, 1000 * statistics.median(whole) / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", type=Path, help="anomaly model file (repeatable)")
    parser.add_argument("--batch", action="append", type=int, help="batch size (repeatable; default 32)")
    parser.add_argument("--window-samples", type=int, default=2048, help="window of the learned baseline")
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(cpu_description())
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as folder:
        models = args.model or [learned_baseline(Path(folder), args.window_samples)]
        print("| model | network / front-end | precision | batch | call ms/window | worker ms/window |")
        print("|---|---|---|---|---|---|")
        for path in models:
            meta = load_runtime_model(path, key="--model").meta
            document = meta.document
            network = f"{document.get('network', {}).get('name')} / {document.get('frontend', {}).get('kind')}"
            for batch in args.batch or [32]:
                call, whole = per_window_ms(path, batch, args.repeats)
                print(f"| {path.name} | {network} | {meta.precision} | {batch} | {call:.4f} | {whole:.4f} |")


if __name__ == "__main__":
    main()
