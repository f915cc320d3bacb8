"""The data path between the sources and the sinks, without the lifecycle (that is edge_agent.service.app).

chunk (source thread) -> router -> windows -> inference queue -> worker -> :meth:`DataPath.on_prediction`
-> prediction series, decision -> alert events -> sink fan-out. ``App`` builds one, gives it the
sinks and the models, asks it for each source's ``emit`` and hands it reloaded models.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping

from edge_agent.config import AgentConfig, SourceSection
from edge_agent.metrics import AgentMetrics
from edge_agent.modelfile import LoadedModel
from edge_agent.pipeline.decision import DecisionEngine
from edge_agent.pipeline.fanout import SinkFanout
from edge_agent.pipeline.prediction_series import PredictionSeries
from edge_agent.pipeline.router import SensorSeries, Submit, make_router
from edge_agent.types import AlertEvent, Chunk, Prediction

logger = logging.getLogger(__name__)

HealthCondition = tuple[str, str, bool]  # (sensor, label, active), as a source reports it


class DataPath:
    """Routing, sensor series, prediction series, decision and sink fan-out of one running agent."""

    def __init__(self, metrics: AgentMetrics, decision: DecisionEngine) -> None:
        self.metrics = metrics
        self.decision = decision
        self.fanout = SinkFanout(metrics)
        self.sensors = SensorSeries(metrics)
        self.series = PredictionSeries(metrics)
        self._models: Mapping[str, LoadedModel] = {}
        self._config = AgentConfig()

    def configure(self, models: Mapping[str, LoadedModel], config: AgentConfig) -> None:
        """The models and configuration in force (start, and after each reload)."""
        self._models, self._config = models, config
        labels = {name: tuple(loaded.meta.labels) for name, loaded in models.items()}
        floors = [name for name, loaded in models.items() if loaded.meta.noise_floor is not None]
        self.sensors.configure(labels, config.decision.normal_labels, floors)

    def router(self, section: SourceSection, submit: Submit) -> Callable[[Chunk], None]:
        """``section``'s source's ``emit``; its configured sensors get their series and are announced now."""
        hops = {m.name: m.hop_samples for m in self._config.models}
        metas = {name: self._models[name].meta for name in section.models}
        return make_router(
            section,
            metas,
            hops,
            metrics=self.metrics,
            sensors=self.sensors,
            submit=submit,
            announce=self.fanout.announce,
        )

    def on_prediction(self, prediction: Prediction) -> None:
        """The inference worker's callback (its thread): series, decision, latency, events to the sinks."""
        self.series.record(prediction)
        sha256 = prediction.model_sha256 or self._models[prediction.model].sha256
        events = self.decision.update(prediction, model_sha256=sha256)
        self.metrics.latency.observe(time.monotonic() - prediction.window.completed_at)
        self.fanout.send(events)

    def tick(self, conditions: Iterable[HealthCondition], now: float) -> None:
        """Time-based decisions (hold-off expiry, maximum duration) and the sources' health conditions."""
        for sensor, label, active in conditions:
            self.fanout.send(self.decision.health(sensor, label, active, now))
        self.fanout.send(self.decision.tick(now))

    def deliver(self, events: Iterable[AlertEvent]) -> None:
        self.fanout.send(events)

    def retire_labels(self, previous: Mapping[str, LoadedModel], changed: Mapping[str, LoadedModel]) -> None:
        """A reload swapped ``changed`` models: remove the series of labels their new files lack."""
        for name, loaded in changed.items():
            gone = set(previous[name].meta.labels) - set(loaded.meta.labels)
            sensors = self.series.sensors(name) | self.sensors.sensors(name)
            self.series.retire(name, sensors, gone, noise_floor=loaded.meta.noise_floor is None)
