"""The anomaly models' metrics (``kind = "anomaly"``), registered by :class:`~edge_agent.metrics.AgentMetrics`.

Labelled by admitted sensor ids and configured model names only, so the series stay bounded. A
sensor's series are created by :mod:`edge_agent.pipeline.router` (score NaN until its first window,
the threshold from the model's meta); :mod:`edge_agent.pipeline.prediction_series` sets them per window.

The histogram observes the score *relative to the threshold* (``score / threshold``): scores of two
models (or of one model re-learned) are on different scales, the ratio is not, so one set of buckets
serves every model and ``> 1`` always means anomalous.
"""

from __future__ import annotations

import contextlib
import math

from prometheus_client import CollectorRegistry, Histogram

from edge_agent.metrics.series import CounterFamily, GaugeFamily

SCORE_RATIO_BUCKETS = (0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)


class AnomalyMetrics:
    """Score (gauge, and a histogram relative to the threshold), threshold and anomalous windows per sensor."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["sensor", "model"]
        self.score = GaugeFamily(
            "edge_agent_anomaly_score",
            "The anomaly model's score of the sensor's latest window (higher: more anomalous; NaN before one).",
            labels,
            registry=registry,
        )
        self.score_ratio = Histogram(
            "edge_agent_anomaly_score_ratio",
            "Anomaly scores of the sensor's windows divided by the model's threshold (> 1: anomalous).",
            labels,
            buckets=SCORE_RATIO_BUCKETS,
            registry=registry,
        )
        self.threshold = GaugeFamily(
            "edge_agent_anomaly_threshold",
            "The anomaly model's threshold (meta.json threshold): a window scoring above it is anomalous.",
            labels,
            registry=registry,
        )
        self.anomalous_windows = CounterFamily(
            "edge_agent_anomalous_windows_total",
            "Windows of the sensor whose anomaly score exceeded the model's threshold.",
            labels,
            registry=registry,
        )

    def init_sensor_model(self, sensor: str, model: str, threshold: float) -> None:
        """Create a sensor's series of an anomaly model: score NaN (none yet), the threshold, counters at 0."""
        self.score.labels(sensor, model).set(math.nan)
        self.score_ratio.labels(sensor, model)
        self.threshold.labels(sensor, model).set(threshold)
        self.anomalous_windows.labels(sensor, model)

    def remove(self, sensor: str, model: str) -> None:
        """Forget a sensor's series of a model that is no longer an anomaly model (a reload)."""
        for family in (self.score, self.score_ratio, self.threshold, self.anomalous_windows):
            with contextlib.suppress(KeyError):  # never created for this sensor
                family.remove(sensor, model)
