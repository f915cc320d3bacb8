"""Chunks -> windows of each model of their source, sensor discovery, and the sensors' metric series.

:class:`SensorSeries` is the one place that creates a source's and a sensor's series at zero
(``init_source``, ``init_sensor``, ``init_sensor_model``; the noise floor of a model that has one at
NaN), each once however many sources name the sensor: configured sensors at start (so a sensor
whose payloads are all rejected still has its series), a sensor a wildcard topic finds with its
first chunk, and the per-label series again when a reload changes a model's labels or the normal
labels.

:func:`make_router` builds the ``emit`` callback of one source (it runs on the source's thread).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping

from edge_agent.config import SourceSection
from edge_agent.metrics import AgentMetrics
from edge_agent.modelmeta import ModelMeta
from edge_agent.pipeline.windowing import WindowAssembler
from edge_agent.types import Chunk, Window

logger = logging.getLogger(__name__)

Submit = Callable[[str, Window], None]  # (model name, window) -> the inference queue
Announce = Callable[[str, tuple[str, ...], bool], None]  # (sensor, models found live, new sensor) -> the sinks


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

    def configure(
        self,
        labels: Mapping[str, tuple[str, ...]],
        normal_labels: tuple[str, ...],
        noise_floor_models: Iterable[str] = (),
    ) -> None:
        """The models' labels, the normal labels and the models with a noise floor (start, reload): known
        sensors get the series they now lack."""
        with self._lock:
            changed = {model for model, new in labels.items() if self._labels.get(model) != new}
            if normal_labels != self._normal:  # other labels are faults now: their alert series
                changed = set(labels)
            noise_floor = frozenset(noise_floor_models)
            changed |= noise_floor - self._noise_floor
            self._labels, self._normal, self._noise_floor = dict(labels), normal_labels, noise_floor
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


def make_router(
    section: SourceSection,
    metas: Mapping[str, ModelMeta],
    hop_samples: Mapping[str, int | None],
    *,
    metrics: AgentMetrics,
    sensors: SensorSeries,
    submit: Submit,
    announce: Announce,
) -> Callable[[Chunk], None]:
    """The ``emit`` of ``section``'s source: chunk -> windows for each of its models -> ``submit``.

    ``hop_samples`` overrides a model's meta hop (``[[models]] hop_samples``; None: the meta's).
    Configured sensors get their series and are announced now; a new sensor with its first chunk.
    """
    assemblers = {}
    for index, name in enumerate(section.models):
        meta = metas[name]
        hop = hop_samples.get(name) or meta.hop_samples
        # per-sensor sample and gap counts come from the first model's assembler only
        counted = metrics if index == 0 else None
        assemblers[name] = WindowAssembler(
            meta.window_samples, hop, meta.sample_rate_hz, meta.channels, metrics=counted
        )
    sensors.add_source(section.name)
    known = set(section.known_sensors)
    for sensor in section.known_sensors:
        new_sensor, _ = sensors.add(sensor, section.models)
        if new_sensor:  # the sinks know configured sensors from the configuration
            announce(sensor, (), True)
    wrong_channels = metrics.payload_errors.labels(section.name, "wrong_channels")

    def route(chunk: Chunk) -> None:
        if chunk.sensor not in known:  # first samples of a sensor a wildcard topic found
            known.add(chunk.sensor)
            new_sensor, added = sensors.add(chunk.sensor, section.models)
            if new_sensor or added:
                announce(chunk.sensor, added, new_sensor)
        for name, assembler in assemblers.items():
            try:
                windows = assembler.push(chunk)
            except ValueError:  # wrong channel count for this model: counted, chunk skipped
                wrong_channels.inc()
                continue
            for window in windows:
                submit(name, window)

    return route
