"""The unseen-speed page's fast path: the detector's arithmetic on cached features, the validation folds, the
reference table and the selection rule (:mod:`edge_agent.training.anomaly_speeds` runs them)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from edge_agent.training import anomaly_eval as ev
from edge_agent.training.audio_data import BldcDataset, Clip

logger = logging.getLogger(__name__)

SPEEDS = tuple(s for (s,) in ev.MOTOR_SPEED_FOLDS)
DEFAULT_TARGET = 0.01  # the page's (and learn's) target false-window rate; candidates may set a stricter one
TIE_AUC = 0.005
MAX_FALSE_RATE = 0.02  # the goal on held-out healthy data


class FastScorer:
    """The ``excess`` (``groups == 0``) or ``consensus`` detector's arithmetic on cached front-end features
    ``(windows, F)`` (mirrors ``fit_standardisation``; ``consensus``: the median over the bands of each of
    ``groups`` band-major feature blocks)."""

    def __init__(self, healthy: list[np.ndarray], groups: int = 0) -> None:
        x = np.concatenate(healthy)
        self.mean = x.mean(axis=0)
        std = x.std(axis=0, ddof=1)
        self.std = np.maximum(std, max(float(np.median(std)) * 0.05, 1e-6))
        self.groups = groups

    def __call__(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mean) / self.std
        if self.groups:
            z = np.median(z.reshape(len(z), -1, self.groups), axis=1)
        return (np.maximum(z, 0.0) ** 2).mean(axis=1)


def choose(scores: dict[str, dict]) -> str:
    """Best validation AUC; within :data:`TIE_AUC` of it, the fewest validation healthy clips with a debounced
    alert, then the fewest validation false windows above :data:`MAX_FALSE_RATE` (0 below it), then the most
    validation detections."""
    best_auc = max(s["auc"] for s in scores.values())
    close = {name: s for name, s in scores.items() if s["auc"] >= best_auc - TIE_AUC}

    def key(name: str) -> tuple[int, float, float]:
        s = close[name]
        return s.get("false_alerts", 0), max(s["false_rate"] - MAX_FALSE_RATE, 0.0), -s["detection"]

    return min(close, key=key)


def clip_of(dataset: BldcDataset, motor: str, condition: str, rpm: int) -> Clip | None:
    found = [c for c in dataset.clips if (c.motor, c.condition, c.rpm) == (motor, condition, rpm)]
    return found[0] if found else None


def validation(
    dataset: BldcDataset,
    feats: dict[str, np.ndarray],
    motor: str,
    learned: tuple[int, ...],
    groups: int = 0,
    quantile: float = 1.0 - DEFAULT_TARGET,
) -> dict:
    """Leave one learned speed out on the learned speeds only: mean validation AUC, false and detection rates,
    and how many validation healthy clips raise a debounced alert.

    The threshold of each validation fold is the ``quantile`` (1 - the target) of the cross-fitted scores of
    its 4 learned speeds (as ``learn --cross-fit`` sets it, without the tail fit).
    """
    healthy = {s: feats[clip_of(dataset, motor, "healthy", s).path] for s in learned}  # type: ignore[union-attr]
    aucs, detections, false_rates, false_alerts = [], [], [], 0
    for speed in learned:
        others = tuple(s for s in learned if s != speed)
        scorer = FastScorer([healthy[s] for s in others], groups)
        crossed = [FastScorer([healthy[o] for o in others if o != s], groups)(healthy[s]) for s in others]
        threshold = float(np.quantile(np.concatenate(crossed), quantile))
        negatives = scorer(healthy[speed])
        false_rates.append(float((negatives > threshold).mean()))
        false_alerts += ev.debounced_alert(negatives > threshold)
        fault = clip_of(dataset, motor, "propeller", speed)
        if fault is not None:
            positives = scorer(feats[fault.path])
            aucs.append(ev.auc(negatives, positives))
            detections.append(float((positives > threshold).mean()))
    return {
        "auc": float(np.mean(aucs)),
        "detection": float(np.mean(detections)),
        "false_rate": float(np.mean(false_rates)),
        "false_alerts": int(false_alerts),
        "folds": len(aucs),
    }


def reference(
    dataset: BldcDataset, feats: dict[str, np.ndarray], motor: str, groups: int, quantile: float
) -> dict[str, Any]:
    rows = []
    for held in SPEEDS:
        learned = [s for s in SPEEDS if s != held]
        healthy = {s: feats[clip_of(dataset, motor, "healthy", s).path] for s in learned}  # type: ignore[union-attr]
        scorer = FastScorer(list(healthy.values()), groups)
        crossed = [FastScorer([healthy[o] for o in learned if o != s], groups)(healthy[s]) for s in learned]
        threshold = float(np.quantile(np.concatenate(crossed), quantile))
        for condition in ("healthy", "propeller"):
            clip = clip_of(dataset, motor, condition, held)
            if clip is not None:
                scores = scorer(feats[clip.path]).tolist()
                anomalous = condition != "healthy"
                rows.append({"fold": str(held), "anomalous": anomalous, "scores": scores, "threshold": threshold})
    return ev.motor_summary(rows)
