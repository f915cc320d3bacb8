"""The alerting rule as part of what is learned: a debounce (``confirm_k`` of ``confirm_n``) from healthy streams.

A threshold set per window (a quantile of healthy scores) says nothing about how the windows above it
cluster: with long windows at a short hop (1 s at 128 ms: eight windows share most of their samples)
one stretch of livelier healthy running gives a *run* of windows above the threshold, and the agent's
default 3 of 5 passes a run of 3. :func:`learn_debounce` looks at the healthy score **streams** the
threshold was set on (the cross-fitted or held-back scores of each recording, in time order, at the
agent's hop) and picks the smallest ``n >= DEFAULT_CONFIRM_N`` whose ``k = ceil(DEFAULT_CONFIRM_K * n /
DEFAULT_CONFIRM_N)`` (the default's share of votes, 3/5) raises no episode on any of them. The model's
meta carries it as ``debounce``; the decision engine uses, for that model's windows, the larger ``k`` and
the larger ``n`` of the meta's and the ``[decision]`` section's.

The cost is detection delay: a fault that flags every window alerts after ``k`` windows instead of 3
(:func:`first_alert_s`). Where no ``n`` up to :data:`MAX_CONFIRM_N` is quiet, the rule says so
(``reached`` False) and keeps the largest.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_CONFIRM_K, DEFAULT_CONFIRM_N = 3, 5  # the agent's [decision] defaults
MAX_CONFIRM_N = 4 * DEFAULT_CONFIRM_N


@dataclass(frozen=True)
class Debounce:
    """A learned ``confirm_k`` of ``confirm_n``: the smallest quiet one on ``streams`` healthy streams of
    ``windows`` windows (``reached`` False: none up to :data:`MAX_CONFIRM_N` was quiet)."""

    confirm_k: int
    confirm_n: int
    reached: bool
    streams: int
    windows: int

    def to_meta(self) -> dict[str, Any]:
        return {
            "confirm_k": self.confirm_k,
            "confirm_n": self.confirm_n,
            "reached": self.reached,
            "healthy_streams": self.streams,
            "healthy_windows": self.windows,
            "rule": (
                f"the smallest n >= {DEFAULT_CONFIRM_N}, k = ceil({DEFAULT_CONFIRM_K} n / {DEFAULT_CONFIRM_N}), "
                "for which no healthy calibration stream has k windows above the threshold in any n"
            ),
        }


def alerts(flags: np.ndarray, confirm_k: int, confirm_n: int) -> bool:
    """Whether ``confirm_k`` of any ``confirm_n`` consecutive windows are flagged (the agent's k-of-n)."""
    flags = np.asarray(flags, dtype=int)
    if len(flags) < confirm_n:
        return bool(flags.sum() >= confirm_k)
    return bool((np.convolve(flags, np.ones(confirm_n, int), mode="valid") >= confirm_k).any())


def confirm_k_for(confirm_n: int) -> int:
    """The votes ``confirm_n`` windows need at the default's share (3 of 5)."""
    return math.ceil(DEFAULT_CONFIRM_K * confirm_n / DEFAULT_CONFIRM_N)


def learn_debounce(streams: Sequence[np.ndarray], threshold: float, max_n: int = MAX_CONFIRM_N) -> Debounce:
    """The smallest quiet debounce on healthy score ``streams`` at ``threshold`` (see the module doc)."""
    flagged = [np.asarray(s) > threshold for s in streams if len(s)]
    windows = sum(len(f) for f in flagged)
    for confirm_n in range(DEFAULT_CONFIRM_N, max_n + 1):
        confirm_k = confirm_k_for(confirm_n)
        if not any(alerts(f, confirm_k, confirm_n) for f in flagged):
            return Debounce(confirm_k, confirm_n, True, len(flagged), windows)
    logger.warning("no debounce up to %d windows is quiet on the healthy calibration streams", max_n)
    return Debounce(confirm_k_for(max_n), max_n, False, len(flagged), windows)


def streams_at_hop(streams: Sequence[np.ndarray], score_hop: int, hop: int) -> list[np.ndarray]:
    """Streams scored every ``score_hop`` samples as the agent sees them, every ``hop``: each phase of the
    finer stream is one stream (``hop`` must be a multiple of ``score_hop``)."""
    if hop % score_hop:
        raise ValueError(f"hop {hop} is not a multiple of the calibration hop {score_hop}")
    step = hop // score_hop
    return [np.asarray(s)[phase::step] for s in streams for phase in range(step)]


def first_alert_s(flags: np.ndarray, confirm_k: int, confirm_n: int, hop_s: float, window_s: float) -> float | None:
    """Seconds from the stream's start to the end of the window that completes the first alert (None: none)."""
    counts = np.convolve(np.asarray(flags, dtype=int), np.ones(confirm_n, int))[: len(flags)]  # trailing n
    hits = np.flatnonzero(counts >= confirm_k)
    return None if not len(hits) else float(hits[0]) * hop_s + window_s
