"""Where the agent computes the vibration indicators: what each placement costs per window.

    .venv/bin/python benchmarks/bench_indicator_placement.py      # ~10 s; prints the CPU model

The same work as ``IndicatorStage._compute`` (indicators of a stack of windows, then the gauges of one
sensor set from its newest window), with the shipped demo's settings (Hann, 10-1000 Hz velocity,
three bands, ISO zone; 2048-sample windows at 12 kHz, one channel), in three placements:

- ``router, per chunk``: one window per call (a 1024-sample chunk with hop 1024 completes one window);
- ``router, per sensor`` (what the agent does): a sensor's windows held until 1 s of signal (12
  windows at hop 1024) or 32, one call, the gauges set once;
- ``worker, per batch``: the inference batch of 32 windows of 32 sensors in one call, then the
  gauges of each of the 32 sensors (the worker's batches mix sensors).

Medians over ``--repeats`` timed rounds of about 400 windows each, one thread, torch not loaded.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge_agent.config.indicators import IndicatorsSection
from edge_agent.metrics import AgentMetrics
from edge_agent.pipeline.indicator_stage import IndicatorStage
from edge_agent.pipeline.indicators import Indicators, compute_indicators
from edge_agent.types import Window

RATE_HZ, WINDOW, HOP = 12_000.0, 2048, 1024
SECTION = IndicatorsSection(unit="g", bands_hz=((10, 1000), (1000, 3000), (3000, 6000)), machine_group=2)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def windows(count: int, sensor: str = "s") -> list[Window]:
    rng = np.random.default_rng(0)
    step_s, length_s = HOP / RATE_HZ, WINDOW / RATE_HZ
    return [
        Window(sensor, i * step_s, i * step_s + length_s, rng.standard_normal((1, WINDOW)).astype(np.float32))
        for i in range(count)
    ]


def per_window_us(run: Callable[[], int], repeats: int) -> float:
    run()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        count = run()
        samples.append((time.perf_counter() - started) / count * 1e6)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds per placement (default 15)")
    args = parser.parse_args(argv)
    metrics = AgentMetrics()
    stage = IndicatorStage(SECTION, RATE_HZ, WINDOW, 1, metrics.vibration)
    sensors = [f"s{i}" for i in range(32)]
    for sensor in sensors:
        stage.init_sensor(sensor)
    chunk = windows(1)
    per_sensor = windows(12)
    mixed = windows(32)

    def router_per_chunk() -> int:
        for _ in range(400):
            stage._compute("s0", chunk)
        return 400

    def router_per_sensor() -> int:
        for index in range(33):
            stage._compute(sensors[index % 32], per_sensor)
        return 33 * 12

    def worker_per_batch() -> int:
        for _ in range(12):
            values = compute_indicators(stage.plan, np.stack([w.samples for w in mixed]))
            for index, sensor in enumerate(sensors):  # each sensor's gauges from its one window
                stage._export(sensor, _row(values, index))
        return 12 * 32

    print(f"CPU: {cpu_model()}; numpy {np.__version__}")
    print("| placement | windows per call | µs per window |")
    print("|---|---:|---:|")
    for name, calls, run in (
        ("router, per chunk", 1, router_per_chunk),
        ("router, per sensor (the agent)", 12, router_per_sensor),
        ("worker, per inference batch (32 sensors)", 32, worker_per_batch),
    ):
        print(f"| {name} | {calls} | {per_window_us(run, args.repeats):.1f} |")
    return 0


def _row(values: Indicators, index: int) -> Indicators:
    """One window of a batch's indicators, shaped as a batch of one (so ``_export`` takes its newest)."""
    return dataclasses.replace(
        values,
        rms_acceleration_m_s2=values.rms_acceleration_m_s2[index : index + 1],
        peak_acceleration_m_s2=values.peak_acceleration_m_s2[index : index + 1],
        crest_factor=values.crest_factor[index : index + 1],
        kurtosis=values.kurtosis[index : index + 1],
        rms_velocity_mm_s=values.rms_velocity_mm_s[index : index + 1],
        band_levels=values.band_levels[index : index + 1],
        zone=values.zone[index : index + 1],
    )


if __name__ == "__main__":
    sys.exit(main())
