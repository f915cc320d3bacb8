"""What stacking a batch's windows costs: ``np.zeros`` (the agent until 2026-12-02) against ``batch_inputs``.

    .venv/bin/python benchmarks/bench_batch_inputs.py                     # jemalloc, tuned and default glibc
    .venv/bin/python benchmarks/bench_batch_inputs.py --allocator jemalloc --batch 32 --rounds 5

``InferenceWorker`` stacks the windows of every batch into one array (32 CWRU windows: 256 KiB). The old
``np.zeros`` asked the allocator for zeroed memory; jemalloc (the unit's allocator) answers a ``calloc`` that
large with fresh pages, so every batch page-faulted them in again. ``batch_inputs`` takes ``np.empty`` and
zeroes only the padding rows. Each allocator setting runs in its own subprocess (the settings of
``bench_inference.py --allocator``), both ways alternating in it, one thread pinned to ``--cpu``; per way the
median thread CPU time per batch and the minor page faults per batch (``getrusage(RUSAGE_THREAD)``), and the
ratio new / old.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inference import allocator_env
from cpuinfo import cpu_description, pin_to

CHANNELS, WINDOW_SAMPLES, MAX_BATCH = 1, 2048, 32


def old_way(batch: list[Any], max_batch: int) -> np.ndarray:
    """``batch_inputs`` as it was (np.zeros), to the tensor."""
    from edge_agent.pipeline.inference import padded_rows

    first = batch[0].window.samples
    stacked = np.zeros((padded_rows(len(batch), max_batch), *first.shape), dtype=first.dtype)
    np.stack([item.window.samples for item in batch], out=stacked[: len(batch)])
    return torch.from_numpy(stacked)


def measure(batch: int, calls: int, rounds: int) -> dict[str, dict[str, float]]:
    """Per way: median thread CPU us per batch over ``rounds`` (ways alternating), page faults per batch."""
    from edge_agent.common.allocator import allocator
    from edge_agent.pipeline.inference import batch_inputs
    from edge_agent.pipeline.window_queue import QueuedWindow
    from edge_agent.types import Window

    rng = np.random.default_rng(0)
    samples = [rng.random((CHANNELS, WINDOW_SAMPLES), dtype=np.float32) for _ in range(batch)]
    queued = [QueuedWindow("m", Window(f"s{i}", 0.0, 1.0, s)) for i, s in enumerate(samples)]
    ways: dict[str, Callable[[], object]] = {
        "np.zeros (old)": lambda: old_way(queued, MAX_BATCH),
        "batch_inputs": lambda: batch_inputs(queued, MAX_BATCH),
    }
    took: dict[str, list[float]] = {name: [] for name in ways}
    faults: dict[str, list[float]] = {name: [] for name in ways}
    for way in ways.values():  # warm
        for _ in range(50):
            way()
    for _ in range(rounds):
        for name, way in ways.items():
            before, started = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt, time.thread_time()
            for _ in range(calls):
                way()
            took[name].append((time.thread_time() - started) / calls)
            faults[name].append((resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before) / calls)
    return {
        name: {"us": 1e6 * statistics.median(took[name]), "faults": statistics.median(faults[name])} for name in ways
    } | {"allocator": {"ran": allocator()}}  # type: ignore[dict-item]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--allocator", action="append", help="jemalloc, tuned, default or NAME=VALUE,... (repeatable)")
    p.add_argument("--batch", type=int, action="append", help="windows per batch (repeatable; default 8 and 32)")
    p.add_argument("--calls", type=int, default=500, help="batches per round and way")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--cpu", type=int, default=1, help="core to pin to (-1: none)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    batches = args.batch or [8, 32]
    pin_to(args.cpu)
    if args.child:
        print(json.dumps({b: measure(b, args.calls, args.rounds) for b in batches}))
        return 0
    print(f"CPU: {cpu_description()}; one thread on core {args.cpu}")
    print("| allocator (ran) | windows | np.zeros (old): us / faults per batch | batch_inputs | new / old CPU |")
    print("|---|---:|---|---|---:|")
    for setting in args.allocator or ["jemalloc", "tuned", "default"]:
        command = [sys.executable, __file__, "--child", "--calls", str(args.calls), "--rounds", str(args.rounds)]
        command += ["--cpu", str(args.cpu), *(f"--batch={b}" for b in batches)]
        done = subprocess.run(command, env=allocator_env(setting), capture_output=True, text=True, check=True)
        for batch, r in json.loads(done.stdout).items():
            old, new = r["np.zeros (old)"], r["batch_inputs"]
            print(
                f"| {setting} ({r['allocator']['ran']}) | {batch} | {old['us']:.1f} / {old['faults']:.1f} "
                f"| {new['us']:.1f} / {new['faults']:.1f} | {new['us'] / old['us']:.2f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
