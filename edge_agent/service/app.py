"""Builds the pipeline from the configuration, starts it, supervises it and stops it in order.

sources -> windowing (per source and model) -> inference worker -> decision -> sinks
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from edge_agent.config import AgentConfig, ModelSection, SourceSection
from edge_agent.metrics import AgentMetrics
from edge_agent.modelfile import LoadedModel, load_model, model_engine
from edge_agent.pipeline.decision import DecisionEngine
from edge_agent.pipeline.inference import InferenceWorker
from edge_agent.pipeline.prediction_series import PredictionSeries
from edge_agent.pipeline.windowing import WindowAssembler
from edge_agent.service.backoff import StartAborted, retry_with_backoff
from edge_agent.service.preflight import check_fit
from edge_agent.service.sdnotify import Notifier, Watchdog
from edge_agent.sinks import Sink, SinkBuild, Sinks, build_sinks
from edge_agent.sources import SOURCES, HealthReporting, Source, SourceBuild, build_source, health_reporting
from edge_agent.types import AlertEvent, Chunk, Prediction

logger = logging.getLogger(__name__)

TICK_INTERVAL_S = 0.25
STOP_DRAIN_S = 2.0


class App:
    """The running agent. ``start()`` and ``stop()`` are flat lists of named steps."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        metrics: AgentMetrics | None = None,
        echo: Callable[[str], None] | None = None,
        password: str | None = None,
        notifier: Notifier | None = None,
        read_config: Callable[[], AgentConfig] | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics or AgentMetrics()
        self.echo = echo
        self.password = password
        self.models: dict[str, LoadedModel] = {}
        self.decision = DecisionEngine(config.decision, metrics=self.metrics)
        self.sinks: list[Sink] = []
        self.sink_set = Sinks()  # the sinks by declared capability (sensor-aware, state-clearing)
        self.sources: list[Source] = []
        self.health_sources: list[HealthReporting] = []
        self.worker: InferenceWorker | None = None
        self.stop_requested = threading.Event()
        self.notifier = notifier or Notifier({})  # systemd's notify socket; a no-op by default
        self.notifier.on_failure = self.metrics.notify_errors.inc
        self.read_config = read_config  # reads the configuration file again (reload); None: no reload
        self.reload_requested = threading.Event()
        self._watchdog = Watchdog(self.notifier, self.problem, self.status_line)
        self._finished_sources: set[str] = set()
        self.series = PredictionSeries(self.metrics)
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        # load_config has validated the file: the running configuration is good from the first scrape on
        self.metrics.config_last_reload_successful.set(1)
        self.metrics.config_last_reload_success.set_to_current_time()
        for name, step in (
            ("metrics exporter", self._start_exporter),
            ("models", self._load_models),
            ("inference", self._start_inference),
            ("sinks", self._open_sinks),
            ("sources", self._start_sources),
        ):
            logger.debug("starting %s", name)
            self.notifier.status(f"starting: {name}")
            step()
        agent_id = self.config.agent.id
        logger.info("agent %s started: %d sources, %d models", agent_id, len(self.sources), len(self.models))

    def stop(self) -> None:
        for name, step in (
            ("sources", self._stop_sources),
            ("inference", self._stop_inference),
            ("sinks", self._close_sinks),
        ):
            logger.debug("stopping %s", name)
            try:
                step()
            except Exception:  # keep stopping the other stages; the failure is logged
                logger.exception("stopping %s failed", name)
        logger.info("agent %s stopped", self.config.agent.id)

    def run(self, *, exit_when_finished: bool = True) -> int:
        """Start, then supervise until a stop is requested or every replay source has finished."""
        try:
            self.start()
        except StartAborted:
            logger.info("start aborted by a stop request")
            self.stop()
            return 0
        self.notifier.ready(self.status_line())  # config valid, models warm, exporter and sources up
        try:
            while not self.stop_requested.wait(TICK_INTERVAL_S):
                self.tick()
                if self.reload_requested.is_set():
                    self.reload_requested.clear()
                    self.reload()
                self._watchdog.poll()
                if exit_when_finished and self._all_sources_finished() and self._drained():
                    break
        finally:
            self.notifier.stopping()
            self.stop()
        return 0

    def tick(self) -> None:
        """Time-based decisions (hold-off expiry, maximum duration) and the sources' health conditions."""
        now = time.time()
        for source in self.health_sources:
            for sensor, label, active in source.health():
                self._deliver(self.decision.health(sensor, label, active, now))
        self._deliver(self.decision.tick(now))

    def healthy(self, max_stall_s: float = 5.0) -> bool:
        """True while the inference worker turns and every source and sink thread lives (for the watchdog)."""
        return self.problem(max_stall_s) is None

    def problem(self, max_stall_s: float = 5.0) -> str | None:
        """Why the pipeline is not alive (a stuck or dead inference worker, a dead source or sink thread), or None."""
        worker = self.worker
        if worker is None or not worker.alive():
            return "the inference worker is not running"
        stalled_s = time.monotonic() - worker.last_progress_s
        # waiting up to max_wait_s (plus the queue's 0.2 s idle poll) for a batch to fill is not a stall
        if stalled_s >= max(max_stall_s, self.config.inference.max_wait_s + 1.0):
            return f"the inference worker is stuck ({stalled_s:.0f} s without progress)"
        for kind, stage in [*(("source", s) for s in self.sources), *(("sink", s) for s in self.sinks)]:
            if not stage.alive():
                return f"{kind} {stage.name}'s thread died"
        return None

    def status_line(self) -> str:
        return f"running: {len(self.sources)} sources, {len(self.models)} models"

    def request_reload(self) -> None:
        """Ask the supervisor loop to reload (safe from a signal handler)."""
        self.reload_requested.set()

    def reload(self) -> bool:
        """Read the configuration and model files again and apply what can change live (edge_agent.service.reload)."""
        from edge_agent.service.reload import reload_app

        if self.read_config is None:
            logger.warning("reload asked for, but this agent was not started from a configuration file")
            return False
        try:
            return reload_app(self, self.read_config)
        except Exception:  # a reload must never take the running agent down: counted, logged, old config kept
            self.metrics.config_reload_failures.inc()
            self.metrics.config_last_reload_successful.set(0)
            logger.exception("reload failed unexpectedly; the running configuration is kept")
            self.notifier.reloaded(f"{self.status_line()}; last reload failed unexpectedly (see the log)")
            return False

    # ---------------------------------------------------------------- steps

    def _start_exporter(self) -> None:
        """Serve /metrics; a port taken or an address not up yet is retried (never a crash loop)."""
        if self.config.metrics.enabled:
            listen, port = self.config.metrics.listen, self.config.metrics.port
            self._retry("serve /metrics", lambda: self.metrics.serve(listen, port), self.metrics.exporter_errors.inc)

    def _retry(self, what: str, attempt: Callable[[], None], count: Callable[[], None], status: str = "") -> None:
        retry_with_backoff(
            what, attempt, count=count, stop=self.stop_requested, say=self.notifier.status, status=status or None
        )

    def _load_models(self) -> None:
        """Load every model, retrying with capped backoff: a file may appear later (never a crash loop)."""

        def load() -> None:
            self.models = {section.name: load_model(section.path) for section in self.config.models}

        self._retry("load the model files", load, self.metrics.model_load_errors.inc, "waiting for model files")
        check_fit(self.config, self.models)  # channels and rates against the models' meta
        for name, loaded in self.models.items():
            meta = loaded.meta
            self.metrics.model_info.labels(name, loaded.sha256, str(meta["precision"]), model_engine(loaded)).set(1)

    def _start_inference(self) -> None:
        self.worker = InferenceWorker(self.models, self.config.inference, self.metrics, self._on_prediction)
        self.worker.warm_up()
        self.worker.start()

    def _open_sinks(self) -> None:
        self.sink_set = build_sinks(self.config, SinkBuild(self.metrics, self.password, self.echo))
        self.sinks = self.sink_set.all
        self.metrics.init_pipeline(self.config.inference.queue_windows, tuple(s.name for s in self.sinks))
        for sink in self.sinks:
            sink.open()

    def _start_sources(self) -> None:
        for section in self.config.sources:
            source = self._build_source(section)
            self.metrics.init_source(section.name)
            for sensor in section.known_sensors:
                self._init_sensor_metrics(sensor, section.models)
                self._announce_sensor(sensor)
            source.start(self._router(section))
            self.sources.append(source)
            self.health_sources += health_reporting(section, source)

    def _init_sensor_metrics(self, sensor: str, models: tuple[str, ...]) -> None:
        self.metrics.init_sensor(sensor)
        for model in models:
            labels = tuple(self.models[model].labels)
            self.metrics.init_sensor_model(sensor, model, labels, self.config.decision.normal_labels)

    def _announce_sensor(self, sensor: str, models: tuple[str, ...] = ()) -> None:
        """A sensor is known: no alert survives a restart (retained no-alert state), Home Assistant learns it."""
        clear = [(s, lambda s=s: s.clear_state(sensor)) for s in self.sink_set.state_clearing]
        add = [(s, lambda s=s: s.add_sensor(sensor, models)) for s in self.sink_set.sensor_aware if models]
        for sink, call in clear + add:
            try:
                call()
            except Exception:  # one failing sink must not stop the stream; counted, logged with its name
                self.metrics.sink_errors.labels(sink.name).inc()
                logger.exception("sink %s failed to announce sensor %s", sink.name, sensor)

    def _build_source(self, section: SourceSection) -> Source:
        def finished() -> None:
            self._source_finished(section.name)

        return build_source(section, SourceBuild(self.config, self.metrics, self.password, finished))

    def _router(self, section: SourceSection) -> Callable[[Chunk], None]:
        """Chunk -> windows for each model of the source -> inference queue (runs on the source's thread)."""
        assemblers = {}
        for index, model_name in enumerate(section.models):
            loaded, model_section = self.models[model_name], self._model_section(model_name)
            hop = model_section.hop_samples or int(loaded.meta["hop_samples"])
            rate_hz = float(loaded.meta["sample_rate_hz"])
            # per-sensor sample and gap counts come from the first model's assembler only
            metrics = self.metrics if index == 0 else None
            assemblers[model_name] = WindowAssembler(
                loaded.window_samples, hop, rate_hz, loaded.channels, metrics=metrics
            )

        known = set(section.known_sensors)

        def route(chunk: Chunk) -> None:
            if chunk.sensor not in known:  # first samples of a sensor a wildcard topic found
                known.add(chunk.sensor)
                self._init_sensor_metrics(chunk.sensor, section.models)
                self._announce_sensor(chunk.sensor, section.models)
            for model_name, assembler in assemblers.items():
                try:
                    windows = assembler.push(chunk)
                except ValueError:  # wrong channel count for this model: counted, chunk skipped
                    self.metrics.payload_errors.labels(section.name, "wrong_channels").inc()
                    continue
                for window in windows:
                    self.worker.submit(model_name, window)

        return route

    def _model_section(self, name: str) -> ModelSection:
        return next(m for m in self.config.models if m.name == name)

    def _on_prediction(self, prediction: Prediction) -> None:
        self.series.record(prediction)
        sha256 = prediction.model_sha256 or self.models[prediction.model].sha256
        events = self.decision.update(prediction, model_sha256=sha256)
        self.metrics.latency.observe(time.monotonic() - prediction.window.completed_at)
        self._deliver(events)

    def _deliver(self, events: list[AlertEvent]) -> None:
        for event in events:
            for sink in self.sinks:
                try:
                    sink.send(event)
                except Exception:  # one failing sink must not block the others; counted, logged with its name
                    self.metrics.sink_errors.labels(sink.name).inc()
                    logger.exception("sink %s failed to take alert %s", type(sink).__name__, event.id)

    def _stop_sources(self) -> None:
        for source in self.sources:
            source.stop()

    def _stop_inference(self) -> None:
        if self.worker is not None:
            self.worker.stop(drain_timeout_s=STOP_DRAIN_S)

    def _close_sinks(self) -> None:
        for sink in self.sinks:
            sink.close()

    def _source_finished(self, name: str) -> None:
        with self._lock:
            self._finished_sources.add(name)

    def _all_sources_finished(self) -> bool:
        finite = {s.name for s in self.config.sources if SOURCES[s.type].finite(s)}
        return bool(finite) and len(finite) == len(self.config.sources) and finite <= self._finished_sources

    def _drained(self) -> bool:
        return self.worker is None or len(self.worker.queue) == 0
