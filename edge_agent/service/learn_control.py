"""Ties learning on the gateway into the running agent: the control socket's commands, which sensor
stream a request means, and the learned model handed to ``App`` (see edge_agent.service.learning)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry

from edge_agent.config import AgentConfig, SourceSection
from edge_agent.config.learn import LearnSection
from edge_agent.metrics.learning import LearningMetrics
from edge_agent.modelfile import LoadedModel, check_runtime_kind
from edge_agent.pipeline.router import SensorSeries, Submit
from edge_agent.service.control import ControlServer, parse_duration_s
from edge_agent.service.learn_state import LearningError, LearnRequest, LearnTarget
from edge_agent.service.learning import LearningManager
from edge_agent.service.reload import ReloadError, ReloadPlan
from edge_agent.types import Prediction, Window

logger = logging.getLogger(__name__)


class GatewayLearning:
    """The learning manager and the control socket of one running agent."""

    def __init__(
        self,
        config: AgentConfig,
        registry: CollectorRegistry,
        sensors: SensorSeries,
        apply: Callable[[ReloadPlan], None],
    ) -> None:
        self._config = config
        self._models: Mapping[str, LoadedModel] = {}
        self._sensors = sensors
        self._apply = apply
        state_dir = config.agent.state_path()
        self.manager = LearningManager(
            state_dir,
            LearningMetrics(registry),
            targets=self.target,
            install=self.install,
            normal_labels=config.decision.normal_labels,
            min_confidence=config.decision.min_confidence,
        )
        self.server = ControlServer(state_dir, self.handle)

    def install(self, name: str, loaded: LoadedModel) -> None:
        """Swap a validated learned model in through the reload path (main thread); ``ReloadError`` if it cannot run."""
        self._apply(learned_plan(self._config, self._models, name, loaded))

    def configure(self, models: Mapping[str, LoadedModel], config: AgentConfig) -> None:
        self._models, self._config = models, config

    def submit_via(self, submit: Submit) -> Submit:
        """The router's ``submit``: windows of a recording sensor are recorded, then queued as always."""
        tap = self.manager.tap

        def recorded_submit(model: str, window: Window) -> None:
            tap(model, window)
            submit(model, window)

        return recorded_submit

    def observing(self, on_prediction: Callable[[Prediction], None]) -> Callable[[Prediction], None]:
        """The worker's callback: predictions of a recording sensor are counted (faults), then handled."""
        observe = self.manager.observe

        def observed(prediction: Prediction) -> None:
            observe(prediction)
            on_prediction(prediction)

        return observed

    def start(self) -> None:
        """The control socket, then the runs ``[sources.learn] at_start`` asks for."""
        try:
            self.server.start()
        except OSError as error:  # monitoring goes on; learning by command is unavailable
            logger.error("control socket %s not started, learning by command is off: %s", self.server.path, error)
        for section in self._config.sources:
            if section.learn is not None and section.learn.at_start:
                for sensor in section.learn.sensors or section.known_sensors:
                    self.handle({"command": "learn", "sensor": sensor})

    def conditions(self) -> list[tuple[str, str, bool]]:
        """Learning's health conditions; the runs move on first (recordings due, trainers done, models swapped)."""
        self.manager.poll()
        return self.manager.conditions()

    def stop(self) -> None:
        self.server.stop()
        self.manager.stop()

    def source_of(self, sensor: str) -> SourceSection | None:
        """The source that names ``sensor``, else the first discovering source (a wildcard) that has found it."""
        named = [s for s in self._config.sources if sensor in s.known_sensors]
        found = [
            s for s in self._config.sources if not s.known_sensors and sensor in self._sensors.sensors(s.models[0])
        ]
        return (named or found or [None])[0]

    def target(self, sensor: str) -> LearnTarget | None:
        """The stream of ``sensor``: its source's anomaly model's windows (else its first model's)."""
        section = self.source_of(sensor)
        if section is None:
            return None
        anomaly = [m for m in section.models if self._models[m].meta.kind == "anomaly"]
        tap = anomaly[0] if anomaly else section.models[0]
        meta = self._models[tap].meta
        hops = {m.name: m.hop_samples for m in self._config.models}
        return LearnTarget(
            source=section.name,
            tap_model=tap,
            sample_rate_hz=meta.sample_rate_hz,
            channels=meta.channels,
            window_samples=meta.window_samples,
            hop_samples=hops.get(tap) or meta.hop_samples,
            install_model=anomaly[0] if anomaly else None,
        )

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """One control command (the control thread)."""
        command = request.get("command")
        if command == "status":
            return {"ok": True, "message": "learning status", "sensors": self.manager.status()}
        if command != "learn":
            return {"ok": False, "message": f"unknown command {command!r}; known: learn, status"}
        sensor = str(request.get("sensor", ""))
        section = self.source_of(sensor)
        defaults = section.learn if section is not None and section.learn is not None else LearnSection()
        try:
            duration = request.get("duration_s", defaults.duration_s)
            duration_s = parse_duration_s(duration) if isinstance(duration, str) else float(duration)
            options = {
                "network": request.get("network", defaults.model),
                "frontend": request.get("frontend", defaults.frontend),
                "false_rate": request.get("false_rate", defaults.false_rate),
                "steps": request.get("steps", defaults.steps),
                "max_bytes": request.get("max_bytes", defaults.max_bytes),
                "stall_s": request.get("stall_s", defaults.stall_s),
                "force": request.get("force") is True,
            }
            message = self.manager.start(LearnRequest(sensor=sensor, duration_s=duration_s, **options))
        except (LearningError, ValueError, TypeError) as error:
            logger.warning("learning refused: %s", error)
            return {"ok": False, "message": str(error)}
        return {"ok": True, "message": message}


def learned_plan(config: AgentConfig, models: Mapping[str, LoadedModel], name: str, loaded: LoadedModel) -> ReloadPlan:
    """The reload plan that swaps ``loaded`` in for model ``name`` (``ReloadError`` if it cannot run there)."""
    try:
        check_runtime_kind(loaded.meta, loaded.path)
    except ValueError as error:
        raise ReloadError([str(error)]) from error
    mismatch = models[name].meta.input_mismatch(loaded.meta)
    if mismatch:
        raise ReloadError([f"{loaded.path} takes another input than model {name}: {', '.join(mismatch)}"])
    if any(m.name == name and m.path != str(loaded.path) for m in config.models):
        logger.warning(
            "learning: model %s now runs %s; its [[models]] path names another file, which a restart or "
            "reload loads again: point the path at the learned file to keep it",
            name,
            loaded.path,
        )
    sections = tuple(dataclasses.replace(m, path=str(loaded.path)) if m.name == name else m for m in config.models)
    key = f"models.{name} (learned, sha256 {loaded.sha256[:12]})"
    return ReloadPlan(dataclasses.replace(config, models=sections), {name: loaded}, (), (key,))
