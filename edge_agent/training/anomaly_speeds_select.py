"""The unseen-speed page's selection rule and its fast scorer (the detector's arithmetic on cached features)."""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

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
