"""The sensors' (and sources') metric series: which exist, for which model labels (:class:`SensorSeries`).

The one place that creates a source's and a sensor's series at zero (``init_source``, ``init_sensor``,
``init_sensor_model``; the noise floor of a model that has one at NaN), each once however many sources
name the sensor (edge_agent.pipeline.router calls it for configured, admitted and new sensors).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Mapping

from edge_agent.metrics import ALERT_EVENT_TYPES, SUPPRESS_REASONS, AgentMetrics
from edge_agent.types import ANOMALOUS

logger = logging.getLogger(__name__)


class SensorSeries:
    """Which sensors (and sources) have their series, for which model labels; thread-safe."""

    def __init__(self, metrics: AgentMetrics) -> None:
        self._metrics = metrics
        self._lock = threading.Lock()
        self._sources: set[str] = set()
        self._sensors: dict[str, set[str]] = {}  # sensor -> models whose series it has
        self._labels: dict[str, tuple[str, ...]] = {}  # model -> labels its series were made for
        self._normal: tuple[str, ...] = ()
        self._noise_floor: frozenset[str] = frozenset()  # models whose files have a noise_floor method
        self._thresholds: dict[str, float] = {}  # anomaly model -> its threshold

    def configure(
        self,
        labels: Mapping[str, tuple[str, ...]],
        normal_labels: tuple[str, ...],
        noise_floor_models: Iterable[str] = (),
        anomaly_thresholds: Mapping[str, float] | None = None,
    ) -> None:
        """The models' labels, the normal labels, the models with a noise floor and the anomaly models'
        thresholds (start, reload): known sensors get the series they now lack."""
        with self._lock:
            changed = {model for model, new in labels.items() if self._labels.get(model) != new}
            if normal_labels != self._normal:  # other labels are faults now: their alert series
                changed = set(labels)
            noise_floor = frozenset(noise_floor_models)
            changed |= noise_floor - self._noise_floor
            thresholds = dict(anomaly_thresholds or {})
            changed |= {model for model, value in thresholds.items() if self._thresholds.get(model) != value}
            for sensor, models in self._sensors.items():  # no longer an anomaly model: its series go
                for model in models & (self._thresholds.keys() - thresholds.keys()):
                    self._metrics.anomaly.remove(sensor, model)
            self._labels, self._normal, self._noise_floor = dict(labels), normal_labels, noise_floor
            self._thresholds = thresholds
            for sensor, models in self._sensors.items():
                for model in models & changed:
                    self._init_model(sensor, model)

    def add_source(self, source: str) -> None:
        with self._lock:
            if source not in self._sources:
                self._sources.add(source)
                self._metrics.init_source(source)

    def add(self, sensor: str, models: Iterable[str]) -> tuple[bool, tuple[str, ...]]:
        """Create ``sensor``'s series and those of its ``models``' labels, those it lacks.

        Returns whether the sensor is new and which of ``models`` are new for it.
        """
        with self._lock:
            known = self._sensors.get(sensor)
            new_sensor = known is None
            if known is None:
                known = self._sensors[sensor] = set()
                self._metrics.init_sensor(sensor)
            added = tuple(dict.fromkeys(model for model in models if model not in known))
            for model in added:
                known.add(model)
                self._init_model(sensor, model)
            return new_sensor, added

    def sensors(self, model: str) -> set[str]:
        """Sensors that have ``model``'s series."""
        with self._lock:
            return {sensor for sensor, models in self._sensors.items() if model in models}

    def _init_model(self, sensor: str, model: str) -> None:
        self._metrics.init_sensor_model(sensor, model, self._labels.get(model, ()), self._normal)
        if model in self._noise_floor:  # NaN until its first window: 0 would read as noiseless
            self._metrics.noise_floor.labels(sensor, model).set(math.nan)
        if model in self._thresholds:  # an anomaly model: score NaN, threshold, counters, its alert series
            self._metrics.anomaly.init_sensor_model(sensor, model, self._thresholds[model])
            for event_type in ALERT_EVENT_TYPES:
                self._metrics.alerts.labels(sensor, ANOMALOUS, event_type)
            for reason in SUPPRESS_REASONS:
                self._metrics.alerts_suppressed.labels(sensor, ANOMALOUS, reason)
