"""Per-label prediction series across a reload that changes a model's labels."""

from __future__ import annotations

import numpy as np

from edge_agent.metrics import AgentMetrics
from edge_agent.pipeline.prediction_series import PredictionSeries
from edge_agent.types import Prediction, Window

WINDOW = Window(sensor="pump-1", t_start=0.0, t_end=1.0, samples=np.zeros((1, 8), np.float32))


def prediction(probabilities: dict[str, float], sha256: str) -> Prediction:
    label = max(probabilities, key=probabilities.__getitem__)
    return Prediction(
        sensor="pump-1",
        model="bearing",
        window=WINDOW,
        probabilities=probabilities,
        label=label,
        confidence=probabilities[label],
        model_sha256=sha256,
    )


def value(metrics: AgentMetrics, name: str, label: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"sensor": "pump-1", "model": "bearing", "label": label})


def test_a_new_file_with_a_new_label_is_counted_even_after_the_old_file_filled_the_cache() -> None:
    metrics = AgentMetrics()
    series = PredictionSeries(metrics)
    series.record(prediction({"normal": 0.9, "outer": 0.1}, "old"))
    series.record(prediction({"normal": 0.1, "outer": 0.1, "inner": 0.8}, "new"))  # raised KeyError before
    series.record(prediction({"normal": 0.7, "outer": 0.3}, "old"))  # a batch still on the old file
    assert value(metrics, "edge_agent_predictions_total", "inner") == 1.0
    assert value(metrics, "edge_agent_predictions_total", "normal") == 2.0
    assert value(metrics, "edge_agent_class_probability", "inner") == 0.8


def test_retire_removes_the_series_of_labels_the_new_file_lacks() -> None:
    metrics = AgentMetrics()
    series = PredictionSeries(metrics)
    series.record(prediction({"normal": 0.2, "outer": 0.8}, "old"))
    assert series.sensors("bearing") == {"pump-1"} and series.sensors("other") == set()
    series.retire("bearing", {"pump-1", "never-seen"}, {"outer"})
    assert value(metrics, "edge_agent_class_probability", "outer") is None
    assert value(metrics, "edge_agent_predictions_total", "outer") is None
    assert value(metrics, "edge_agent_class_probability", "normal") == 0.2
    assert series.sensors("bearing") == set()
