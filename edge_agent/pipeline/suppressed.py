"""Alerts the decision engine holds back because of ``decision.cooldown_s``: counted and logged, never silent.

While a label's cooldown runs, every prediction that confirms it again would start an alert; the
engine raises none. Each such *hidden episode* is counted once in
``edge_agent_alerts_suppressed_total{sensor, label, reason="cooldown"}`` and logged (at most one
line a minute per sensor and label, the next one saying how many were left out). A hidden episode
ends like a real one: after ``decision.hold_off_s`` without a suppressed confirmation.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping

from edge_agent.common.ratelimit import RateLimitedLog
from edge_agent.config import DecisionSection
from edge_agent.metrics import AgentMetrics

logger = logging.getLogger(__name__)

LOG_INTERVAL_S = 60.0


class SuppressedAlerts:
    """Count and log the alerts a cooldown suppressed; ``clock`` is the decision engine's (for the log's rate limit)."""

    def __init__(self, metrics: AgentMetrics | None, clock: Callable[[], float]) -> None:
        self._metrics = metrics
        self._log = RateLimitedLog(logger, interval_s=LOG_INTERVAL_S, clock=clock)
        self._last_at: dict[tuple[str, str, str], float] = {}  # (sensor, kind, label) -> last suppression

    def holds(
        self,
        sensor: str,
        kind: str,
        label: str,
        now: float,
        cooldown_until: Mapping[tuple[str, str], float],
        config: DecisionSection,
    ) -> bool:
        """True while the cooldown of ``(kind, label)`` on ``sensor`` holds a new alert back at ``now``.

        ``cooldown_until`` is the sensor's ``(kind, label) -> end of cooldown``; a held-back alert is
        counted and logged.
        """
        until = cooldown_until.get((kind, label), -math.inf)
        if now >= until:
            return False
        self._cooldown(sensor, kind, label, now, until, config)
        return True

    def _cooldown(self, sensor: str, kind: str, label: str, now: float, until: float, config: DecisionSection) -> None:
        key = (sensor, kind, label)
        last = self._last_at.get(key)
        self._last_at[key] = now
        if last is not None and now - last <= config.hold_off_s:
            return  # the same hidden episode goes on
        if self._metrics is not None:
            self._metrics.alerts_suppressed.labels(sensor, label, "cooldown").inc()
        self._log.warning(
            (sensor, label),
            "%s %s on sensor %s confirmed again but not raised: decision.cooldown_s = %g s after its last alert "
            "ended holds new ones back for another %.1f s (counted in edge_agent_alerts_suppressed_total)",
            kind,
            label,
            sensor,
            config.cooldown_s,
            until - now,
        )
