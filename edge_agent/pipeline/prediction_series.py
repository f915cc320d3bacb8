"""The per-label prediction series of each sensor's model: counted and set on the hot path, retired on a reload."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from typing import Any

from edge_agent.metrics import AgentMetrics
from edge_agent.types import Prediction


class PredictionSeries:
    """``edge_agent_predictions_total`` and ``edge_agent_class_probability`` children, looked up once.

    Children are cached per (sensor, model name, model file hash) and built from the labels of the
    model that actually made the prediction, so a batch still running on the previous file during
    a reload never meets the new file's labels.
    """

    def __init__(self, metrics: AgentMetrics) -> None:
        self._metrics = metrics
        self._children: dict[tuple[str, str, str], tuple[dict[str, Any], dict[str, Any]]] = {}
        self._scored: set[tuple[str, str]] = set()  # (sensor, anomaly model) with a score so far

    def record(self, prediction: Prediction) -> None:
        if prediction.score is not None:
            self._record_score(prediction)
            return
        key = (prediction.sensor, prediction.model, prediction.model_sha256)
        children = self._children.get(key)
        if children is None:
            sensor, model, m = prediction.sensor, prediction.model, self._metrics
            labels = tuple(prediction.probabilities)
            children = (
                {label: m.predictions.labels(sensor, model, label) for label in labels},
                {label: m.probability.labels(sensor, model, label) for label in labels},
            )
            self._children[key] = children
        counters, gauges = children
        counters[prediction.label].inc()
        for label, p in prediction.probabilities.items():
            gauges[label].set(p)
        if prediction.noise_floor is not None:
            self._metrics.noise_floor.labels(prediction.sensor, prediction.model).set(prediction.noise_floor)

    def _record_score(self, prediction: Prediction) -> None:
        """An anomaly model's window: its score, the score relative to the threshold, anomalous windows."""
        family, sensor, model = self._metrics.anomaly, prediction.sensor, prediction.model
        score = float(prediction.score or 0.0)
        family.score.labels(sensor, model).set(score)
        threshold = prediction.threshold or 0.0
        if not math.isnan(score):  # a NaN would poison the histogram's sum for good
            family.score_ratio.labels(sensor, model).observe(score / threshold if threshold > 0 else math.inf)
        if prediction.anomalous:
            family.anomalous_windows.labels(sensor, model).inc()
        self._scored.add((sensor, model))

    def sensors(self, model: str) -> set[str]:
        """Sensors that have predictions of ``model`` so far."""
        return {sensor for sensor, name, _ in self._children if name == model} | {
            sensor for sensor, name in self._scored if name == model
        }

    def retire(self, model: str, sensors: Iterable[str], labels: Iterable[str], *, noise_floor: bool = False) -> None:
        """Remove ``model``'s series of ``labels`` (gone from its new file), its noise-floor series when
        ``noise_floor`` (the new file has none), and forget its cached children."""
        for sensor in sensors:
            if noise_floor:
                with contextlib.suppress(KeyError):
                    self._metrics.noise_floor.remove(sensor, model)
            for label in labels:
                for family in (self._metrics.predictions, self._metrics.probability):
                    with contextlib.suppress(KeyError):  # never created for this sensor: nothing to remove
                        family.remove(sensor, model, label)
        self._children = {key: value for key, value in self._children.items() if key[1] != model}
