"""Values that flow between the agent's stages (sources -> windowing -> inference -> decision -> sinks).

All are immutable; arrays are numpy float32 shaped ``(channels, samples)``. Times are epoch seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Chunk:
    """A contiguous block of samples from one sensor, as a source delivers it.

    ``seq`` is the sender's sequence number (``None`` when the source has none); a jump in ``seq``
    or a ``t0`` that does not follow the previous chunk is a gap. ``received_at`` is the local
    monotonic-clock time (``time.monotonic()``) the chunk arrived, used for end-to-end latency.
    ``t0_estimated`` marks a ``t0`` derived from the arrival time (binary frames, JSON without
    ``ts``): arrival jitter under load is not a gap, so the windowing judges it more leniently.
    """

    sensor: str
    t0: float
    sample_rate_hz: float
    samples: np.ndarray  # float32 (channels, n)
    seq: int | None = None
    received_at: float = 0.0
    t0_estimated: bool = False  # True when the sender gave no time: t0 derived from the receive time

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[1])


@dataclass(frozen=True)
class Window:
    """``window_samples`` consecutive samples of one sensor at the model's rate.

    ``t_start``/``t_end`` are the epoch times of the first sample and one past the last;
    ``completed_at`` is ``time.monotonic()`` when the chunk that completed the window arrived.
    """

    sensor: str
    t_start: float
    t_end: float
    samples: np.ndarray  # float32 (channels, window_samples)
    completed_at: float = 0.0


ANOMALOUS = "anomalous"  # the label of an anomaly model's window above its threshold (and of its alerts)
NOT_ANOMALOUS = "normal"


@dataclass(frozen=True)
class Prediction:
    """A model's output for one window: class probabilities (softmax of the logits), or, from an
    ``anomaly`` model, its ``score`` and the model's ``threshold`` (anomalous: score > threshold;
    ``probabilities`` empty, ``label`` :data:`ANOMALOUS` or :data:`NOT_ANOMALOUS`, ``confidence`` 1)."""

    sensor: str
    model: str
    window: Window
    probabilities: dict[str, float]
    label: str
    confidence: float
    decided_at: float = 0.0  # time.monotonic() when inference finished
    model_sha256: str = ""  # the model file that made it (a reload may swap files between batches)
    noise_floor: float | None = None  # the model's own noise estimate for this window, when its file has one
    score: float | None = None  # anomaly models only: the window's score, higher is more anomalous
    threshold: float | None = None  # anomaly models only: the meta's threshold
    debounce: tuple[int, int] | None = None  # anomaly models only: the meta's learned (confirm_k, confirm_n)

    @property
    def anomalous(self) -> bool:
        """An anomaly model's window whose score exceeds its threshold (False for a classifier's)."""
        return self.score is not None and self.threshold is not None and self.score > self.threshold


@dataclass(frozen=True)
class AlertEvent:
    """One step of an alert's lifecycle: ``type`` is ``new``, ``update`` or ``end``.

    ``id`` is stable for the whole episode. ``kind`` is ``fault`` (a model's label), ``anomaly``
    (an anomaly model's windows above its threshold: ``score``, ``threshold``; ``unknown_condition``
    when the classifier on the same sensor says healthy meanwhile) or ``health`` (e.g. label ``silent``).
    Times are epoch seconds; ``ended_at`` only on ``end``.
    On ``end``, the window, ``probabilities`` and ``confidence`` are the closing evidence (the
    last window of the episode's model, the label's probability in it) and ``peak_confidence``
    the episode's highest confidence. ``description``, ``severity`` (the model's meta) and the
    sensor's ``machine``, ``location``, ``tags`` (``[sensors]``) are added on the way to the sinks.
    """

    type: str
    id: str
    sensor: str
    kind: str
    label: str
    confidence: float
    started_at: float
    window_start: float
    window_end: float
    model_name: str = ""
    model_sha256: str = ""
    probabilities: dict[str, float] = field(default_factory=dict)
    ended_at: float | None = None
    peak_confidence: float | None = None  # highest confidence of the episode so far
    description: str = ""  # what the label means (meta label_info; else the label)
    severity: str = ""  # none | info | warning | critical
    machine: str = ""
    location: str = ""
    tags: tuple[str, ...] = ()
    score: float | None = None  # anomaly alerts: the deciding (end: closing) window's score
    threshold: float | None = None  # anomaly alerts: the model's threshold
    unknown_condition: bool = False  # anomaly alerts: the sensor's classifier says healthy (a normal label)
    classifier_label: str | None = None  # anomaly alerts: the classifier's latest label on the sensor, if any


class StreamEvents(Protocol):
    """What a source that admits sensors itself (mqtt) tells its router besides the chunks."""

    def admit(self, sensor: str) -> None: ...

    def rejected(self, sensor: str, reason: str) -> None: ...

    def shed(self, sensor: str) -> bool: ...  # True: drop the sensor's message unparsed (overload; counted)

    def shed_set(self) -> frozenset[str]: ...  # every sensor shed now (sent to a receive process)

    def count_shed(self, sensor: str, n: int) -> None: ...  # messages a receive process shed

    def after_shed(self, sensor: str) -> None: ...  # its next message follows its shed ones (a jump of ours)

    def mark(self, sensor: str, hold_s: float, score: float) -> None: ...  # the change detector saw a change

    def is_suspect(self, sensor: str) -> bool: ...  # served first now (its change baseline does not learn)

    def suspects(self) -> frozenset[str]: ...  # every suspect now (sent to a receive process)

    def window_s(self) -> float: ...  # the longest window of the source's models (s)

    def hop_s(self) -> float: ...  # the longest hop of the source's models (s)

    def queue_room(self) -> tuple[int, int] | None: ...  # hops of stream the inference queue takes: now, at most
