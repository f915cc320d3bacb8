"""The unseen-speed page's fast path: the detector's arithmetic on cached features, the validation folds, the
reference table, the selection rule and the alerting rules (:mod:`edge_agent.training.anomaly_speeds` runs them).

Alerting rules (:data:`RULES`), each set from the cross-fitted healthy score streams of the learned clips:

- ``default``: the threshold, the agent's 3 of 5;
- ``learned``: the threshold, the debounce ``learn`` stores (:mod:`edge_agent.training.anomaly_debounce`);
- ``episode`` (fast path only): 3 of 5, the threshold raised to the lowest level at which no cross-fitted
  stream has 3 of any 5 windows above it (an episode-level threshold; kept where it is lower).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from edge_agent.training import anomaly_eval as ev
from edge_agent.training.anomaly_debounce import DEFAULT_CONFIRM_K, DEFAULT_CONFIRM_N, alerts, learn_debounce
from edge_agent.training.audio_data import BldcDataset, Clip

logger = logging.getLogger(__name__)

SPEEDS = tuple(s for (s,) in ev.MOTOR_SPEED_FOLDS)
DEFAULT_TARGET = 0.01  # the page's (and learn's) target false-window rate; candidates may set a stricter one
TIE_AUC = 0.005
MAX_FALSE_RATE = 0.02  # the goal on held-out healthy data
RULES = ("learned", "default", "episode")


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
    """Best validation AUC; within :data:`TIE_AUC` of it, the fewest validation clips the debounce gets wrong
    (healthy clips with an alert plus fault clips without one), then the fewest validation false windows above
    :data:`MAX_FALSE_RATE` (0 below it), then the most validation detections."""
    best_auc = max(s["auc"] for s in scores.values())
    close = {name: s for name, s in scores.items() if s["auc"] >= best_auc - TIE_AUC}

    def key(name: str) -> tuple[int, float, float]:
        s = close[name]
        wrong = s.get("false_alerts", 0) + s.get("missed", 0)
        return wrong, max(s["false_rate"] - MAX_FALSE_RATE, 0.0), -s["detection"]

    return min(close, key=key)


def alerting(crossed: list[np.ndarray], threshold: float, rule: str) -> tuple[float, int, int]:
    """``(threshold, k, n)`` of ``rule`` (see the module doc) from the cross-fitted healthy ``crossed`` streams."""
    if rule == "learned":
        learned = learn_debounce(crossed, threshold)
        return threshold, learned.confirm_k, learned.confirm_n
    if rule == "episode":
        k, n = DEFAULT_CONFIRM_K, DEFAULT_CONFIRM_N
        runs = [np.sort(np.lib.stride_tricks.sliding_window_view(c, n), axis=1)[:, -k] for c in crossed if len(c) >= n]
        return max([threshold, *(float(r.max()) for r in runs)]), k, n
    if rule != "default":
        raise ValueError(f"alerting rule must be one of {RULES}, got {rule!r}")
    return threshold, DEFAULT_CONFIRM_K, DEFAULT_CONFIRM_N


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
    rule: str = "default",
) -> dict:
    """Leave one learned speed out on the learned speeds only: mean validation AUC, false and detection rates,
    and how many validation healthy clips raise a debounced alert (and validation fault clips do not).

    The threshold of each validation fold is the ``quantile`` (1 - the target) of the cross-fitted scores of
    its 4 learned speeds (as ``learn --cross-fit`` sets it, without the tail fit), then the alerting ``rule``
    sets the debounce (or moves the threshold) from those cross-fitted streams (:func:`alerting`).
    """
    healthy = {s: feats[clip_of(dataset, motor, "healthy", s).path] for s in learned}  # type: ignore[union-attr]
    aucs, detections, false_rates, false_alerts, missed = [], [], [], 0, 0
    for speed in learned:
        others = tuple(s for s in learned if s != speed)
        scorer = FastScorer([healthy[s] for s in others], groups)
        crossed = [FastScorer([healthy[o] for o in others if o != s], groups)(healthy[s]) for s in others]
        threshold, k, n = alerting(crossed, float(np.quantile(np.concatenate(crossed), quantile)), rule)
        negatives = scorer(healthy[speed])
        false_rates.append(float((negatives > threshold).mean()))
        false_alerts += alerts(negatives > threshold, k, n)
        fault = clip_of(dataset, motor, "propeller", speed)
        if fault is not None:
            positives = scorer(feats[fault.path])
            aucs.append(ev.auc(negatives, positives))
            detections.append(float((positives > threshold).mean()))
            missed += not alerts(positives > threshold, k, n)
    return {
        "auc": float(np.mean(aucs)),
        "detection": float(np.mean(detections)),
        "false_rate": float(np.mean(false_rates)),
        "false_alerts": int(false_alerts),
        "missed": int(missed),
        "folds": len(aucs),
    }


def reference_rows(
    dataset: BldcDataset, feats: dict[str, np.ndarray], motor: str, groups: int, quantile: float, rule: str
) -> list[dict[str, Any]]:
    """One candidate on every test fold (fast path): rows for ``anomaly_eval.motor_summary``."""
    rows = []
    for held in SPEEDS:
        learned = [s for s in SPEEDS if s != held]
        healthy = {s: feats[clip_of(dataset, motor, "healthy", s).path] for s in learned}  # type: ignore[union-attr]
        scorer = FastScorer(list(healthy.values()), groups)
        crossed = [FastScorer([healthy[o] for o in learned if o != s], groups)(healthy[s]) for s in learned]
        threshold, k, n = alerting(crossed, float(np.quantile(np.concatenate(crossed), quantile)), rule)
        for condition in ("healthy", "propeller"):
            clip = clip_of(dataset, motor, condition, held)
            if clip is not None:
                scores = scorer(feats[clip.path]).tolist()
                anomalous = condition != "healthy"
                row = {"fold": str(held), "anomalous": anomalous, "scores": scores, "threshold": threshold}
                rows.append({**row, "confirm_k": k, "confirm_n": n})
    return rows
