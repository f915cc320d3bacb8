"""The noise-floor gauge in an agent run: the model's own noise estimate, higher for a sensor whose signal
carries added noise (two replay sources, the shipped model; NaN before the first window: tests/unit/test_router.py)."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np

from edge_agent.common.paths import data_root
from edge_agent.configload import parse_config
from edge_agent.metrics import AgentMetrics
from edge_agent.service.app import App

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "drsn_cw_cwru.pt"


def _source(name: str, path: Path) -> dict[str, object]:
    return {
        "type": "replay",
        "name": name,
        "sensor": name,
        "path": str(path),
        "sample_rate_hz": 12000.0,
        "speed": 0.0,
        "models": ["bearing"],
    }


def test_noise_floor_gauge_rises_for_the_noisy_sensor(tmp_path: Path) -> None:
    with np.load(data_root() / "cwru" / "cwru_12k_de_dev.npz") as pack:
        signal = np.asarray(pack["097"], dtype=np.float32).reshape(-1)  # the normal record
    tail = signal[round(0.8 * signal.size) :]  # the last fifth: the time-held-out test part
    noise = np.random.default_rng(0).standard_normal(tail.size).astype(np.float32)
    noisy = tail + noise * float(np.sqrt(np.mean(tail**2))) * 10 ** (20 / 20)  # -20 dB SNR
    np.save(tmp_path / "clean.npy", tail)
    np.save(tmp_path / "noisy.npy", noisy)
    data = {
        "agent": {"id": "test-agent"},
        "metrics": {"enabled": False},
        "decision": {"hold_off_s": 0.5, "cooldown_s": 0.0},
        "models": [{"name": "bearing", "path": str(MODEL)}],
        "sources": [_source("clean", tmp_path / "clean.npy"), _source("noisy", tmp_path / "noisy.npy")],
    }
    metrics = AgentMetrics()
    app = App(parse_config(data, base_dir=REPO), metrics=metrics)
    timer = threading.Timer(60.0, app.stop_requested.set)
    timer.start()
    try:
        assert app.run() == 0
    finally:
        timer.cancel()
    floors = {
        sensor: metrics.registry.get_sample_value("edge_agent_noise_floor", {"sensor": sensor, "model": "bearing"})
        for sensor in ("clean", "noisy")
    }
    assert floors["clean"] is not None and floors["noisy"] is not None
    assert math.isfinite(floors["clean"]) and floors["clean"] > 0
    # the normal record's floor moves little at -10 dB (+12 %; docs/results/noise_floor.md), clearly at -20 dB
    assert floors["noisy"] > 1.3 * floors["clean"], floors
