"""A periodic one-line INFO heartbeat of the running agent (``agent.heartbeat_s``; 0: off).

``heartbeat: 3 sensors, 11.7 windows/s, 0 open alerts, 1 stream problem (pump-1: ts_unit)``, read
from the agent's own metrics (the same numbers /metrics shows), windows/s since the previous line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry

logger = logging.getLogger(__name__)

NAMED_PROBLEMS = 5  # the line names the first few (sensor: reason); edge-agent status lists them all
Sample = tuple[str, dict[str, str], float]  # (sample name, labels, value)


def registry_samples(registry: CollectorRegistry) -> list[Sample]:
    return [(s.name, s.labels, s.value) for family in registry.collect() for s in family.samples]


def total(samples: Iterable[Sample], name: str) -> float:
    return sum(value for sample, _, value in samples if sample == name)


def summary(samples: list[Sample], windows_per_s: float | None) -> str:
    """The heartbeat's text from one reading of the metrics."""
    sensors = {labels["sensor"] for name, labels, _ in samples if name == "edge_agent_samples_received_total"}
    open_alerts = total(samples, "edge_agent_alert_active")
    problems = [
        f"{labels['sensor']}: {labels['reason']}"
        for name, labels, value in samples
        if name == "edge_agent_stream_problem" and value == 1
    ]
    rate = "-" if windows_per_s is None else f"{windows_per_s:.1f}"
    text = f"{_count(len(sensors), 'sensor')}, {rate} windows/s, {_count(round(open_alerts), 'open alert')}"
    if problems:
        named = ", ".join(problems[:NAMED_PROBLEMS]) + (", ..." if len(problems) > NAMED_PROBLEMS else "")
        text += f", {_count(len(problems), 'stream problem')} ({named})"
    return text


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


class Heartbeat:
    """Call :meth:`poll` often (the agent's tick); it logs every ``interval_s`` (0: never)."""

    def __init__(
        self, registry: CollectorRegistry, interval_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._registry = registry
        self._interval_s = interval_s
        self._clock = clock
        self._last_s = clock()
        self._last_windows = total(registry_samples(registry), "edge_agent_windows_processed_total")

    def poll(self) -> bool:
        """Log the heartbeat if it is due; True if it did."""
        now = self._clock()
        if self._interval_s <= 0 or now - self._last_s < self._interval_s:
            return False
        samples = registry_samples(self._registry)
        windows = total(samples, "edge_agent_windows_processed_total")
        per_s = (windows - self._last_windows) / (now - self._last_s)
        self._last_s, self._last_windows = now, windows
        logger.info("heartbeat: %s", summary(samples, per_s))
        return True
