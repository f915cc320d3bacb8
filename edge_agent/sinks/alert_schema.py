"""The alert payload on ``<prefix>/<agent>/<sensor>/alert`` (schema version 1, docs/alert.schema.json)
and the retained sensor state on ``<prefix>/<agent>/<sensor>/state``.

Times are ISO 8601 UTC with milliseconds (``2026-11-22T10:00:00.123Z``); ``ended_at`` is null
unless ``type`` is ``end``. ``model.name`` / ``model.sha256`` are null for alerts that no model
raised (e.g. a ``health`` alert for a silent sensor).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge_agent.types import AlertEvent

SCHEMA_VERSION = 1
EVENT_TYPES = ("new", "update", "end")
ALERT_KINDS = ("fault", "health")
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "alert.schema.json"  # in a source checkout


def iso_utc(epoch_s: float) -> str:
    """``2026-11-22T10:00:00.123Z`` for an epoch time in seconds."""
    if not math.isfinite(epoch_s):
        raise ValueError(f"time must be finite, got {epoch_s}")
    text = datetime.fromtimestamp(epoch_s, tz=UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def alert_payload(event: AlertEvent, agent_id: str) -> dict[str, Any]:
    """The schema-1 document for one lifecycle event; ValueError on a type, kind or value it cannot carry."""
    if event.type not in EVENT_TYPES:
        raise ValueError(f"alert type must be one of {EVENT_TYPES}, got {event.type!r}")
    if event.kind not in ALERT_KINDS:
        raise ValueError(f"alert kind must be one of {ALERT_KINDS}, got {event.kind!r}")
    ended_at = None
    if event.type == "end":
        if event.ended_at is None:
            raise ValueError(f"alert {event.id}: an end event needs ended_at")
        ended_at = iso_utc(event.ended_at)
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
    }


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


class OpenAlerts:
    """Each sensor's open alerts by kind, for its state document (a fault is shown before a health alert)."""

    def __init__(self) -> None:
        self._open: dict[str, dict[str, AlertEvent]] = {}  # sensor -> kind -> open alert

    def state_after(self, event: AlertEvent) -> dict[str, Any]:
        """The sensor's state document once ``event`` has happened."""
        open_alerts = self._open.setdefault(event.sensor, {})
        if event.type == "end":
            open_alerts.pop(event.kind, None)
        else:
            open_alerts[event.kind] = event
        current = open_alerts.get("fault") or open_alerts.get("health")
        return state_document(current, event.ended_at if event.ended_at is not None else event.window_end)

    def cleared(self, sensor: str, now_s: float) -> dict[str, Any]:
        """Forget the sensor's open alerts (a retained state left from before is being cleared): no-alert state."""
        self._open.pop(sensor, None)
        return state_document(None, now_s)


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
