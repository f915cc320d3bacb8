"""The data path between the sources and the sinks, without the lifecycle (that is edge_agent.service.app).

chunk (source thread) -> router -> windows -> inference queue -> worker -> :meth:`DataPath.on_prediction`
-> prediction series, decision -> alert events -> their context (label description, severity, the
sensor's machine, location, tags: :mod:`~edge_agent.pipeline.alert_context`) -> sink fan-out.
``App`` builds one, gives it the sinks and the models, asks it for each source's ``emit`` and hands it reloaded models.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping

from edge_agent.config import AgentConfig, SourceSection
from edge_agent.metrics import AgentMetrics
from edge_agent.modelfile import LoadedModel
from edge_agent.modelmeta import ModelMeta
from edge_agent.pipeline.alert_context import AlertContext
from edge_agent.pipeline.alert_evidence import end_event
from edge_agent.pipeline.decision import DecisionEngine
from edge_agent.pipeline.episode_store import STATE_FILE, EpisodeStore
from edge_agent.pipeline.fanout import SinkFanout
from edge_agent.pipeline.indicator_stage import IndicatorStage
from edge_agent.pipeline.prediction_series import PredictionSeries
from edge_agent.pipeline.router import Router, SensorSeries, Submit, make_router
from edge_agent.pipeline.supervision import StreamSupervisor
from edge_agent.pipeline.window_queue import WindowQueue
from edge_agent.types import AlertEvent, Prediction

logger = logging.getLogger(__name__)

STREAM_LABEL = "stream_"  # health label of a stream problem: stream_ts_unit, stream_rate_mismatch, ...
HealthCondition = tuple[str, str, bool]  # (sensor, label, active), as a source reports it


class DataPath:
    """Routing, sensor series, prediction series, decision and sink fan-out of one running agent."""

    def __init__(self, metrics: AgentMetrics, decision: DecisionEngine) -> None:
        self.metrics = metrics
        self.decision = decision
        self.fanout = SinkFanout(metrics)
        self.sensors = SensorSeries(metrics)
        self.series = PredictionSeries(metrics)
        self.context = AlertContext(metrics)
        self._models: Mapping[str, LoadedModel] = {}
        self._config = AgentConfig()
        self._supervisors: list[StreamSupervisor] = []
        self._streams_on: set[tuple[str, str]] = set()  # (sensor, health label) reported as on
        self.indicators: dict[str, IndicatorStage] = {}  # source name -> its [sources.indicators] stage
        self.store = EpisodeStore(None)  # open episodes and announced sensors; App.restore gives the durable one

    def restore_from(self, config: AgentConfig, now: float) -> None:
        """:meth:`restore` from the agent's state folder, before its sources start."""
        known = [s.known_sensors for s in config.sources]  # () : the source discovers its sensors
        store = EpisodeStore(config.agent.state_path() / STATE_FILE)
        self.restore(store, [s for names in known for s in names], not all(known), now)

    def restore(self, store: EpisodeStore, configured: Iterable[str], discovers: bool, now: float) -> None:
        """Before the sources start: the stored episodes of sensors that may still send (``configured``, or any
        when a source ``discovers`` sensors) continue, pending (the sinks show them again); those of other
        sensors end now. Stored sensors not configured and without an open episode are withdrawn
        (retained state and Home Assistant configs); one a source discovers again is announced again."""
        self.store = store
        stored = self.context.apply(store.open_alerts())
        known = set(configured)
        gone = [event for event in stored if not discovers and event.sensor not in known]
        kept = [event for event in stored if event not in gone]
        self.decision.restore(kept, now)
        self.fanout.restore(kept)
        self.deliver(end_event(e, now, None, max(e.peak_confidence or 0.0, e.confidence)) for e in gone)
        for sensor in sorted(store.sensors() - known - {event.sensor for event in kept}):
            logger.info("sensor %s is not configured: its retained state and discovery configs are withdrawn", sensor)
            self.fanout.forget(sensor)
            store.forget_sensor(sensor)
        if stored:
            logger.info("open alerts of the last run: %d continue, %d ended", len(kept), len(gone))

    def _announce(self, sensor: str, models: tuple[str, ...] = (), clear: bool = True) -> None:
        self.store.add_sensor(sensor)
        self.fanout.announce(sensor, models, clear)

    def configure(self, models: Mapping[str, LoadedModel], config: AgentConfig) -> None:
        """The models and configuration in force (start, and after each reload)."""
        self._models, self._config = models, config
        labels = {name: tuple(loaded.meta.labels) for name, loaded in models.items()}
        floors = [name for name, loaded in models.items() if loaded.meta.noise_floor is not None]
        thresholds = {name: m.meta.anomaly.threshold for name, m in models.items() if m.meta.anomaly is not None}
        self.sensors.configure(labels, config.decision.normal_labels, floors, thresholds)
        self.context.configure({name: loaded.meta for name, loaded in models.items()}, config)

    def router(
        self,
        section: SourceSection,
        submit: Submit,
        *,
        real_time: bool = True,
        shed: Callable[[str], bool] | None = None,
        shed_set: Callable[[], frozenset[str]] | None = None,
        queue: WindowQueue | None = None,
    ) -> Router:
        """``section``'s source's ``emit``; its configured sensors get their series and are announced now.

        ``real_time``: the source delivers at the signal's pace (not a replay at another speed).
        ``queue``: the inference queue, for overload (its ``over_share``, ``over_share_set`` and ``room``;
        ``shed`` and ``shed_set`` alone: shedding without the room rule).
        """
        if queue is not None:
            shed, shed_set = queue.over_share, queue.over_share_set
        hops = {m.name: m.hop_samples for m in self._config.models}
        metas = {name: self._models[name].meta for name in section.models}
        stage = self._indicator_stage(section, metas[section.models[0]])
        router = make_router(
            section,
            metas,
            hops,
            metrics=self.metrics,
            sensors=self.sensors,
            submit=submit,
            announce=self._announce,
            streams=self._config.streams,
            real_time=real_time,
            indicators=stage,
            shed=shed,  # overload: the inference queue's over_share (None: never shed)
            shed_set=shed_set,  # its over_share_set (a receive process sheds these sensors)
            room=queue,  # a full queue's room for a sensor's next windows (the rest are not cut)
        )
        self._supervisors.append(router.supervisor)
        return router

    def _indicator_stage(self, section: SourceSection, meta: ModelMeta) -> IndicatorStage | None:
        """The stage of ``section``'s ``[sources.indicators]`` on its first model's windows, or None."""
        if section.indicators is None or not section.indicators.enabled:
            return None
        index = self._config.sources.index(section) if section in self._config.sources else 0
        stage = IndicatorStage(
            section.indicators,
            meta.sample_rate_hz,
            meta.window_samples,
            meta.channels,
            self.metrics.vibration,
            key=f"sources[{index}].indicators",
        )
        self.indicators[section.name] = stage
        settings, used = stage.plan.settings, stage.plan.velocity_band_used_hz
        zone = f"group {settings.machine_group} {settings.foundation}" if settings.machine_group else "none"
        logger.info(
            "source %s: vibration indicators on the windows of model %s (unit %s, velocity %g-%g Hz, "
            "%d bands, ISO zone %s, alarm %s)",
            section.name,
            section.models[0],
            settings.unit,
            *used,
            len(settings.bands_hz),
            zone,
            section.indicators.alarm_zone or "off",
        )
        return stage

    def on_prediction(self, prediction: Prediction) -> None:
        """The inference worker's callback (its thread): series, decision, latency, events to the sinks."""
        self.series.record(prediction)
        sha256 = prediction.model_sha256 or self._models[prediction.model].sha256
        events = self.decision.update(prediction, model_sha256=sha256)
        self.metrics.latency.observe(time.monotonic() - prediction.window.completed_at)
        self.deliver(events)

    def tick(self, conditions: Iterable[HealthCondition], now: float) -> None:
        """Time-based decisions (hold-off expiry, maximum duration), the sources' health conditions, the
        indicators' zone alarms and the stream problems (each a health alert ``stream_<reason>``, so the
        state topic and Home Assistant show it)."""
        zones = [c for stage in self.indicators.values() for c in stage.conditions()]
        for sensor, label, active in [*conditions, *zones, *self._stream_changes()]:
            self.deliver(self.decision.health(sensor, label, active, now))
        self.deliver(self.decision.tick(now))

    def _stream_changes(self) -> list[HealthCondition]:
        """Stream problems that began or ended since the last tick (the supervisors run on source threads)."""
        now_on = {(sensor, STREAM_LABEL + reason) for s in self._supervisors for sensor, reason in tuple(s.active)}
        changes = [(sensor, label, True) for sensor, label in now_on - self._streams_on]
        changes += [(sensor, label, False) for sensor, label in self._streams_on - now_on]
        self._streams_on = now_on
        return changes

    def deliver(self, events: Iterable[AlertEvent]) -> None:
        """Events with their context to every sink, once the store has what they leave open."""
        events = self.context.apply(events)
        self.store.record(events)
        self.fanout.send(events)

    def retire_labels(self, previous: Mapping[str, LoadedModel], changed: Mapping[str, LoadedModel]) -> None:
        """A reload swapped ``changed`` models: remove the series of labels their new files lack."""
        for name, loaded in changed.items():
            gone = set(previous[name].meta.labels) - set(loaded.meta.labels)
            sensors = self.series.sensors(name) | self.sensors.sensors(name)
            self.series.retire(name, sensors, gone, noise_floor=loaded.meta.noise_floor is None)
