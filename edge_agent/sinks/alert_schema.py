"""The alert payload on ``<prefix>/<agent>/<sensor>/alert`` (schema version 2, docs/alert.schema.json)
and the retained sensor state on ``<prefix>/<agent>/<sensor>/state``.

Times are ISO 8601 UTC with milliseconds (``2026-11-22T10:00:00.123Z``); ``ended_at`` and
``duration_s`` are null unless ``type`` is ``end``. ``model.name`` / ``model.sha256`` are null for
alerts that no model raised (e.g. a ``health`` alert for a silent sensor); ``machine`` and
``location`` are null for a sensor without them in ``[sensors]``.

Version 2 (from 1): adds ``description``, ``severity``, ``peak_confidence``, ``duration_s``,
``machine``, ``location`` and ``tags``, and an ``end`` now carries its own closing evidence
(window, probabilities, confidence) instead of a copy of the last update's. Every key of version 1
keeps its name and type. It is a new version because a consumer could break: one that validates
with the version-1 schema (``additionalProperties: false``) refuses the new keys, and one that read
an end's confidence as the episode's would now read the closing window's (``peak_confidence``).

Still version 2: ``kind = "anomaly"`` alerts (an anomaly model's windows above its threshold) and
their ``anomaly`` object (``score``, ``threshold``, ``unknown_condition``, ``classifier_label``), present
on anomaly alerts only. Fault and health payloads are unchanged, byte for byte, so no consumer of
them breaks; a consumer validating with the earlier version-2 schema refuses an anomaly alert, a
kind it cannot have handled, whatever the version number said (a bump would instead break every
consumer that checks ``schema == 2`` on every alert).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge_agent.config.sensor_info import SensorInfo
from edge_agent.types import AlertEvent

SCHEMA_VERSION = 2
EVENT_TYPES = ("new", "update", "end")
ALERT_KINDS = ("fault", "health", "anomaly")
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "alert.schema.json"  # in a source checkout


def iso_utc(epoch_s: float) -> str:
    """``2026-11-22T10:00:00.123Z`` for an epoch time in seconds."""
    if not math.isfinite(epoch_s):
        raise ValueError(f"time must be finite, got {epoch_s}")
    text = datetime.fromtimestamp(epoch_s, tz=UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def alert_payload(event: AlertEvent, agent_id: str) -> dict[str, Any]:
    """The schema-2 document for one lifecycle event; ValueError on a type, kind or value it cannot carry."""
    if event.type not in EVENT_TYPES:
        raise ValueError(f"alert type must be one of {EVENT_TYPES}, got {event.type!r}")
    if event.kind not in ALERT_KINDS:
        raise ValueError(f"alert kind must be one of {ALERT_KINDS}, got {event.kind!r}")
    ended_at, duration_s = None, None
    if event.type == "end":
        if event.ended_at is None:
            raise ValueError(f"alert {event.id}: an end event needs ended_at")
        ended_at, duration_s = iso_utc(event.ended_at), round(max(0.0, event.ended_at - event.started_at), 3)
    peak = event.confidence if event.peak_confidence is None else max(event.peak_confidence, event.confidence)
    return {
        "schema": SCHEMA_VERSION,
        "type": event.type,
        "id": event.id,
        "agent": agent_id,
        "sensor": event.sensor,
        "kind": event.kind,
        "label": event.label,
        "confidence": _probability(event.confidence, "confidence"),
        "probabilities": {str(k): _probability(v, f"probabilities[{k}]") for k, v in event.probabilities.items()},
        "started_at": iso_utc(event.started_at),
        "ended_at": ended_at,
        "window": {"start": iso_utc(event.window_start), "end": iso_utc(event.window_end)},
        "model": {"name": event.model_name or None, "sha256": event.model_sha256 or None},
        "description": event.description or event.label,
        "severity": event.severity or None,
        "peak_confidence": _probability(peak, "peak_confidence"),
        "duration_s": duration_s,
        **sensor_context(event),
        **({"anomaly": anomaly_part(event)} if event.kind == "anomaly" else {}),
    }


def anomaly_part(event: AlertEvent) -> dict[str, Any]:
    """The ``anomaly`` object of an anomaly alert: score, threshold, unknown_condition, classifier_label."""
    if event.score is None or event.threshold is None:
        raise ValueError(f"alert {event.id}: an anomaly alert needs score and threshold")
    for name, value in (("score", event.score), ("threshold", event.threshold)):
        if not math.isfinite(value):
            raise ValueError(f"alert {event.id}: {name} must be finite, got {value}")
    return {
        "score": round(float(event.score), 6),
        "threshold": round(float(event.threshold), 6),
        "unknown_condition": bool(event.unknown_condition),
        "classifier_label": event.classifier_label,
    }


def sensor_context(event: AlertEvent | None, info: SensorInfo | None = None) -> dict[str, Any]:
    """The sensor's place (``[sensors]``): ``{"machine", "location", "tags"}`` from ``info`` if given, else
    from ``event``; null / [] when not known."""
    place: Any = info if info is not None else event
    if place is None:
        return {"machine": None, "location": None, "tags": []}
    return {"machine": place.machine or None, "location": place.location or None, "tags": list(place.tags)}


def state_document(current: AlertEvent | None, since_s: float) -> dict[str, Any]:
    """The sensor's state: ``{"label", "kind", "confidence", "since", "alert_id"}`` of the alert shown,
    or, with none open, all null but ``since`` (``since_s``: when the last alert ended, or now).

    Null rather than a "normal" label: the sink does not know each model's healthy class name, and
    "normal" could be a real class."""
    if current is None:
        return {"label": None, "kind": None, "confidence": None, "since": iso_utc(since_s), "alert_id": None}
    return {
        "label": current.label,
        "kind": current.kind,
        "confidence": round(float(current.confidence), 6),
        "since": iso_utc(current.started_at),
        "alert_id": current.id,
    }


def sensor_state(current: AlertEvent | None, since_s: float, info: SensorInfo | None = None) -> dict[str, Any]:
    """The retained state topic: :func:`state_document`, the shown alert's ``description`` and ``severity``
    (null with none open) and the sensor's ``machine``, ``location``, ``tags`` (``info``, else the alert's)."""
    label = {"description": None, "severity": None}
    if current is not None:
        label = {"description": current.description or current.label, "severity": current.severity or None}
    return {**state_document(current, since_s), **label, **sensor_context(current, info)}


class OpenAlerts:
    """Each sensor's open alerts by kind, for its state topic (a fault is shown before an anomaly, an anomaly
    before a health alert); while an anomaly alert is open the state also has its ``anomaly`` object
    (score, threshold, unknown_condition, classifier_label), whatever alert it shows."""

    def __init__(self, info: Mapping[str, SensorInfo] | None = None) -> None:
        self._open: dict[str, dict[str, AlertEvent]] = {}  # sensor -> kind -> open alert
        self._info = dict(info or {})  # sensor id -> its machine, location, tags ([sensors])

    def state_after(self, event: AlertEvent) -> dict[str, Any]:
        """The sensor's state document once ``event`` has happened."""
        open_alerts = self._open.setdefault(event.sensor, {})
        if event.type == "end":
            open_alerts.pop(event.kind, None)
        else:
            open_alerts[event.kind] = event
        current = open_alerts.get("fault") or open_alerts.get("anomaly") or open_alerts.get("health")
        since_s = event.ended_at if event.ended_at is not None else event.window_end
        state = sensor_state(current, since_s, self._info.get(event.sensor))
        anomaly = open_alerts.get("anomaly")
        return {**state, "anomaly": anomaly_part(anomaly)} if anomaly is not None else state

    def cleared(self, sensor: str, now_s: float) -> dict[str, Any]:
        """Forget the sensor's open alerts (a retained state left from before is being cleared): no-alert state."""
        self._open.pop(sensor, None)
        return sensor_state(None, now_s, self._info.get(sensor))


def encode(document: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON; NaN or infinity is a ValueError (it would not be JSON)."""
    return json.dumps(document, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode()


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _probability(value: float, name: str) -> float:
    number = float(value)
    if not 0.0 <= number <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be within [0, 1], got {number}")
    return round(number, 6)
