"""The decision engine's per-sensor state (:mod:`edge_agent.pipeline.decision`): votes and open episodes.

An episode restored after a restart (:meth:`DecisionEngine.restore`) is *pending* until the sensor
confirms it again: ``pending_until`` is the latest time it may stay open unconfirmed and
``pending_seen`` counts the predictions of its model that did not confirm it.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

from edge_agent.types import AlertEvent, Prediction


@dataclass
class Vote:
    label: str | None  # the fault label this prediction votes for, None if it does not vote
    confidence: float


@dataclass
class Episode:
    """An active alert: the last published event, when it was last confirmed (clock), its highest
    confidence and the last prediction of its model (the closing evidence of its end)."""

    last: AlertEvent
    confirmed_at: float
    peak: float = 1.0
    closing: Prediction | None = None
    pending_until: float | None = None  # restored and not confirmed again yet: the latest end
    pending_seen: int = 0  # predictions of its model since the restore that did not confirm it


@dataclass
class SensorState:
    votes: dict[str, deque[Vote]] = field(default_factory=dict)  # model -> last confirm_n votes
    last_prediction_at: float | None = None
    fault: Episode | None = None
    health: dict[str, Episode] = field(default_factory=dict)  # label -> episode
    asserted: set[str] = field(default_factory=set)  # health conditions the caller holds true
    cooldown_until: dict[tuple[str, str], float] = field(default_factory=dict)  # (kind, label) -> time
    classifier_label: str | None = None  # the latest label of a classifier on the sensor (anomaly alerts)

    def confirmed(self, confirm_k: int) -> set[str]:
        """The labels confirmed (``confirm_k`` votes) in the vote history of any of the sensor's models."""
        return {label for history in self.votes.values() for label in confirmed_labels(history, confirm_k)}


def confirmed_labels(history: deque[Vote], confirm_k: int) -> set[str]:
    """Labels with at least ``confirm_k`` votes in ``history``."""
    counts = Counter(vote.label for vote in history if vote.label is not None)
    return {label for label, count in counts.items() if count >= confirm_k}


def mean_confidence(history: deque[Vote], label: str) -> float:
    confidences = [v.confidence for v in history if v.label == label]
    return sum(confidences) / len(confidences)
