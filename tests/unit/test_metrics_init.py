"""Series the dashboard and the alert rules need: pre-initialised at start, counted where they happen."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.metrics import AgentMetrics
from edge_agent.pipeline.fanout import SinkFanout
from edge_agent.pipeline.windowing import WindowAssembler
from edge_agent.types import AlertEvent, Chunk


def value(metrics: AgentMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_a_sensors_model_labels_exist_at_zero_and_alerts_only_for_fault_labels() -> None:
    metrics = AgentMetrics()
    metrics.init_sensor_model("pump-1", "bearing", ("Normal", "IR007", "B007"), ("Normal", "healthy"))
    for label in ("Normal", "IR007", "B007"):
        assert value(metrics, "edge_agent_predictions_total", sensor="pump-1", model="bearing", label=label) == 0
    for label in ("IR007", "B007"):
        for event_type in ("new", "update", "end"):
            assert value(metrics, "edge_agent_alerts_total", sensor="pump-1", label=label, type=event_type) == 0
    assert value(metrics, "edge_agent_alerts_total", sensor="pump-1", label="Normal", type="new") is None


def test_pipeline_series_exist_at_start() -> None:
    metrics = AgentMetrics()
    assert value(metrics, "edge_agent_windows_dropped_total", reason="queue_full") is None
    metrics.init_pipeline(512, ("log", "mqtt"))
    assert value(metrics, "edge_agent_inference_queue_capacity_windows") == 512
    assert value(metrics, "edge_agent_windows_dropped_total", reason="queue_full") == 0
    assert value(metrics, "edge_agent_windows_dropped_total", reason="consumer_error") == 0
    assert value(metrics, "edge_agent_sink_errors_total", sink="mqtt") == 0


def test_signal_seconds_count_samples_over_their_rate() -> None:
    metrics = AgentMetrics()
    metrics.init_sensor("s1")
    assert value(metrics, "edge_agent_signal_seconds_total", sensor="s1") == 0
    assembler = WindowAssembler(256, 128, 12_000.0, 1, metrics=metrics)
    assembler.push(Chunk("s1", 100.0, 12_000.0, np.zeros((1, 1200), np.float32), seq=0))
    assembler.push(Chunk("s1", 100.1, 12_000.0, np.zeros((1, 600), np.float32), seq=1))
    assert value(metrics, "edge_agent_signal_seconds_total", sensor="s1") == pytest.approx(0.15)


class BrokenSink:
    name = "broken"

    def send(self, event: AlertEvent) -> None:
        raise RuntimeError("sink bug")


class CollectingSink:
    name = "collecting"

    def __init__(self) -> None:
        self.events: list[AlertEvent] = []

    def send(self, event: AlertEvent) -> None:
        self.events.append(event)


def test_a_failing_sink_is_counted_and_does_not_stop_the_others() -> None:
    metrics = AgentMetrics()
    collecting = CollectingSink()
    fanout = SinkFanout(metrics, [BrokenSink(), collecting])  # the sink fan-out left App (edge_agent.pipeline)
    event = AlertEvent("new", "a1", "pump-1", "fault", "IR007", 0.9, 1.0, 1.0, 1.1)
    fanout.send([event, event])
    assert value(metrics, "edge_agent_sink_errors_total", sink="broken") == 2
    assert collecting.events == [event, event]
