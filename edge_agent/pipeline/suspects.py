"""Which sensors the window queue serves first ("suspects"), and the bound that keeps fairness on.

A sensor becomes a suspect in two ways:

- ``fault``: the model classified one of its windows as a fault (or anomalous); it stays one until
  ``SUSPECT_CLEAR_WINDOWS`` normal windows in a row;
- ``change``: the change detector at ingress (edge_agent.sources.change) saw its signal leave its own
  healthy baseline; it stays one for the mark's hold time (each new mark extends it). The detector
  never raises an alert: it only makes the model see the sensor's next windows at once.

Suspects are never shed, lose a window to a full queue last and fill up to half of each batch
first (edge_agent.pipeline.window_queue). **The bound:** the suspects' windows may be at most
``SUSPECT_SHARE`` of the windows the worker takes per second (its capacity while the queue is full),
i.e. at most ``SUSPECT_SHARE x taken/s / (windows/s of one suspect)`` suspects, both rates measured
over the previous second. A mark (new or renewing) past the bound is refused and counted
(``edge_agent_suspect_marks_refused_total``): in a plant-wide event the first sensors to change are
served first, every other one stays in the fair round-robin as without the detector, and a refused
suspect drops out (a ``change`` one when its hold ends, a ``fault`` one at once), so the set shrinks
back to the bound within about a second. Before the first second of measurements every mark is
admitted. Not thread-safe on its own: the window queue calls it under its lock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from edge_agent.common.ratelimit import RateLimitedLog
from edge_agent.metrics import AgentMetrics

logger = logging.getLogger(__name__)

SUSPECT_CLEAR_WINDOWS = 5  # normal windows in a row that end a fault suspicion (the decision's default n)
SUSPECT_SHARE = 0.25  # at most this share of the windows analysed per second goes to suspects
RATE_INTERVAL_S = 1.0


class Suspects:
    """The suspect set (insertion-ordered: the order they are served in), its reasons, holds and bound."""

    def __init__(
        self, metrics: AgentMetrics, *, clock: Callable[[], float] = time.monotonic, share: float = SUSPECT_SHARE
    ) -> None:
        self._members: dict[str, None] = {}
        self._log = RateLimitedLog(logger)
        self._normal_run: dict[str, int] = {}  # fault suspects -> normal windows in a row since their last fault
        self._held_until: dict[str, float] = {}  # change suspects -> end of their hold (clock seconds)
        self._clock = clock
        self._share = share
        self._metrics = metrics.overload
        self._interval_start = clock()
        self._taken = 0  # windows taken in this interval
        self._suspect_puts = 0  # suspects' windows put in this interval
        self._suspect_time = 0.0  # suspect-seconds in this interval (sum over suspects of their time as one)
        self._changed_at = self._interval_start
        self._limit: int | None = None  # from the previous interval's rates; None: not measured yet

    def __contains__(self, sensor: object) -> bool:
        return sensor in self._members

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._members))

    def __len__(self) -> int:
        return len(self._members)

    @property
    def limit(self) -> int | None:
        """The most suspects the previous second's rates allow (None: not measured yet)."""
        return self._limit

    def names(self) -> frozenset[str]:
        return frozenset(self._members)

    def verdict(self, sensor: str, *, fault: bool) -> None:
        """The model's verdict on one of ``sensor``'s windows."""
        if fault:
            known = sensor in self._members
            if not self._admit(sensor, "fault"):
                self._normal_run.pop(sensor, None)
                if sensor not in self._held_until:
                    self._leave(sensor)
                return
            self._normal_run[sensor] = 0
            if not known:
                self._join(sensor, "fault")
        elif sensor in self._normal_run:
            self._normal_run[sensor] += 1
            if self._normal_run[sensor] >= SUSPECT_CLEAR_WINDOWS:
                del self._normal_run[sensor]
                if sensor not in self._held_until:
                    self._leave(sensor)

    def mark(self, sensor: str, hold_s: float, score: float = 0.0) -> bool:
        """The change detector's mark: a suspect until ``hold_s`` from now, if the bound allows (False: refused)."""
        self.expire()
        known = sensor in self._members
        if not self._admit(sensor, "change"):
            return False
        self._held_until[sensor] = max(self._held_until.get(sensor, 0.0), self._clock() + hold_s)
        if not known:
            self._join(sensor, "change")
            self._log.log(  # one line a minute for every sensor together (a plant-wide change is one line)
                logging.INFO,
                "change",
                "sensor %s: its signal changed (%.1f spreads from its baseline): served first for %.1f s",
                sensor,
                score,
                hold_s,
            )
        return True

    def expire(self) -> None:
        """End the holds that ran out (O(change suspects)); the rates roll over each second."""
        now = self._clock()
        for sensor in [s for s, until in self._held_until.items() if until <= now]:
            del self._held_until[sensor]
            if sensor not in self._normal_run:
                self._leave(sensor)
        self._roll(now)

    def taken(self, windows: int) -> None:
        self._taken += windows

    def put(self, sensor: str) -> None:
        if sensor in self._members:
            self._suspect_puts += 1

    def _admit(self, sensor: str, reason: str) -> bool:
        count = len(self._members) + (sensor not in self._members)
        if self._limit is None or count <= self._limit:
            return True
        self._metrics.suspect_marks_refused.labels(reason).inc()
        self._log.warning(
            "bound",
            "sensor %s: not served first (%s): %d suspects already take their share of capacity",
            sensor,
            reason,
            len(self._members),
        )
        return False

    def _join(self, sensor: str, reason: str) -> None:
        self._accrue()
        self._members[sensor] = None
        self._metrics.suspect_marks.labels(reason).inc()
        self._metrics.suspects.set(len(self._members))

    def _leave(self, sensor: str) -> None:
        self._accrue()
        self._members.pop(sensor, None)
        self._metrics.suspects.set(len(self._members))

    def _accrue(self) -> None:
        now = self._clock()
        self._suspect_time += len(self._members) * (now - self._changed_at)
        self._changed_at = now

    def _roll(self, now: float) -> None:
        elapsed_s = now - self._interval_start
        if elapsed_s < RATE_INTERVAL_S:
            return
        self._accrue()
        if self._suspect_puts and self._suspect_time > 0:  # windows/s of one suspect, and the capacity now
            per_suspect = self._suspect_puts / self._suspect_time
            self._limit = max(1, int(self._share * self._taken / elapsed_s / per_suspect))
        self._interval_start, self._taken, self._suspect_puts, self._suspect_time = now, 0, 0, 0.0
