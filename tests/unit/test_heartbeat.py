"""The periodic heartbeat line (edge_agent.service.heartbeat) with a fake clock."""

from __future__ import annotations

import logging

import pytest

from edge_agent.metrics import AgentMetrics
from edge_agent.service.heartbeat import Heartbeat


class Clock:
    def __init__(self) -> None:
        self.now_s = 50.0

    def __call__(self) -> float:
        return self.now_s


def test_a_line_every_interval_with_sensors_windows_per_second_alerts_and_problems(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics, clock = AgentMetrics(), Clock()
    for sensor in ("pump-1", "pump-2"):
        metrics.init_sensor(sensor)
    heartbeat = Heartbeat(metrics.registry, 60.0, clock)
    metrics.windows_processed.labels("bearing").inc(120)
    metrics.alert_active.labels("pump-1", "fault").set(1)
    metrics.streams.problem.labels("pump-2", "ts_unit").set(1)
    with caplog.at_level(logging.INFO, "edge_agent.service.heartbeat"):
        clock.now_s += 59.0
        assert not heartbeat.poll()
        clock.now_s += 1.0
        assert heartbeat.poll()
        clock.now_s += 30.0
        assert not heartbeat.poll()
    assert [r.getMessage() for r in caplog.records] == [
        "heartbeat: 2 sensors, 2.0 windows/s, 1 open alert, 1 stream problem (pump-2: ts_unit)"
    ]


def test_zero_turns_it_off() -> None:
    clock = Clock()
    heartbeat = Heartbeat(AgentMetrics().registry, 0.0, clock)
    clock.now_s += 1e6
    assert not heartbeat.poll()
