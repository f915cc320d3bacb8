"""Builds the pipeline from the configuration, starts it, supervises it, reloads it and stops it in order.

sources -> router (windowing per source and model) -> inference worker -> decision -> sinks; the
data path itself is edge_agent.pipeline.datapath, what a reload changes is planned by
edge_agent.service.reload and applied here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from edge_agent.config import AgentConfig, SourceSection
from edge_agent.configload import ConfigError
from edge_agent.metrics import AgentMetrics
from edge_agent.modelfile import LoadedModel, load_runtime_model, model_info_labels
from edge_agent.pipeline.datapath import DataPath
from edge_agent.pipeline.decision import DecisionEngine
from edge_agent.pipeline.inference import InferenceWorker
from edge_agent.service.backoff import StartAborted, retry_with_backoff
from edge_agent.service.exporter import start_exporter
from edge_agent.service.heartbeat import Heartbeat
from edge_agent.service.learn_control import GatewayLearning
from edge_agent.service.preflight import check_fit
from edge_agent.service.reload import ReloadError, ReloadPlan, plan_reload
from edge_agent.service.sdnotify import Notifier, Watchdog
from edge_agent.sinks import SinkBuild, build_sinks, restart_dead
from edge_agent.sources import SOURCES, HealthReporting, Source, SourceBuild, build_source, health_reporting
from edge_agent.types import StreamEvents

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
        self.datapath = DataPath(self.metrics, self.decision)
        self.sources: list[Source] = []
        self.health_sources: list[HealthReporting] = []
        self.worker: InferenceWorker | None = None
        self.stop_requested = threading.Event()
        self.notifier = notifier or Notifier({})  # systemd's notify socket; a no-op by default
        self.notifier.on_failure = self.metrics.notify_errors.inc
        self.read_config = read_config  # reads the configuration file again (reload); None: no reload
        self.reload_requested = threading.Event()
        self._watchdog = Watchdog(self.notifier, self.problem, self.status_line)
        self._heartbeat = Heartbeat(self.metrics.registry, config.agent.heartbeat_s)
        self._finished_sources: set[str] = set()
        self._lock = threading.Lock()
        self.learning = GatewayLearning(config, self.metrics.registry, self.datapath.sensors, self.apply)

    @property
    def sinks(self) -> tuple[object, ...]:
        return self.datapath.fanout.sinks

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
            ("alert state", lambda: self.datapath.restore_from(self.config, time.time())),
            ("sources", self._start_sources),
            ("control socket", self.learning.start),  # edge-agent learn --sensor NAME (service/control.py)
        ):
            logger.debug("starting %s", name)
            self.notifier.status(f"starting: {name}")
            step()
        agent_id = self.config.agent.id
        logger.info("agent %s started: %d sources, %d models", agent_id, len(self.sources), len(self.models))

    def stop(self) -> None:
        for name, step in (
            ("learning", self.learning.stop),
            ("sources", self._stop_sources),
            ("inference", self._stop_inference),
            ("sinks", self.datapath.fanout.close),
            ("alert state", self.datapath.store.close),  # open episodes stay stored: the next start decides
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
        """Time-based decisions (hold-off expiry, maximum duration), the sources' and learning's health conditions."""
        conditions = [*(c for source in self.health_sources for c in source.health()), *self.learning.conditions()]
        self.datapath.tick(conditions, time.time())
        self._heartbeat.poll()
        restart_dead(self.datapath.fanout.restartable, self.metrics)  # dead sink threads: started again, counted

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
        """Read the configuration and model files again and apply what can change live; False if refused."""
        if self.read_config is None:
            logger.warning("reload asked for, but this agent was not started from a configuration file")
            return False
        metrics = self.metrics
        metrics.config_reloads.inc()
        self.notifier.reloading("reloading the configuration and model files")
        try:
            plan = plan_reload(self.config, self.read_config(), self.models)
            self.apply(plan)
        except (ConfigError, ReloadError) as error:
            return self._reload_failed("refused", error.errors[0], "; ".join(error.errors))
        except Exception:  # a reload must never take the running agent down: counted, logged, old config kept
            return self._reload_failed("failed unexpectedly", "see the log", "", exc_info=True)
        metrics.config_last_reload_successful.set(1)
        metrics.config_last_reload_success.set_to_current_time()
        metrics.config_restart_required.set(1 if plan.restart_keys else 0)
        if plan.restart_keys:
            logger.warning(
                "reload: %s changed; these apply only after a restart (systemctl restart edge-agent), "
                "the running values are kept",
                ", ".join(plan.restart_keys),
            )
        logger.info("configuration reloaded: %s", ", ".join(plan.changed_keys) or "no change that applies live")
        restart_note = "; restart needed for " + ", ".join(plan.restart_keys) if plan.restart_keys else ""
        self.notifier.reloaded(f"{self.status_line()}; reloaded{restart_note}")
        return True

    def apply(self, plan: ReloadPlan) -> None:
        """Swap in what ``plan`` changes; window buffers and the inference queue stay as they are."""
        self.decision.reconfigure(plan.config.decision)  # first: if it refuses, nothing has changed yet
        previous, models = self.models, {**self.models, **plan.models}
        for name, loaded in plan.models.items():
            self.metrics.model_info.remove(*model_info_labels(name, previous[name]))
            self.metrics.model_info.labels(*model_info_labels(name, loaded)).set(1)
        self.models = models
        if self.worker is not None:
            normal = plan.config.decision.normal_labels  # overload: a fault's sensor is served first
            self.worker.reconfigure(models=models, config=plan.config.inference, normal_labels=normal)
        if plan.config.agent.log_level != self.config.agent.log_level:
            logging.getLogger().setLevel(plan.config.agent.log_level.upper())
        self.datapath.retire_labels(previous, plan.models)
        self.datapath.configure(models, plan.config)
        self.learning.configure(models, plan.config)
        self.config = plan.config

    def _reload_failed(self, outcome: str, status: str, errors: str, *, exc_info: bool = False) -> bool:
        self.metrics.config_reload_failures.inc()
        self.metrics.config_last_reload_successful.set(0)
        logger.error("reload %s, the running configuration is kept: %s", outcome, errors or status, exc_info=exc_info)
        self.notifier.reloaded(f"{self.status_line()}; last reload {outcome}: {status}")
        return False

    # ---------------------------------------------------------------- steps

    def _start_exporter(self) -> None:
        """Serve /metrics; a port taken or an address not up yet is retried in the background (the agent runs)."""
        if self.config.metrics.enabled:
            listen, port = self.config.metrics.listen, self.config.metrics.port
            start_exporter(self.metrics, listen, port, stop=self.stop_requested, say=self.notifier.status)

    def _retry(self, what: str, attempt: Callable[[], None], count: Callable[[], None], status: str = "") -> None:
        retry_with_backoff(
            what, attempt, count=count, stop=self.stop_requested, say=self.notifier.status, status=status or None
        )

    def _load_models(self) -> None:
        """Load every model, retrying with capped backoff: a file may appear later (never a crash loop)."""

        def load() -> None:
            self.models = {
                section.name: load_runtime_model(section.path, key=f"models[{index}].path")
                for index, section in enumerate(self.config.models)
            }

        self._retry("load the model files", load, self.metrics.model_load_errors.inc, "waiting for model files")
        check_fit(self.config, self.models)  # channels and rates against the models' meta
        for name, loaded in self.models.items():
            self.metrics.model_info.labels(*model_info_labels(name, loaded)).set(1)
        self.datapath.configure(self.models, self.config)
        self.learning.configure(self.models, self.config)

    def _start_inference(self) -> None:
        on_prediction = self.learning.observing(self.datapath.on_prediction)
        normal = self.config.decision.normal_labels  # overload: a fault's sensor is served first
        self.worker = InferenceWorker(self.models, self.config.inference, self.metrics, on_prediction, normal)
        self.worker.warm_up()
        self.worker.start()

    def _open_sinks(self) -> None:
        anomaly = frozenset(name for name, loaded in self.models.items() if loaded.meta.anomaly is not None)
        sinks = build_sinks(self.config, SinkBuild(self.metrics, self.password, self.echo, anomaly))
        self.metrics.init_pipeline(self.config.inference.queue_windows)
        self.datapath.fanout.open(sinks)

    def _start_sources(self) -> None:
        assert self.worker is not None  # the inference step came first
        for section in self.config.sources:
            rt = SOURCES[section.type].real_time(section)  # delivers at the signal's pace
            q = self.worker.queue  # overload: shed at ingress, before parsing (the set: in a receive process)
            submit = self.learning.submit_via(self.worker.submit)  # a learning sensor's windows are recorded too
            router = self.datapath.router(section, submit, real_time=rt, queue=q)
            router.use_suspects(q)  # the change detector's marks (a source may make a changing sensor a suspect)
            source = self._build_source(section, router)
            source.start(router)
            self.sources.append(source)
            self.health_sources += health_reporting(section, source)

    def _build_source(self, section: SourceSection, router: StreamEvents) -> Source:
        def finished() -> None:
            self._source_finished(section.name)

        return build_source(section, SourceBuild(self.config, self.metrics, self.password, finished, router))

    def _stop_sources(self) -> None:
        for source in self.sources:
            source.stop()

    def _stop_inference(self) -> None:
        if self.worker is not None:
            self.worker.stop(drain_timeout_s=STOP_DRAIN_S)

    def _source_finished(self, name: str) -> None:
        with self._lock:
            self._finished_sources.add(name)

    def _all_sources_finished(self) -> bool:
        finite = {s.name for s in self.config.sources if SOURCES[s.type].finite(s)}
        return bool(finite) and len(finite) == len(self.config.sources) and finite <= self._finished_sources

    def _drained(self) -> bool:
        return self.worker is None or len(self.worker.queue) == 0
