"""Alerts the cooldown holds back are counted (once per hidden episode) and logged (rate-limited per sensor, label)."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pytest

from edge_agent.config import DecisionSection
from edge_agent.metrics import AgentMetrics
from edge_agent.pipeline.decision import DecisionEngine
from edge_agent.types import Prediction, Window

CONFIG = DecisionSection(
    confirm_k=1,
    confirm_n=1,
    min_confidence=0.8,
    hold_off_s=5.0,
    cooldown_s=100.0,
    max_duration_s=3600.0,
    update_min_delta=0.1,
    normal_labels=("Normal",),
)
LOGGER = "edge_agent.pipeline.suppressed"


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def predict(engine: DecisionEngine, clock: Clock, t: float, label: str, sensor: str = "s1") -> list[str]:
    clock.now = t
    window = Window(sensor, t, t + 1.0, np.zeros((1, 4), np.float32))
    events = engine.update(Prediction(sensor, "m", window, {label: 0.9, "Normal": 0.1}, label, 0.9))
    return [f"{e.type} {e.label}" for e in events]


def suppressed(metrics: AgentMetrics, sensor: str = "s1", label: str = "IR") -> float | None:
    labels = {"sensor": sensor, "label": label, "reason": "cooldown"}
    return metrics.registry.get_sample_value("edge_agent_alerts_suppressed_total", labels)


@pytest.fixture
def engine() -> tuple[DecisionEngine, Clock, AgentMetrics]:
    metrics, clock = AgentMetrics(), Clock()
    metrics.init_sensor_model("s1", "m", ("Normal", "IR", "OR"), ("Normal",))
    return DecisionEngine(CONFIG, clock=clock, metrics=metrics), clock, metrics


def test_a_fault_repeated_within_the_cooldown_is_counted_once_per_episode_and_logged(
    engine: tuple[DecisionEngine, Clock, AgentMetrics], caplog: pytest.LogCaptureFixture
) -> None:
    decision, clock, metrics = engine
    assert suppressed(metrics) == 0  # the series exists from the start
    caplog.set_level(logging.INFO, logger=LOGGER)
    assert predict(decision, clock, 0, "IR") == ["new IR"]
    assert predict(decision, clock, 10, "Normal") == ["end IR"]  # ended at 5: cooldown until 105
    for t in (20, 21, 22, 23):  # the fault is back: one hidden episode, many windows
        assert predict(decision, clock, t, "IR") == []
    assert suppressed(metrics) == 1
    lines = [r for r in caplog.records if r.name == LOGGER]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    message = lines[0].getMessage()
    assert "fault IR on sensor s1 confirmed again but not raised" in message
    assert "decision.cooldown_s = 100 s" in message and "another 85.0 s" in message

    assert predict(decision, clock, 40, "IR") == []  # more than hold_off_s later: a second hidden episode
    assert suppressed(metrics) == 2
    assert len([r for r in caplog.records if r.name == LOGGER]) == 1  # logged at most once a minute
    assert predict(decision, clock, 90, "IR") == []  # third episode, a minute after the first line
    assert suppressed(metrics) == 3
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(lines) == 2 and "(1 similar suppressed in the last 60 s)" in lines[1]
    assert predict(decision, clock, 106, "IR") == ["new IR"]  # the cooldown is over
    assert suppressed(metrics) == 3


def test_the_log_is_rate_limited_per_sensor_and_label(
    engine: tuple[DecisionEngine, Clock, AgentMetrics], caplog: pytest.LogCaptureFixture
) -> None:
    decision, clock, metrics = engine
    caplog.set_level(logging.INFO, logger=LOGGER)
    for sensor in ("s1", "s2"):
        predict(decision, clock, 0, "IR", sensor)
        predict(decision, clock, 10, "Normal", sensor)
        predict(decision, clock, 11, "OR", sensor)
        predict(decision, clock, 12, "Normal", sensor)
    for sensor in ("s1", "s2"):
        predict(decision, clock, 30, "IR", sensor)
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(messages) == 2 and {m.split(" on sensor ")[1][:2] for m in messages} == {"s1", "s2"}
    assert suppressed(metrics, "s2") == 1 and suppressed(metrics, "s1", "OR") == 0


def test_a_health_condition_held_within_its_cooldown_is_counted_once(
    engine: tuple[DecisionEngine, Clock, AgentMetrics],
) -> None:
    decision, _, metrics = engine
    assert [e.type for e in decision.health("s1", "silent", True, 0.0)] == ["new"]
    assert [e.type for e in decision.health("s1", "silent", False, 1.0)] == ["end"]
    decision.health("s1", "silent", True, 2.0)
    for step in range(40):  # the supervisor's ticks while it stays silent, within the cooldown
        assert decision.tick(2.25 + step * 0.25) == []
    assert suppressed(metrics, label="silent") == 1


def test_no_cooldown_no_suppression() -> None:
    metrics, clock = AgentMetrics(), Clock()
    decision = DecisionEngine(replace(CONFIG, cooldown_s=0.0), clock=clock, metrics=metrics)
    predict(decision, clock, 0, "IR")
    predict(decision, clock, 10, "Normal")
    assert predict(decision, clock, 11, "IR") == ["new IR"]
    assert suppressed(metrics) is None
