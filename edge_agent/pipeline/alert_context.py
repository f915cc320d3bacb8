"""What turns a decision into a maintenance report: each alert event on its way to the sinks gets
its label's ``description`` and ``severity`` (the model's meta ``label_info``) and the sensor's
``machine``, ``location`` and ``tags`` (``[sensors]`` of the configuration). An anomaly alert is a
``warning``; its description says *unknown condition on this machine* when the sensor's classifier
calls it healthy meanwhile (:func:`anomaly_description`).

A label the meta does not describe reads as itself; its severity is ``critical`` for a fault (the
severity every fault alert had before labels carried one) and ``warning`` for a health alert.

It also keeps the series that name the fault label in Prometheus: ``edge_agent_fault_active``
(sensor, model, label: 1 while that fault is open) and ``edge_agent_label_info`` (model, label,
description, severity: 1 per fault label of a running model), which the ``EdgeAgentFaultActive``
rule joins. Both are bounded by the models' labels: an event never adds a label of its own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import replace

from edge_agent.config import AgentConfig
from edge_agent.metrics import AgentMetrics
from edge_agent.modelmeta import LabelInfo, ModelMeta
from edge_agent.types import AlertEvent

logger = logging.getLogger(__name__)

FAULT_SEVERITY = "critical"  # a fault label without a severity in its meta
HEALTH_SEVERITY = "warning"
NORMAL_SEVERITY = "none"
ANOMALY_SEVERITY = "warning"
HEALTH_DESCRIPTIONS = {"silent": "no sound above the floor: microphone, cable or sound card"}
UNKNOWN_CONDITION = "unknown condition on this machine"  # an anomaly the classifier calls healthy


class AlertContext:
    """Adds the label's and the sensor's context to events; keeps the fault-label series. Thread-safe."""

    def __init__(self, metrics: AgentMetrics) -> None:
        self._metrics = metrics
        self._lock = threading.Lock()
        self._metas: dict[str, ModelMeta] = {}
        self._config = AgentConfig()
        self._info_series: set[tuple[str, str, str, str]] = set()
        self._open: dict[str, tuple[str, str]] = {}  # sensor -> (model, label) of its open fault

    def configure(self, metas: Mapping[str, ModelMeta], config: AgentConfig) -> None:
        """The running models and configuration (start, reload): ``edge_agent_label_info`` follows them."""
        with self._lock:
            self._metas, self._config = dict(metas), config
            series = {
                (name, label, *self._label(meta, label))
                for name, meta in metas.items()
                for label in meta.labels
                if label not in config.decision.normal_labels
            }
            for stale in self._info_series - series:
                self._metrics.label_info.remove(*stale)
            for labels in series:
                self._metrics.label_info.labels(*labels).set(1)
            self._info_series = series

    def apply(self, events: Iterable[AlertEvent]) -> list[AlertEvent]:
        """``events`` with their context, in order; the fault-label gauge moves with them."""
        with self._lock:
            enriched = [self._enrich(event) for event in events]
            for event in enriched:
                self._track(event)
            return enriched

    def _enrich(self, event: AlertEvent) -> AlertEvent:
        sensor = self._config.sensor_info(event.sensor)
        if event.kind == "fault":
            meta = self._metas.get(event.model_name)
            description, severity = self._label(meta, event.label)
        elif event.kind == "anomaly":
            description, severity = anomaly_description(event), ANOMALY_SEVERITY
        else:
            description, severity = HEALTH_DESCRIPTIONS.get(event.label, event.label), HEALTH_SEVERITY
        return replace(
            event,
            description=description,
            severity=severity,
            machine=sensor.machine,
            location=sensor.location,
            tags=sensor.tags,
        )

    def _label(self, meta: ModelMeta | None, label: str) -> tuple[str, str]:
        info = meta.describe(label) if meta is not None else LabelInfo(label)
        default = NORMAL_SEVERITY if label in self._config.decision.normal_labels else FAULT_SEVERITY
        return info.description, info.severity or default

    def _track(self, event: AlertEvent) -> None:
        if event.kind != "fault":
            return
        shown = self._open.pop(event.sensor, None)
        if shown is not None:
            self._metrics.fault_active.labels(event.sensor, *shown).set(0)
        if event.type != "end":
            self._open[event.sensor] = (event.model_name, event.label)
            self._metrics.fault_active.labels(event.sensor, event.model_name, event.label).set(1)


def anomaly_description(event: AlertEvent) -> str:
    """What an anomaly alert means: an unknown condition when the classifier calls the machine healthy."""
    baseline = f"the signal departs from the healthy baseline learned by model {event.model_name}"
    if event.unknown_condition:
        return f"{UNKNOWN_CONDITION}: {baseline}, while classifier says {event.classifier_label}"
    return f"anomaly: {baseline}"
