"""Per-sensor alert state machine: predictions in, alert lifecycle events (new/update/end) out.

Pure code: no I/O, starts no threads; the clock is injected. Calls are serialised by a lock, so
``update`` (inference thread) and ``tick`` (supervisor thread) may interleave. All lifecycle
times (``started_at``, ``ended_at``, hold-off, cooldown, maximum duration) are on that clock
(epoch seconds, ``time.time`` by default); ``window_start``/``window_end`` carry the deciding
window's signal times (the sender's clock).

Fault alerts (``kind="fault"``), at most one per sensor:

- A prediction *votes* for its label when the label is not a normal label and its confidence is
  at least ``min_confidence``. A label is *confirmed* when at least ``confirm_k`` of the last
  ``confirm_n`` predictions of one model for that sensor vote for it (histories are kept per
  model, so two models on one sensor never dilute each other).
- ``new``: a prediction votes for a confirmed label that is not in cooldown and no fault alert is
  active. ``started_at`` is the decision time; ``confidence`` is the mean confidence of the votes
  for that label among the last ``confirm_n``; ``probabilities`` and the window are the deciding
  prediction's. The id (``uuid4().hex`` by default) stays the same for the whole episode.
- ``update``: a prediction votes for a confirmed label and that label differs from the last
  published one, or the mean confidence moved by at least ``update_min_delta`` since then;
  the update carries that prediction's window and probabilities and the episode's ``started_at``.
  While the active label stays confirmed it is kept (no flapping between two confirmed labels).
- ``end``: for ``hold_off_s`` no prediction has found any fault label confirmed (k of n still
  holding counts, so after the fault stops the alert lasts up to ``n - k`` more windows plus
  the hold-off; ``ended_at`` is the last such prediction's time plus ``hold_off_s``), or
  ``max_duration_s`` has passed since ``started_at`` (``ended_at = started_at + max_duration_s``).
  An end reports its own closing evidence (:mod:`edge_agent.pipeline.alert_evidence`). Ends are
  found by ``update`` and ``tick``, whichever runs first; ``ended_at`` does not depend on which.
- After an end, a ``new`` with the same label waits until ``ended_at + cooldown_s``; what that
  holds back is counted and logged (:mod:`edge_agent.pipeline.suppressed`).
- When a sensor's predictions stop for more than ``hold_off_s`` its vote histories are cleared,
  so stale votes never confirm a fault when the stream comes back.

Health alerts (``kind="health"``, e.g. ``silent``), any number of labels per sensor: the caller
asserts or clears a condition with :meth:`DecisionEngine.health`; asserting starts an episode
(``new``) at once, clearing ends it at once; maximum duration and cooldown apply as for faults,
and a still-asserted condition starts a new episode when its cooldown passes (found by ``tick``).

Restart (:meth:`DecisionEngine.restore`): the episodes open when the agent last stopped (from the
store, :mod:`edge_agent.pipeline.episode_store`) are open again under their ids, without a
``new``, and *pending*: a fault continues (normal rules from then on) as soon as a prediction of
its model finds a fault label confirmed, a health alert as soon as its condition is asserted. A
fault ends (``ended_at`` that prediction's time) when ``confirm_n`` predictions of its model came
without a confirmation; either kind ends when it is still pending ``hold_off_s + RESTORE_GRACE_S``
after the restore (``ended_at`` then), or when its condition is cleared, or at its maximum duration.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable

from edge_agent.config import DecisionSection
from edge_agent.config.checks import decision_errors
from edge_agent.metrics import AgentMetrics
from edge_agent.pipeline.alert_evidence import end_event, fault_event
from edge_agent.pipeline.anomaly_decision import ANOMALY, AnomalyDecisions, ClassifierView
from edge_agent.pipeline.episodes import Episode, SensorState, Vote, confirmed_labels, mean_confidence
from edge_agent.pipeline.suppressed import SuppressedAlerts
from edge_agent.types import AlertEvent, Prediction

FAULT = "fault"
HEALTH = "health"
_EPS = 1e-9  # confidences that differ by update_min_delta up to rounding count as a change
RESTORE_GRACE_S = 60.0  # a restored episode's sensor may take this long (plus hold_off_s) to confirm it


class DecisionEngine:
    """Turn :class:`Prediction` s and health conditions into :class:`AlertEvent` s, per sensor."""

    def __init__(
        self,
        config: DecisionSection,
        *,
        clock: Callable[[], float] = time.time,
        id_factory: Callable[[], str] | None = None,
        metrics: AgentMetrics | None = None,
    ) -> None:
        _validate(config)
        self.config = config
        self._clock = clock
        self._new_id = id_factory or (lambda: uuid.uuid4().hex)
        self._metrics = metrics
        self._suppressed = SuppressedAlerts(metrics, clock)
        self._normal = frozenset(config.normal_labels)
        self._sensors: dict[str, SensorState] = {}
        self._lock = threading.Lock()  # update (inference thread) and tick (main thread) may interleave
        self._anomaly = AnomalyDecisions(self._new_id, self._suppressed, self._publish)  # kind "anomaly"

    def update(self, prediction: Prediction, *, model_sha256: str = "") -> list[AlertEvent]:
        """Take one prediction (decided now, by the clock); return the lifecycle events it causes."""
        with self._lock:
            return self._update(prediction, model_sha256, self._clock())

    def tick(self, now: float) -> list[AlertEvent]:
        """Find time-based transitions at ``now``: ends (hold-off, max duration), health restarts."""
        with self._lock:
            events: list[AlertEvent] = []
            for sensor, state in self._sensors.items():
                if state.fault is not None or state.health or state.asserted:  # else nothing to expire or start
                    events += self._expire(sensor, state, now)
                    for label in sorted(state.asserted - state.health.keys()):
                        events += self._start_health(sensor, state, label, now)
            return events + self._anomaly.tick(now, self.config)

    def health(self, sensor: str, label: str, active: bool, now: float) -> list[AlertEvent]:
        """Assert (``active``) or clear a health condition ``label`` of ``sensor`` at ``now``."""
        with self._lock:
            return self._health(sensor, label, active, now)

    def restore(self, open_alerts: Iterable[AlertEvent], now: float) -> None:
        """Open again the episodes whose last published events are ``open_alerts`` (a restart), pending."""
        with self._lock:
            for event in open_alerts:
                state = self._sensors.setdefault(event.sensor, SensorState())
                peak = max(event.peak_confidence or 0.0, event.confidence)
                episode = Episode(event, now, peak, pending_until=now + self.config.hold_off_s + RESTORE_GRACE_S)
                if event.kind == FAULT:
                    state.fault = episode
                else:
                    state.health[event.label] = episode
                self._publish(event, count=False)

    def reconfigure(self, config: DecisionSection) -> None:
        """Apply new settings (a reload) keeping open alerts, cooldowns and the newest votes.

        Vote histories are cut to the new ``confirm_n`` (newest kept); new settings apply from
        the next prediction or tick. ``ValueError`` (naming the key) leaves the old settings.
        """
        _validate(config)
        with self._lock:
            self.config = config
            self._normal = frozenset(config.normal_labels)
            for state in self._sensors.values():
                for model, votes in state.votes.items():
                    state.votes[model] = deque(votes, maxlen=config.confirm_n)
            self._anomaly.reconfigure(config)

    def active(self, sensor: str) -> AlertEvent | None:
        """The last published event of the sensor's active fault alert, or None."""
        with self._lock:
            state = self._sensors.get(sensor)
            return state.fault.last if state is not None and state.fault is not None else None

    def active_anomaly(self, sensor: str) -> AlertEvent | None:
        """The last published event of the sensor's active anomaly alert, or None."""
        with self._lock:
            return self._anomaly.active(sensor)

    def active_health(self, sensor: str) -> list[AlertEvent]:
        """The last published events of the sensor's active health alerts."""
        with self._lock:
            state = self._sensors.get(sensor)
            return [e.last for e in state.health.values()] if state is not None else []

    def _update(self, prediction: Prediction, model_sha256: str, now: float) -> list[AlertEvent]:
        sensor = prediction.sensor
        state = self._sensors.setdefault(sensor, SensorState())
        events = self._expire(sensor, state, now)
        if prediction.score is not None:  # an anomaly model's window (edge_agent.pipeline.anomaly_decision)
            view = ClassifierView(state.classifier_label, state.fault is not None)
            return events + self._anomaly.update(prediction, model_sha256, now, self.config, view)
        state.classifier_label = prediction.label
        if state.last_prediction_at is not None and now - state.last_prediction_at > self.config.hold_off_s:
            state.votes.clear()
        state.last_prediction_at = now
        history = state.votes.setdefault(prediction.model, deque(maxlen=self.config.confirm_n))
        history.append(self._vote(prediction))
        if state.fault is not None and state.confirmed(self.config.confirm_k):
            state.fault.confirmed_at, state.fault.pending_until = now, None
        elif state.fault is not None and state.fault.pending_until is not None:
            events += self._still_pending(sensor, state, prediction, now)
        label = history[-1].label
        if label is not None and label in confirmed_labels(history, self.config.confirm_k):
            confidence = mean_confidence(history, label)
            event = self._decide(state, prediction, label, confidence, now, model_sha256)
            events += [self._publish(event)] if event is not None else []
            if state.fault is not None and state.fault.last.label == label:  # the episode's label only
                state.fault.peak = max(state.fault.peak, confidence)
        if state.fault is not None and state.fault.last.model_name == prediction.model:
            state.fault.closing = prediction
        return events

    def _still_pending(self, sensor: str, state: SensorState, prediction: Prediction, now: float) -> list[AlertEvent]:
        """A restored fault episode its model did not confirm: ended after ``confirm_n`` such predictions."""
        assert state.fault is not None
        if state.fault.last.model_name and state.fault.last.model_name != prediction.model:
            return []
        state.fault.pending_seen += 1
        if state.fault.pending_seen < self.config.confirm_n:
            return []
        state.fault.closing = prediction
        return [self._end(sensor, state, FAULT, state.fault.last.label, now)]

    def _decide(
        self, state: SensorState, prediction: Prediction, label: str, confidence: float, now: float, sha256: str
    ) -> AlertEvent | None:
        """The ``new`` or ``update`` a prediction voting for the confirmed ``label`` causes, if any."""
        if state.fault is None:
            if self._suppressed.holds(prediction.sensor, FAULT, label, now, state.cooldown_until, self.config):
                return None
            event = fault_event("new", self._new_id(), prediction, label, confidence, now, sha256, confidence)
            state.fault = Episode(event, now, confidence)
            return event
        last = state.fault.last
        if label != last.label and last.label in state.confirmed(self.config.confirm_k):
            return None  # the active label is still confirmed: keep it
        if label == last.label and abs(confidence - last.confidence) < self.config.update_min_delta - _EPS:
            return None
        peak = state.fault.peak
        state.fault.last = fault_event("update", last.id, prediction, label, confidence, last.started_at, sha256, peak)
        return state.fault.last

    def _health(self, sensor: str, label: str, active: bool, now: float) -> list[AlertEvent]:
        state = self._sensors.setdefault(sensor, SensorState())
        events = self._expire(sensor, state, now)
        if active:
            state.asserted.add(label)
            if label in state.health:
                state.health[label].pending_until = None  # a restored episode continues
            else:
                events += self._start_health(sensor, state, label, now)
        else:
            state.asserted.discard(label)
            if label in state.health:
                events.append(self._end(sensor, state, HEALTH, label, now))
        return events

    def _vote(self, prediction: Prediction) -> Vote:
        votes = prediction.label not in self._normal and prediction.confidence >= self.config.min_confidence
        return Vote(prediction.label if votes else None, float(prediction.confidence))

    def _start_health(self, sensor: str, state: SensorState, label: str, now: float) -> list[AlertEvent]:
        if self._suppressed.holds(sensor, HEALTH, label, now, state.cooldown_until, self.config):
            return []
        event = AlertEvent(
            type="new",
            id=self._new_id(),
            sensor=sensor,
            kind=HEALTH,
            label=label,
            confidence=1.0,
            started_at=now,
            window_start=now,
            window_end=now,
        )
        state.health[label] = Episode(event, now)
        return [self._publish(event)]

    def _expire(self, sensor: str, state: SensorState, now: float) -> list[AlertEvent]:
        """End the episodes whose hold-off or maximum duration has run out by ``now``."""
        events = []
        if state.fault is not None:
            pending = state.fault.pending_until
            deadline = min(
                state.fault.last.started_at + self.config.max_duration_s,
                state.fault.confirmed_at + self.config.hold_off_s if pending is None else pending,
            )
            if now >= deadline:
                if deadline < state.fault.last.started_at + self.config.max_duration_s:
                    state.votes.clear()  # hold-off end: what is left in the histories is stale
                events.append(self._end(sensor, state, FAULT, state.fault.last.label, deadline))
        for label, episode in list(state.health.items()):
            deadline = episode.last.started_at + self.config.max_duration_s
            deadline = min(deadline, episode.pending_until) if episode.pending_until is not None else deadline
            if now >= deadline:
                events.append(self._end(sensor, state, HEALTH, label, deadline))
        return events

    def _end(self, sensor: str, state: SensorState, kind: str, label: str, ended_at: float) -> AlertEvent:
        """Close the active fault episode (or the health episode ``label``); start the label's cooldown."""
        if kind == FAULT and state.fault is not None:
            episode, state.fault = state.fault, None
        elif kind == HEALTH and label in state.health:
            episode = state.health.pop(label)
        else:
            raise ValueError(f"no active {kind} alert {label!r} on sensor {sensor!r} to end")
        event = end_event(episode.last, ended_at, episode.closing, episode.peak)
        state.cooldown_until[(kind, event.label)] = ended_at + self.config.cooldown_s
        return self._publish(event)

    def _publish(self, event: AlertEvent, *, count: bool = True) -> AlertEvent:
        """Count the event and set the sensor's active gauge for its kind."""
        if self._metrics is not None:
            if count:
                self._metrics.alerts.labels(event.sensor, event.label, event.type).inc()
            state = self._sensors[event.sensor]
            active = state.fault is not None if event.kind == FAULT else bool(state.health)
            active = self._anomaly.active(event.sensor) is not None if event.kind == ANOMALY else active
            self._metrics.alert_active.labels(event.sensor, event.kind).set(1 if active else 0)
        return event


def _validate(config: DecisionSection) -> None:
    """ValueError naming every bad key of ``config``: the loader's limits (``edge_agent.config.checks``)."""
    if errors := decision_errors(config):
        raise ValueError("; ".join(errors))
