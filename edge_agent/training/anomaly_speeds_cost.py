"""The unseen-speed page's cost table: time per window of each candidate's scripted detector, in one run."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import numpy as np
import torch

from edge_agent.training.anomaly_train import AnomalyConfig, build_detector
from edge_agent.training.audio_data import SAMPLE_RATE_HZ

logger = logging.getLogger(__name__)


def costs_ms_per_window(
    configs: Mapping[str, AnomalyConfig], batch: int = 32, repeats: int = 30
) -> dict[str, dict[str, float]]:
    """Time per window of each detector (name -> config) scripted, at ``batch`` on one thread (front-end
    included): the detectors take turns, ``repeats`` rounds, so that load from other jobs falls on all of them
    alike; ``min`` (the least disturbed) and ``median`` per detector."""
    modules = {n: torch.jit.script(build_detector(c, 1, float(SAMPLE_RATE_HZ)).eval()) for n, c in configs.items()}
    inputs = {n: torch.randn(batch, 1, c.window_samples) for n, c in configs.items()}
    times: dict[str, list[float]] = {name: [] for name in modules}
    with torch.inference_mode():
        for name, module in modules.items():
            module(inputs[name])
        for _ in range(repeats):
            for name, module in modules.items():
                started = time.perf_counter()
                module(inputs[name])
                times[name].append((time.perf_counter() - started) / batch * 1e3)
    return {name: {"min": float(np.min(t)), "median": float(np.median(t))} for name, t in times.items()}
