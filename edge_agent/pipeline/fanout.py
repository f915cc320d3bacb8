"""Sink fan-out: every alert event to every sink, in order; one failing sink never blocks the others.

Per sink, ``edge_agent_sink_events_total`` counts the events handed to it and
``edge_agent_sink_errors_total`` those it failed to take (totals and failures apart, both at
zero from the start). Sensor announcements (retained no-alert state, Home Assistant discovery of a
sensor found on a wildcard topic) go through here too, counted as failures when they raise.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from edge_agent.metrics import AgentMetrics
from edge_agent.plugins import sink_name
from edge_agent.types import AlertEvent

logger = logging.getLogger(__name__)


class SinkFanout:
    """The agent's sinks; ``open`` takes them, ``send`` hands each event to all of them."""

    def __init__(self, metrics: AgentMetrics, sinks: Sequence[object] = ()) -> None:
        self._metrics = metrics
        self.sinks: tuple[object, ...] = ()
        self._counters: dict[str, tuple[Any, Any]] = {}
        self._take(sinks)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sink_name(sink) for sink in self.sinks)

    def open(self, sinks: Sequence[object]) -> None:
        """Take ``sinks`` (their counters start at zero) and open each, in order."""
        self._take(sinks)
        for sink in self.sinks:
            sink.open()  # type: ignore[attr-defined]

    def close(self) -> None:
        """Close every sink; one that fails to close is logged and the others still close."""
        for sink in self.sinks:
            try:
                sink.close()  # type: ignore[attr-defined]
            except Exception:
                logger.exception("closing sink %s failed", sink_name(sink))

    def send(self, events: Iterable[AlertEvent]) -> None:
        for event in events:
            for sink in self.sinks:
                sent, failed = self._counters[sink_name(sink)]
                sent.inc()
                try:
                    sink.send(event)  # type: ignore[attr-defined]
                except Exception:  # one failing sink must not block the others; counted, logged with its name
                    failed.inc()
                    logger.exception("sink %s failed to take alert %s", sink_name(sink), event.id)

    def announce(self, sensor: str, models: tuple[str, ...] = (), clear: bool = True) -> None:
        """A sensor is known: no alert survives a restart (``clear``: retained no-alert state), and the
        sinks learn the ``models`` of a sensor found live (Home Assistant discovery)."""
        for sink in self.sinks:
            try:
                if clear and hasattr(sink, "clear_state"):
                    sink.clear_state(sensor)
                if models and hasattr(sink, "add_sensor"):
                    sink.add_sensor(sensor, models)
            except Exception:  # one failing sink must not stop the stream; counted, logged with its name
                self._counters[sink_name(sink)][1].inc()
                logger.exception("sink %s failed to announce sensor %s", sink_name(sink), sensor)

    def _take(self, sinks: Sequence[object]) -> None:
        self.sinks = tuple(sinks)
        m = self._metrics
        self._counters = {
            name: (m.sink_events.labels(name), m.sink_errors.labels(name)) for name in (sink_name(s) for s in sinks)
        }
