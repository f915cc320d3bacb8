"""Every Prometheus metric of the agent, in one registry (names per docs/ARCHITECTURE rules); families of
one area in a module of their own (``streams``, ``vibration``, ``audio``).

Stages receive the :class:`AgentMetrics` object and update the metrics they own. Labels come
only from configured names (sensor, source, model, label, sink), never from payloads. A sensor's
and a source's series are created by the router (edge_agent.pipeline.router), /metrics is served
by edge_agent.service.exporter.
"""

from __future__ import annotations

import logging
import platform

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

import edge_agent
from edge_agent.common.allocator import allocator
from edge_agent.metrics.anomaly import AnomalyMetrics
from edge_agent.metrics.audio import AudioMetrics
from edge_agent.metrics.overload import INGRESS_ERROR_REASONS, OverloadMetrics
from edge_agent.metrics.series import CounterFamily, GaugeFamily
from edge_agent.metrics.streams import StreamMetrics
from edge_agent.metrics.vibration import VibrationMetrics

logger = logging.getLogger(__name__)

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.5, 1.0)
LATENCY_BUCKETS_S += (2.5, 5.0)
INFERENCE_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
PAYLOAD_ERROR_REASONS = (
    "not_json",
    "bad_field",
    "non_finite",
    "empty",
    "too_large",
    "wrong_channels",
    "wrong_rate",
    "bad_length",
    "unknown_sensor",
    "too_many_sensors",
    "bad_sensor_id",
)
WINDOW_DROP_REASONS = ("queue_full", "consumer_error")
ALERT_EVENT_TYPES = ("new", "update", "end")
# count, bytes, age: the outbox's bounds; closed: sent after close; shutdown: undelivered at close, outbox in memory
ALERT_DROP_REASONS = ("count", "bytes", "age", "closed", "shutdown", "unpublishable")
SUPPRESS_REASONS = ("cooldown",)
_NO_OTHER_LABELS = ((),)  # a family labelled by sensor alone
_ALERT_KINDS = (("fault",), ("health",), ("anomaly",))


class AgentMetrics:
    """The agent's metrics on a registry of their own (a fresh one per test)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.build_info = Gauge(
            "edge_agent_build_info",
            "Versions of the agent, Python and torch, and the memory allocator that runs (jemalloc or glibc).",
            ["version", "python", "torch", "allocator"],
            registry=r,
        )
        self.model_info = Gauge(
            "edge_agent_model_info", "Loaded models (value 1).", ["model", "sha256", "precision", "engine"], registry=r
        )
        self.messages_received = Counter(
            "edge_agent_messages_received_total", "Messages or blocks received, by source.", ["source"], registry=r
        )
        self.messages_foreign = Counter(  # sources with instances > 1 (edge_agent.config.instances)
            "edge_agent_messages_foreign_total", "Messages of other instances' sensors.", ["source"], registry=r
        )
        self.samples_received = CounterFamily(
            "edge_agent_samples_received_total", "Samples accepted (per channel), by sensor.", ["sensor"], registry=r
        )
        self.payload_errors = Counter(
            "edge_agent_payload_errors_total",
            "Rejected payloads, by source and reason.",
            ["source", "reason"],
            registry=r,
        )
        self.stream_gaps = CounterFamily(
            "edge_agent_stream_gaps_total",
            "Gaps (seq or time jumps) that reset a sensor's buffer.",
            ["sensor"],
            registry=r,
        )
        self.last_sample = GaugeFamily(
            "edge_agent_last_sample_timestamp_seconds",
            "Wall-clock time the sensor's last sample arrived.",
            ["sensor"],
            registry=r,
        )
        self.source_up = Gauge(
            "edge_agent_source_up", "1 while a source is connected or running.", ["source"], registry=r
        )
        self.windows_emitted = CounterFamily(
            "edge_agent_windows_total", "Windows cut from the streams, by sensor.", ["sensor"], registry=r
        )
        self.windows_processed = Counter(
            "edge_agent_windows_processed_total", "Windows run through a model.", ["model"], registry=r
        )
        self.windows_dropped = Counter(
            "edge_agent_windows_dropped_total", "Windows dropped before inference, by reason.", ["reason"], registry=r
        )
        self.queue_depth = Gauge("edge_agent_inference_queue_windows", "Windows waiting for inference.", registry=r)
        self.queue_capacity = Gauge(
            "edge_agent_inference_queue_capacity_windows",
            "Most windows the inference queue holds (inference.queue_windows); past it the oldest is dropped.",
            registry=r,
        )
        self.signal_seconds = CounterFamily(
            "edge_agent_signal_seconds_total",
            "Seconds of signal accepted (samples / sample rate), by sensor (for the real-time factor).",
            ["sensor"],
            registry=r,
        )
        self.last_processed = Gauge(
            "edge_agent_inference_last_processed_timestamp_seconds",
            "Wall-clock time of the last inference.",
            registry=r,
        )
        self.inference_duration = Histogram(
            "edge_agent_inference_duration_seconds",
            "Model call duration per batch.",
            ["model"],
            buckets=INFERENCE_BUCKETS_S,
            registry=r,
        )
        self.batch_size = Histogram(
            "edge_agent_inference_batch_windows",
            "Windows per inference batch.",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.latency = Histogram(
            "edge_agent_end_to_end_latency_seconds",
            "From the arrival of a window's last sample to the decision on it.",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.predictions = CounterFamily(
            "edge_agent_predictions_total", "Predicted labels.", ["sensor", "model", "label"], registry=r
        )
        self.probability = GaugeFamily(
            "edge_agent_class_probability", "Last class probabilities.", ["sensor", "model", "label"], registry=r
        )
        self.noise_floor = GaugeFamily(
            "edge_agent_noise_floor", "Model's noise estimate, last window (1: clean).", ["sensor", "model"], registry=r
        )
        self.alerts = CounterFamily(
            "edge_agent_alerts_total", "Alert lifecycle events.", ["sensor", "label", "type"], registry=r
        )
        self.alerts_suppressed = CounterFamily(
            "edge_agent_alerts_suppressed_total",
            "Alerts not raised, by reason (cooldown: the label was confirmed again within decision.cooldown_s "
            "of its last end); one per hidden episode.",
            ["sensor", "label", "reason"],
            registry=r,
        )
        self.alert_active = GaugeFamily(
            "edge_agent_alert_active", "1 while an alert of this kind is active.", ["sensor", "kind"], registry=r
        )
        self.fault_active = GaugeFamily(
            "edge_agent_fault_active",
            "1 while a fault alert of this label is open on the sensor (labels from the model meta only).",
            ["sensor", "model", "label"],
            registry=r,
        )
        self.label_info = Gauge(
            "edge_agent_label_info",
            "1 per fault label of a running model: its description and severity (meta label_info).",
            ["model", "label", "description", "severity"],
            registry=r,
        )
        self.mqtt_connected = Gauge(
            "edge_agent_mqtt_connected", "1 while connected to the broker.", ["client"], registry=r
        )
        self.mqtt_publish_failures = Counter(
            "edge_agent_mqtt_publish_failures_total", "Publishes the client refused.", ["client"], registry=r
        )
        self.alerts_queued = Gauge("edge_agent_alerts_queued", "Alerts waiting for delivery to the broker.", registry=r)
        self.alerts_delivered = Counter(
            "edge_agent_alerts_delivered_total", "Alerts the broker acknowledged.", registry=r
        )
        self.alerts_dropped = Counter(
            "edge_agent_alerts_dropped_total",
            "Alert events dropped before delivery, by reason (count, bytes, age: outbox bounds; closed; shutdown).",
            ["reason"],
            registry=r,
        )
        self.alert_outbox_durable = Gauge(
            "edge_agent_alert_outbox_durable",
            "1 while alert events are stored on disk before they count as accepted; 0: in memory only (see the log).",
            registry=r,
        )
        self.notify_errors = Counter(
            "edge_agent_notify_errors_total",
            "Messages to systemd's notify socket (READY, WATCHDOG, STATUS) that could not be sent.",
            registry=r,
        )
        self.exporter_errors = Counter(
            "edge_agent_exporter_errors_total",
            "Failed attempts to serve /metrics at start (port taken, address not up yet); each is retried.",
            registry=r,
        )
        self.model_load_errors = Counter(
            "edge_agent_model_load_errors_total", "Failed attempts to load a model file at start.", registry=r
        )
        self.sink_events = Counter(
            "edge_agent_sink_events_total",
            "Alert events handed to a sink, failed ones included (those: edge_agent_sink_errors_total).",
            ["sink"],
            registry=r,
        )
        self.sink_errors = Counter(
            "edge_agent_sink_errors_total", "Alert events a sink failed to take (internal error).", ["sink"], registry=r
        )
        # reload (SIGHUP): totals and failures apart; the gauges follow Prometheus' own config_last_reload_* names
        self.config_reloads = Counter("edge_agent_config_reloads_total", "Configuration reloads attempted.", registry=r)
        self.config_reload_failures = Counter(
            "edge_agent_config_reload_failures_total",
            "Configuration reloads refused (the running configuration was kept).",
            registry=r,
        )
        self.config_last_reload_successful = Gauge(
            "edge_agent_config_last_reload_successful", "1 if the last reload was applied, 0 if refused.", registry=r
        )
        self.config_last_reload_success = Gauge(
            "edge_agent_config_last_reload_success_timestamp_seconds",
            "Wall-clock time the configuration was last loaded (start or reload).",
            registry=r,
        )
        self.config_restart_required = Gauge(
            "edge_agent_config_restart_required",
            "1 when the configuration file holds changes that only a restart applies.",
            registry=r,
        )
        self.audio = AudioMetrics(r)  # sound-card sources (edge_agent.sources.soundcard)
        self.streams = StreamMetrics(r)  # stream supervision (edge_agent.pipeline.supervision)
        self.anomaly = AnomalyMetrics(r)  # anomaly models: score, threshold, anomalous windows
        self.vibration = VibrationMetrics(r)  # [sources.indicators] gauges
        self.overload = OverloadMetrics(r)  # sink threads, fair queue, resamplers (issue 12)
        for reason in ALERT_DROP_REASONS:
            self.alerts_dropped.labels(reason)
        versions = (edge_agent.__version__, platform.python_version(), _torch_version())
        self.build_info.labels(*versions, allocator()).set(1)

    def init_sensor(self, sensor: str) -> None:
        """Export a sensor's series at zero so dashboards see it before its first sample (declared: a series
        gets its own object when its value first changes, edge_agent.metrics.series)."""
        for family in (self.samples_received, self.stream_gaps, self.signal_seconds, self.windows_emitted):
            family.declare(sensor, _NO_OTHER_LABELS)
        self.last_sample.declare(sensor, _NO_OTHER_LABELS)  # 0 until its first sample: EdgeAgentSensorSilent can fire
        self.streams.init_sensor(sensor)
        self.alert_active.declare(sensor, _ALERT_KINDS)

    def init_sensor_model(self, sensor: str, model: str, labels: tuple[str, ...], normal: tuple[str, ...]) -> None:
        """Export the per-label series of a sensor's model at zero (predictions, and alerts of its fault labels)."""
        faults = [label for label in labels if label not in normal]
        self.predictions.declare(sensor, [(model, label) for label in labels])
        self.alerts.declare(sensor, [(label, event_type) for label in faults for event_type in ALERT_EVENT_TYPES])
        self.alerts_suppressed.declare(sensor, [(label, reason) for label in faults for reason in SUPPRESS_REASONS])
        self.fault_active.declare(sensor, [(model, label) for label in faults])  # at 0 unless a fault of it is open

    def init_pipeline(self, queue_capacity_windows: int, sinks: tuple[str, ...] = ()) -> None:
        """Create the pipeline's series at zero: queue capacity, window drop reasons, sink events and errors.

        The agent's sink series come from its fan-out (edge_agent.pipeline.fanout), which creates them per sink.
        """
        self.queue_capacity.set(queue_capacity_windows)
        for reason in WINDOW_DROP_REASONS:
            self.windows_dropped.labels(reason)
        for sink in sinks:
            self.sink_events.labels(sink)
            self.sink_errors.labels(sink)

    def init_source(self, source: str) -> None:
        self.messages_received.labels(source)
        self.messages_foreign.labels(source)
        self.source_up.labels(source).set(0)
        for reason in PAYLOAD_ERROR_REASONS + INGRESS_ERROR_REASONS:
            self.payload_errors.labels(source, reason)


def _torch_version() -> str:
    try:
        import torch
    except ImportError:  # metrics work without torch (e.g. check-config on a bare machine)
        return "none"
    return str(torch.__version__)
