"""The agent with ``[sources.indicators]`` on a replayed sine of known amplitude and frequency.

A sine of amplitude A (in g) at f Hz has the RMS velocity ``A * 9.80665 / (2 pi f) / sqrt(2) * 1000``
mm/s, RMS ``A * 9.80665 / sqrt(2)`` m/s², crest factor sqrt(2) and kurtosis 1.5; the gauges must read
them. 0.5 g at 160 Hz is 3.45 mm/s: zone C for a medium machine on a rigid foundation (ISO 10816-3
group 2: 1.4 / 2.8 / 4.5 mm/s), so ``alarm_zone = "C"`` raises a ``vibration_zone`` health alert,
and a quiet tail (0.05 g, 0.34 mm/s, zone A) ends it.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import threading
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import free_port

from edge_agent.configload import parse_config
from edge_agent.metrics import AgentMetrics
from edge_agent.service.app import App

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "drsn_cw_cwru.pt"
RATE_HZ = 12_000
TONE_HZ = 160.0  # 27 periods per 2048-sample window: the Hann taper reads < 0.1 % high
G = 9.80665


def sine(amplitude_g: float, seconds: float, phase_s: float = 0.0) -> np.ndarray:
    t = phase_s + np.arange(round(seconds * RATE_HZ)) / RATE_HZ
    return (amplitude_g * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)


def velocity_mm_s(amplitude_g: float) -> float:
    return amplitude_g * G / (2 * np.pi * TONE_HZ) / math.sqrt(2) * 1000


def config(path: Path, *, speed: float, port: int, **indicators: Any) -> dict[str, Any]:
    return {
        "agent": {"id": "test-agent"},
        "metrics": {"enabled": True, "listen": "127.0.0.1", "port": port},
        "decision": {"cooldown_s": 0.0},
        "models": [{"name": "bearing", "path": str(MODEL)}],
        "sources": [
            {
                "type": "replay",
                "name": "replay",
                "sensor": "fan-1",
                "path": str(path),
                "sample_rate_hz": float(RATE_HZ),
                "speed": speed,
                "models": ["bearing"],
                "indicators": {"unit": "g", "machine_group": 2, "bands_hz": [[100, 200], [1000, 3000]], **indicators},
            }
        ],
    }


def run(app: App) -> None:
    timer = threading.Timer(60.0, app.stop_requested.set)  # bound the test even if the run never ends
    timer.start()
    try:
        assert app.run() == 0
    finally:
        timer.cancel()


def value(metrics: AgentMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_gauges_read_the_analytic_values_of_a_sine(tmp_path: Path) -> None:
    path = tmp_path / "sine.npy"
    np.save(path, sine(0.5, 3.0))
    port = free_port()
    metrics = AgentMetrics()
    app = App(parse_config(config(path, speed=0.0, port=port), base_dir=tmp_path), metrics=metrics)
    run(app)
    one = {"sensor": "fan-1", "channel": ""}
    expected = velocity_mm_s(0.5)
    assert expected == pytest.approx(3.449, abs=1e-3)
    velocity_m_s = value(metrics, "edge_agent_vibration_velocity_rms_meters_per_second", **one)
    assert velocity_m_s is not None and 1000 * velocity_m_s == pytest.approx(expected, rel=0.01)  # base unit m/s
    assert value(metrics, "edge_agent_vibration_iso_zone", sensor="fan-1") == 2  # C
    assert value(metrics, "edge_agent_vibration_acceleration_rms_meters_per_second_squared", **one) == pytest.approx(
        0.5 * G / math.sqrt(2), rel=0.01
    )
    assert value(metrics, "edge_agent_vibration_acceleration_peak_meters_per_second_squared", **one) == pytest.approx(
        0.5 * G, rel=0.01
    )
    assert value(metrics, "edge_agent_vibration_crest_factor", **one) == pytest.approx(math.sqrt(2), rel=0.01)
    assert value(metrics, "edge_agent_vibration_kurtosis", **one) == pytest.approx(1.5, rel=0.02)
    in_band = value(
        metrics, "edge_agent_vibration_band_acceleration_rms_meters_per_second_squared", **one, band="100-200Hz"
    )
    assert in_band == pytest.approx(0.5 * G / math.sqrt(2), rel=0.01)
    assert (
        value(
            metrics, "edge_agent_vibration_band_acceleration_rms_meters_per_second_squared", **one, band="1000-3000Hz"
        )
        < 0.01
    )
    windows = value(metrics, "edge_agent_vibration_windows_total", sensor="fan-1")
    processed = value(metrics, "edge_agent_windows_processed_total", model="bearing")
    assert windows is not None and processed is not None and 0 < windows <= processed


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is installed by `make test`")
def test_series_are_served_and_pass_promtool(tmp_path: Path) -> None:
    path = tmp_path / "sine.npy"
    np.save(path, sine(0.5, 60.0))
    port = free_port()
    app = App(parse_config(config(path, speed=1.0, port=port), base_dir=tmp_path), metrics=AgentMetrics())
    runner = threading.Thread(target=app.run, name="agent")
    runner.start()
    try:
        text = ""
        for _ in range(100):
            threading.Event().wait(0.1)
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
            except OSError:
                continue
            if 'edge_agent_vibration_iso_zone{sensor="fan-1"} 2.0' in text:
                break
        assert 'edge_agent_vibration_iso_zone{sensor="fan-1"} 2.0' in text
        assert 'edge_agent_vibration_velocity_rms_meters_per_second{channel="",sensor="fan-1"} 0.0034' in text
        lint = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
        assert lint.returncode == 0, lint.stdout.decode() + lint.stderr.decode()
    finally:
        app.stop_requested.set()
        runner.join(timeout=30)


def test_zone_alarm_raises_a_health_alert_and_ends_it(tmp_path: Path) -> None:
    path = tmp_path / "loud_then_quiet.npy"
    np.save(path, np.concatenate([sine(0.5, 4.0), sine(0.05, 4.0, phase_s=4.0)]))
    lines: list[str] = []
    metrics = AgentMetrics()
    settings = config(path, speed=4.0, port=free_port(), alarm_zone="C")
    app = App(parse_config(settings, base_dir=tmp_path), metrics=metrics, echo=lines.append)
    run(app)
    zone = [line for line in lines if "vibration_zone" in line]
    assert [line.split()[:2] for line in zone] == [["NEW", "health"], ["END", "health"]], lines
    assert "fan-1" in zone[0]
    assert value(metrics, "edge_agent_alerts_total", sensor="fan-1", label="vibration_zone", type="new") == 1
    assert value(metrics, "edge_agent_alert_active", sensor="fan-1", kind="health") == 0
    assert value(metrics, "edge_agent_vibration_iso_zone", sensor="fan-1") == 0  # the quiet tail: zone A


def test_no_alarm_below_the_alarm_zone(tmp_path: Path) -> None:
    path = tmp_path / "loud.npy"
    np.save(path, sine(0.5, 3.0))  # zone C
    lines: list[str] = []
    settings = config(path, speed=4.0, port=free_port(), alarm_zone="D")
    run(App(parse_config(settings, base_dir=tmp_path), metrics=AgentMetrics(), echo=lines.append))
    assert not [line for line in lines if "vibration_zone" in line], lines
