"""What each alert event of the decision engine reports (:mod:`edge_agent.pipeline.decision`).

- ``new`` / ``update``: the deciding prediction's window and ``probabilities``; ``confidence`` is the
  mean probability of the label over the windows that voted for it among the last ``confirm_n``
  (so it differs from ``probabilities[label]``, the deciding window's alone).
- ``end`` of a fault: its own closing evidence, not a copy of the last update: the last window the
  episode's model saw on the sensor before the end (the one whose votes no longer confirmed the
  fault, or the last before a maximum-duration end), that window's ``probabilities``, and as
  ``confidence`` the label's probability in it. ``peak_confidence`` is the highest ``confidence``
  the episode reached; the duration is ``ended_at - started_at``.
- ``end`` of a health alert: the window is the moment it ended (``ended_at``), confidence 1.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from edge_agent.types import AlertEvent, Prediction

FAULT = "fault"


def fault_event(
    type_: str,
    id_: str,
    prediction: Prediction,
    label: str,
    confidence: float,
    started_at: float,
    model_sha256: str,
    peak: float,
    kind: str = FAULT,
    **extra: Any,
) -> AlertEvent:
    """A ``new`` or ``update`` decided by ``prediction`` (``extra``: its kind's fields, e.g. an anomaly score)."""
    return AlertEvent(
        type=type_,
        id=id_,
        sensor=prediction.sensor,
        kind=kind,
        label=label,
        confidence=confidence,
        started_at=started_at,
        window_start=prediction.window.t_start,
        window_end=prediction.window.t_end,
        model_name=prediction.model,
        model_sha256=model_sha256,
        probabilities=dict(prediction.probabilities),
        peak_confidence=max(peak, confidence),
        **extra,
    )


def end_event(last: AlertEvent, ended_at: float, closing: Prediction | None, peak: float) -> AlertEvent:
    """The ``end`` of the episode whose last published event is ``last``, with its closing evidence."""
    if last.kind != FAULT or closing is None:
        return replace(
            last, type="end", ended_at=ended_at, window_start=ended_at, window_end=ended_at, peak_confidence=peak
        )
    return replace(
        last,
        type="end",
        ended_at=ended_at,
        window_start=closing.window.t_start,
        window_end=closing.window.t_end,
        probabilities=dict(closing.probabilities),
        confidence=float(closing.probabilities.get(last.label, 0.0)),
        peak_confidence=peak,
    )
