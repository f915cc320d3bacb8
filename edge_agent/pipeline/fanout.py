"""Sink fan-out: every alert event to every sink, in order; one failing sink never blocks the others.

Per sink, ``edge_agent_sink_events_total`` counts the events handed to it and
``edge_agent_sink_errors_total`` those it failed to take (totals and failures apart, both at
zero from the start). Sensor announcements (retained no-alert state, Home Assistant discovery of a
sensor found on a wildcard topic) go through here too, counted as failures when they raise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from edge_agent.metrics import AgentMetrics
from edge_agent.sinks import Restartable, Sink, Sinks
from edge_agent.types import AlertEvent

logger = logging.getLogger(__name__)


class SinkFanout:
    """The agent's sinks; ``open`` takes them, ``send`` hands each event to all of them."""

    def __init__(self, metrics: AgentMetrics, sinks: Sinks | Sequence[Sink] = ()) -> None:
        self._metrics = metrics
        self._set = Sinks()
        self.sinks: tuple[Sink, ...] = ()
        self._counters: dict[str, tuple[Any, Any]] = {}
        self._take(sinks)

    @property
    def restartable(self) -> list[Restartable]:
        """The sinks with a thread of their own that the supervisor starts again when it died."""
        return self._set.restartable

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sink.name for sink in self.sinks)

    def open(self, sinks: Sinks | Sequence[Sink]) -> None:
        """Take ``sinks`` (their counters start at zero) and open each, in order."""
        self._take(sinks)
        for sink in self.sinks:
            sink.open()

    def close(self) -> None:
        """Close every sink; one that fails to close is logged and the others still close."""
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:
                logger.exception("closing sink %s failed", sink.name)

    def send(self, events: Iterable[AlertEvent]) -> None:
        for event in events:
            for sink in self.sinks:
                sent, failed = self._counters[sink.name]
                sent.inc()
                try:
                    sink.send(event)
                except Exception:  # one failing sink must not block the others; counted, logged with its name
                    failed.inc()
                    logger.exception("sink %s failed to take alert %s", sink.name, event.id)

    def announce(self, sensor: str, models: tuple[str, ...] = (), clear: bool = True) -> None:
        """A sensor is known: no alert survives a restart (``clear``: retained no-alert state), and the
        sinks learn the ``models`` of a sensor found live (Home Assistant discovery)."""
        calls = [(s, lambda s=s: s.clear_state(sensor)) for s in self._set.state_clearing if clear]
        calls += [(s, lambda s=s: s.add_sensor(sensor, models)) for s in self._set.sensor_aware if models]
        for sink, call in calls:
            try:
                call()
            except Exception:  # one failing sink must not stop the stream; counted, logged with its name
                self._counters[sink.name][1].inc()
                logger.exception("sink %s failed to announce sensor %s", sink.name, sensor)

    def restore(self, open_alerts: list[AlertEvent]) -> None:
        """The alerts still open from before a restart: the state-clearing sinks show them, not a cleared state."""
        for sink in self._set.state_clearing:
            self._guard(sink, lambda s=sink: s.restore(open_alerts), "restore open alerts")

    def forget(self, sensor: str) -> None:
        """A stored sensor left the configuration: its retained state and Home Assistant configs are withdrawn."""
        for sink in self._set.state_clearing:
            self._guard(sink, lambda s=sink: s.forget_state(sensor), f"withdraw sensor {sensor}")
        for aware in self._set.sensor_aware:
            self._guard(aware, lambda s=aware: s.remove_sensor(sensor), f"withdraw sensor {sensor}")

    def _guard(self, sink: Sink, call: Callable[[], None], what: str) -> None:
        try:
            call()
        except Exception:  # counted as the sink's failure, logged with its name; the others go on
            self._counters[sink.name][1].inc()
            logger.exception("sink %s failed to %s", sink.name, what)

    def _take(self, sinks: Sinks | Sequence[Sink]) -> None:
        """A plain sequence is sinks without optional capabilities (tests, a custom pipeline)."""
        self._set = sinks if isinstance(sinks, Sinks) else Sinks(all=list(sinks))
        self.sinks = tuple(self._set.all)
        m = self._metrics
        self._counters = {s.name: (m.sink_events.labels(s.name), m.sink_errors.labels(s.name)) for s in self.sinks}
