"""``receive = "thread"``: a sensor the router sheds under overload is not held to blame for the jump.

The router's ``shed`` (the inference queue's over-share rule) drops a message unparsed; the sensor's next
accepted chunk then jumps in ``seq`` and arrives at a fraction of the sender's rate. Before, every shed
sensor got ``rate_mismatch`` (with its advice to fix the sensor's rate) and a logged stream gap a minute.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from edge_agent.config import SourceSection, StreamsSection
from edge_agent.metrics import AgentMetrics
from edge_agent.modelfile import read_meta
from edge_agent.pipeline.router import SensorSeries, make_router
from edge_agent.types import Chunk

MODEL = Path(__file__).resolve().parents[2] / "models" / "drsn_cw_cwru.pt"
RATE_HZ = 12_000.0
CHUNK = 1200  # 0.1 s


def problem(metrics: AgentMetrics, sensor: str, reason: str) -> float | None:
    return metrics.registry.get_sample_value("edge_agent_stream_problem", {"sensor": sensor, "reason": reason})


@pytest.mark.parametrize("kept", [1, 2])
def test_a_sensor_shed_in_process_raises_no_stream_problem_and_logs_no_gap(
    caplog: pytest.LogCaptureFixture, kept: int
) -> None:
    """``kept`` of each 4 messages of 0.1 s kept: 1 makes no window (before: ``no_windows`` too), 2 make one."""
    meta = read_meta(MODEL)
    metrics = AgentMetrics()
    metrics.init_pipeline(512, ("log",))
    sensors = SensorSeries(metrics)
    sensors.configure({"bearing": meta.labels}, ("Normal",))
    section = SourceSection(type="mqtt", name="plant", models=("bearing",), sample_rate_hz=RATE_HZ)
    windows: list[object] = []
    shedding = {"on": False}
    router = make_router(
        section,
        {"bearing": meta},
        {"bearing": None},
        metrics=metrics,
        sensors=sensors,
        submit=lambda _model, window: windows.append(window),
        announce=lambda *_args: None,
        streams=StreamsSection(rate_interval_s=10.0),
        shed=lambda _sensor: shedding["on"],
    )
    monotonic = 100.0
    with caplog.at_level(logging.INFO, "edge_agent.pipeline.supervision"):
        for i in range(400):  # 40 s of a 12 kHz sensor under 2-4x overload
            monotonic += CHUNK / RATE_HZ
            shedding["on"] = i % 4 >= kept
            if router.shed("pump-1"):
                continue
            samples = np.zeros((1, CHUNK), np.float32)  # t0 from the arrival time: no clock check
            router(Chunk("pump-1", 1_780_000_000.0 + i * 0.1, RATE_HZ, samples, i, monotonic, True))
    assert len(windows) == (0 if kept == 1 else 100)  # each pair of kept messages makes a window
    assert [r for r in ("rate_mismatch", "no_windows") if problem(metrics, "pump-1", r)] == []
    assert "stream gap" not in caplog.text and "stream problem" not in caplog.text, caplog.text
    assert "samples arrive at" not in caplog.text and "without a window" not in caplog.text
    gaps = metrics.registry.get_sample_value("edge_agent_stream_gaps_total", {"sensor": "pump-1"})
    assert gaps == 99  # still counted: each kept run after shed messages restarted the stream
