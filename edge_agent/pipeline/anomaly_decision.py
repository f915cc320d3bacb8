"""Anomaly alerts (``kind="anomaly"``) of the decision engine (:mod:`edge_agent.pipeline.decision`).

An anomaly model's prediction carries a ``score`` and its model's ``threshold``; a window *votes*
when its score exceeds the threshold. The same k-of-n, hold-off and cooldown rules as for faults
apply, with the sensor's own histories (one per anomaly model) and at most one anomaly alert per
sensor, beside its fault alert (a sensor may run a classifier and an anomaly model together):

- ``new``: a voting window of a model whose last ``confirm_n`` windows hold ``confirm_k`` votes, no
  anomaly alert open and no cooldown. A model whose meta carries a learned ``debounce`` (the k of n that
  raised no episode on its healthy calibration streams) is debounced with the larger ``confirm_k`` and the
  larger ``confirm_n`` of its own and the ``[decision]`` section's. ``confidence`` is the share of votes among the last
  ``confirm_n`` windows (how much of the recent signal the model cannot explain); ``score`` and
  ``threshold`` are the deciding window's.
- ``unknown_condition``: the classifier on the same sensor says healthy (its latest label is a
  normal label) and no fault alert is open: a condition the closed-set classifier cannot name.
- ``update``: a voting, confirmed window whose share moved by ``update_min_delta``, or that changes
  ``unknown_condition`` (the classifier began or stopped calling it healthy).
- ``end``: ``hold_off_s`` without a confirmed window, or ``max_duration_s``; it carries the closing
  window of the episode's model (its score, and the share of votes then).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from edge_agent.config import DecisionSection
from edge_agent.pipeline.alert_evidence import fault_event
from edge_agent.pipeline.suppressed import SuppressedAlerts
from edge_agent.types import ANOMALOUS, AlertEvent, Prediction

ANOMALY = "anomaly"
_EPS = 1e-9


@dataclass
class _Episode:
    last: AlertEvent
    confirmed_at: float
    peak: float
    closing: Prediction | None = None
    closing_share: float = 0.0


@dataclass
class _State:
    votes: dict[str, deque[bool]] = field(default_factory=dict)  # anomaly model -> last confirm_n votes
    confirm: dict[str, tuple[int, int]] = field(default_factory=dict)  # anomaly model -> its (k, n) (_confirm)
    last_prediction_at: float | None = None
    episode: _Episode | None = None
    cooldown_until: dict[tuple[str, str], float] = field(default_factory=dict)


@dataclass(frozen=True)
class ClassifierView:
    """What the sensor's classifier says: its latest label (None: it has said nothing yet) and whether
    a fault alert is open on the sensor."""

    label: str | None
    fault_open: bool


class AnomalyDecisions:
    """Per-sensor anomaly episodes; the caller (the decision engine) serialises every call."""

    def __init__(
        self,
        new_id: Callable[[], str],
        suppressed: SuppressedAlerts,
        publish: Callable[[AlertEvent], AlertEvent],
    ) -> None:
        self._new_id = new_id
        self._suppressed = suppressed
        self._publish = publish  # counts the event and sets the active gauge (called with the episode updated)
        self._sensors: dict[str, _State] = {}

    def update(
        self, prediction: Prediction, sha256: str, now: float, config: DecisionSection, classifier: ClassifierView
    ) -> list[AlertEvent]:
        state = self._sensors.setdefault(prediction.sensor, _State())
        events = self._expire(prediction.sensor, state, now, config)
        if state.last_prediction_at is not None and now - state.last_prediction_at > config.hold_off_s:
            state.votes.clear()
        state.last_prediction_at = now
        confirm_k, confirm_n = state.confirm[prediction.model] = _confirm(config, prediction.debounce)
        history = state.votes.get(prediction.model, deque(maxlen=confirm_n))
        if history.maxlen != confirm_n:  # a reload brought a model with another debounce
            history = deque(history, maxlen=confirm_n)
        state.votes[prediction.model] = history
        history.append(prediction.anomalous)
        share = sum(history) / confirm_n
        episode = state.episode
        if episode is not None and any(sum(h) >= state.confirm[m][0] for m, h in state.votes.items()):
            episode.confirmed_at = now
        if prediction.anomalous and sum(history) >= confirm_k:
            unknown = classifier.label is not None and classifier.label in config.normal_labels
            unknown = unknown and not classifier.fault_open
            event = self._decide(state, prediction, share, now, sha256, config, unknown, classifier.label)
            events += [self._publish(event)] if event is not None else []
        if state.episode is not None and state.episode.last.model_name == prediction.model:
            state.episode.closing, state.episode.closing_share = prediction, share
        return events

    def tick(self, now: float, config: DecisionSection) -> list[AlertEvent]:
        return [e for sensor, state in self._sensors.items() for e in self._expire(sensor, state, now, config)]

    def active(self, sensor: str) -> AlertEvent | None:
        state = self._sensors.get(sensor)
        return state.episode.last if state is not None and state.episode is not None else None

    def reconfigure(self, config: DecisionSection) -> None:
        for state in self._sensors.values():
            for model, votes in state.votes.items():
                learned = state.confirm[model][1] if model in state.confirm else 0
                state.votes[model] = deque(votes, maxlen=max(config.confirm_n, learned))

    def _decide(
        self,
        state: _State,
        prediction: Prediction,
        share: float,
        now: float,
        sha256: str,
        config: DecisionSection,
        unknown: bool,
        classifier_label: str | None,
    ) -> AlertEvent | None:
        episode = state.episode
        if episode is None:
            if self._suppressed.holds(prediction.sensor, ANOMALY, ANOMALOUS, now, state.cooldown_until, config):
                return None
            event = _event("new", self._new_id(), prediction, share, now, sha256, unknown, classifier_label)
            state.episode = _Episode(event, now, share)
            return event
        last = episode.last
        moved = abs(share - last.confidence) >= config.update_min_delta - _EPS
        if not moved and unknown == last.unknown_condition:
            return None
        episode.peak = max(episode.peak, share)
        event = _event("update", last.id, prediction, share, last.started_at, sha256, unknown, classifier_label)
        episode.last = replace(event, peak_confidence=episode.peak)
        return episode.last

    def _expire(self, sensor: str, state: _State, now: float, config: DecisionSection) -> list[AlertEvent]:
        episode = state.episode
        if episode is None:
            return []
        max_end = episode.last.started_at + config.max_duration_s
        deadline = min(max_end, episode.confirmed_at + config.hold_off_s)
        if now < deadline:
            return []
        if deadline < max_end:
            state.votes.clear()  # hold-off end: what is left in the histories is stale
        state.episode = None
        state.cooldown_until[(ANOMALY, ANOMALOUS)] = deadline + config.cooldown_s
        return [self._publish(_end(episode, deadline))]


def _confirm(config: DecisionSection, learned: tuple[int, int] | None) -> tuple[int, int]:
    """The (k, n) of a model's windows: the section's, or the larger k and n of it and the model's."""
    if learned is None:
        return config.confirm_k, config.confirm_n
    return max(config.confirm_k, learned[0]), max(config.confirm_n, learned[1])


def _event(
    type_: str,
    id_: str,
    prediction: Prediction,
    share: float,
    started_at: float,
    sha256: str,
    unknown: bool,
    classifier_label: str | None,
) -> AlertEvent:
    return fault_event(
        type_,
        id_,
        prediction,
        ANOMALOUS,
        share,
        started_at,
        sha256,
        share,
        kind=ANOMALY,
        score=prediction.score,
        threshold=prediction.threshold,
        unknown_condition=unknown,
        classifier_label=classifier_label,
    )


def _end(episode: _Episode, ended_at: float) -> AlertEvent:
    last, closing = episode.last, episode.closing
    if closing is None or closing.score is None or not math.isfinite(closing.score):
        return replace(last, type="end", ended_at=ended_at, peak_confidence=episode.peak)
    return replace(
        last,
        type="end",
        ended_at=ended_at,
        window_start=closing.window.t_start,
        window_end=closing.window.t_end,
        confidence=episode.closing_share,
        score=closing.score,
        peak_confidence=episode.peak,
    )
