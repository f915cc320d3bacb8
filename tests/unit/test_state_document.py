"""The retained ``<sensor>/state`` document, built in one place for alerts, ends and cleared states."""

from __future__ import annotations

from edge_agent.sinks.alert_schema import state_document
from edge_agent.types import AlertEvent

T0 = 1_795_860_000.0  # 2026-11-28T10:00:00Z


def test_an_open_alert_is_shown_with_its_start() -> None:
    alert = AlertEvent(
        type="update",
        id="pumpA-fault-1",
        sensor="pumpA",
        kind="fault",
        label="inner_race",
        confidence=0.912345678,
        started_at=T0,
        window_start=T0 + 5,
        window_end=T0 + 5.085,
    )
    assert state_document(alert, T0 + 99) == {
        "label": "inner_race",
        "kind": "fault",
        "confidence": 0.912346,
        "since": "2026-11-28T10:00:00.000Z",
        "alert_id": "pumpA-fault-1",
    }


def test_no_open_alert_is_all_null_but_since() -> None:
    assert state_document(None, T0 + 2.1) == {
        "label": None,
        "kind": None,
        "confidence": None,
        "since": "2026-11-28T10:00:02.100Z",
        "alert_id": None,
    }
