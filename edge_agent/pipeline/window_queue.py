"""The inference worker's bounded window queue, fair across sensors (see :class:`WindowQueue`)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Container
from dataclasses import dataclass

from edge_agent.metrics import AgentMetrics
from edge_agent.pipeline.suspects import SUSPECT_CLEAR_WINDOWS, Suspects
from edge_agent.types import Window

__all__ = ["SUSPECT_CLEAR_WINDOWS", "QueuedWindow", "WindowQueue"]


@dataclass(frozen=True)
class QueuedWindow:
    model: str
    window: Window


class WindowQueue:
    """Bounded queue of windows, fair across sensors: a sensor that floods it cannot starve the others.

    ``put`` on a full queue drops one window of the sensor with the most windows waiting (the
    sender's own if it is one of them), the oldest of *its own*: so no sensor holds more than its
    fair share of the bound while others wait (max-min fairness). Each drop is counted
    (``queue_full``, and per sensor). ``take_batch`` takes windows of one model, the model of the
    oldest window, round-robin over that model's sensors (each sensor's oldest first, the sensor
    served longest ago first), so every sensor keeps getting windows analysed under overload.

    Suspects first: a sensor whose last window was classified as a fault (:meth:`observe`; until
    ``SUSPECT_CLEAR_WINDOWS`` normal ones in a row) or whose signal the change detector at ingress
    saw change (:meth:`mark`, for a hold time) is never shed at ingress, loses a window to a
    full queue only when no other sensor has one waiting, and fills up to half of each batch before
    the round-robin: under 9x overload a fair share is 1.3 windows/s, too few for k of n windows
    of a one-second fault, while a suspect's whole stream costs ~1 % of capacity. The half keeps
    every other sensor analysed when many are suspects; their number is bounded by a share of
    capacity (edge_agent.pipeline.suspects).
    Operations cost O(models), except choosing the model when several have windows (O(sensors)).
    """

    def __init__(self, capacity: int, metrics: AgentMetrics, *, clock: Callable[[], float] = time.monotonic) -> None:
        if capacity < 1:
            raise ValueError(f"queue capacity must be >= 1, got {capacity}")
        # model -> sensor -> its windows (arrival number, window); only non-empty deques, rotation order
        self._by_model: dict[str, dict[str, deque[tuple[int, Window]]]] = {}
        self._model_size: dict[str, int] = {}
        self._waiting = _Counts()  # windows waiting per sensor, with the largest count at hand
        self._size = 0
        self._arrivals = 0
        self._capacity = capacity
        self._metrics = metrics
        self._dropped: dict[str, object] = {}  # sensor -> its drop counter child
        self._suspects = Suspects(metrics, clock=clock)  # served first, never shed (edge_agent.pipeline.suspects)
        self._ready = threading.Condition()

    def put(self, item: QueuedWindow) -> None:
        sensor = item.window.sensor
        with self._ready:
            if self._size >= self._capacity:
                self._drop_one(sensor)
            sensors = self._by_model.setdefault(item.model, {})
            waiting = sensors.get(sensor)
            if waiting is None:
                waiting = sensors[sensor] = deque()
            waiting.append((self._arrivals, item.window))
            self._model_size[item.model] = self._model_size.get(item.model, 0) + 1
            self._waiting.add(sensor, 1)
            self._suspects.put(sensor)
            self._arrivals += 1
            self._size += 1
            self._metrics.queue_depth.set(self._size)
            self._ready.notify()

    def take_batch(self, max_batch: int, max_wait_s: float, stop: threading.Event) -> list[QueuedWindow]:
        """Up to ``max_batch`` windows of the oldest window's model, round-robin over its sensors;
        empty if nothing came in 0.2 s."""
        with self._ready:
            if not self._size:
                self._ready.wait(timeout=0.2)
            if not self._size:
                return []
            deadline = time.monotonic() + max_wait_s
            model = self._oldest_model()
            while self._model_size.get(model, 0) < max_batch and not stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._ready.wait(timeout=remaining):
                    break
            self._suspects.expire()
            batch = self._round_robin(model, max_batch)
            self._suspects.taken(len(batch))
            self._size -= len(batch)
            self._metrics.queue_depth.set(self._size)
            return batch

    def observe(self, sensor: str, *, fault: bool) -> None:
        """The worker's verdict on one of ``sensor``'s windows: a fault makes it a suspect (see the class)."""
        with self._ready:
            self._suspects.verdict(sensor, fault=fault)

    def mark(self, sensor: str, hold_s: float, score: float = 0.0) -> bool:
        """The change detector saw ``sensor``'s signal change: a suspect for ``hold_s`` (False: the bound refused)."""
        with self._ready:
            return self._suspects.mark(sensor, hold_s, score)

    def is_suspect(self, sensor: str) -> bool:
        return sensor in self._suspects  # read without the lock: an estimate is enough

    def suspects(self) -> frozenset[str]:
        """The suspects now (a receive process freezes their change baselines)."""
        with self._ready:
            self._suspects.expire()
            return self._suspects.names()

    def _round_robin(self, model: str, max_batch: int) -> list[QueuedWindow]:
        sensors = self._by_model[model]
        batch: list[QueuedWindow] = []
        if self._suspects:  # suspects' windows first, oldest first, up to half the batch
            urgent = max(1, max_batch // 2)
            for sensor in [name for name in self._suspects if name in sensors]:
                waiting = sensors[sensor]
                while waiting and len(batch) < urgent:
                    batch.append(QueuedWindow(model, waiting.popleft()[1]))
                    self._waiting.add(sensor, -1)
                if not waiting:
                    del sensors[sensor]
        while sensors and len(batch) < max_batch:
            for sensor in list(sensors):
                if len(batch) >= max_batch:
                    break
                waiting = sensors.pop(sensor)  # served: to the back of the rotation
                batch.append(QueuedWindow(model, waiting.popleft()[1]))
                self._waiting.add(sensor, -1)
                if waiting:
                    sensors[sensor] = waiting
        self._model_size[model] -= len(batch)
        return batch

    def _drop_one(self, arriving: str) -> None:
        """Drop the oldest window of the sensor with the most waiting (``arriving`` if it is one), a suspect's last."""
        if self._waiting.get(arriving) == self._waiting.largest and arriving not in self._suspects:
            victim = arriving
        else:
            victim = self._waiting.largest_except(self._suspects)
        model = min(
            (name for name, sensors in self._by_model.items() if victim in sensors),
            key=lambda name: self._by_model[name][victim][0][0],
        )
        waiting = self._by_model[model][victim]
        waiting.popleft()
        if not waiting:
            del self._by_model[model][victim]
        self._model_size[model] -= 1
        self._waiting.add(victim, -1)
        self._size -= 1
        self.count_dropped(victim, 1)

    def count_dropped(self, sensor: str, windows: int) -> None:
        """``windows`` of ``sensor`` lost to a full queue: dropped here, or not cut at all (:meth:`room`)."""
        self._metrics.windows_dropped.labels("queue_full").inc(windows)
        counter = self._dropped.get(sensor)
        if counter is None:
            counter = self._dropped[sensor] = self._metrics.overload.sensor_windows_dropped.labels(sensor)
        counter.inc(windows)  # type: ignore[attr-defined]

    def _oldest_model(self) -> str:
        """The model whose queue holds the oldest window (call only when the queue is not empty)."""
        models = [name for name, size in self._model_size.items() if size]
        if len(models) == 1:
            return models[0]
        return min(models, key=lambda name: min(q[0][0] for q in self._by_model[name].values()))

    def over_share(self, sensor: str) -> bool:
        """True while the queue is full and ``sensor`` holds at least its fair share of it: a source sheds
        the sensor's next message before parsing it (read without the lock: an estimate is enough)."""
        if self._size < self._capacity or sensor in self._suspects:
            return False
        return self._waiting.get(sensor) >= self._share()

    def room(self, sensor: str) -> int | None:
        """How many of ``sensor``'s next windows, its newest, a full queue ends up holding: its fair share,
        or as many as it holds now if more (newer windows then displace its own older ones); None while
        the queue is not full or the sensor is a suspect (all of them). A router cuts only that many, so a
        message of many hops costs no windows that the queue would drop. Exact when the other sensors
        hold their shares; an estimate otherwise (read without the lock)."""
        if self._size < self._capacity or sensor in self._suspects:
            return None
        return max(self._share(), self._waiting.get(sensor))

    @property
    def capacity(self) -> int:
        return self._capacity

    def free(self) -> int:
        """Windows the queue has room for now before it drops any (read without the lock: an estimate)."""
        return max(0, self._capacity - self._size)

    def over_share_set(self) -> frozenset[str]:
        """Every sensor :meth:`over_share` is True for now (a receive process sheds them): O(those sensors)."""
        with self._ready:
            self._suspects.expire()
            if self._size < self._capacity:
                return frozenset()
            return frozenset(self._waiting.at_least(self._share(), self._suspects))

    def _share(self) -> int:
        """A sensor's fair share of the full queue: capacity over the sensors waiting, at least one window."""
        return max(1, self._capacity // max(1, self._waiting.sensors))

    def __len__(self) -> int:
        return self._size


class _Counts:
    """Windows waiting per sensor, and the sensors with the largest count, in O(1) per change."""

    def __init__(self) -> None:
        self._count: dict[str, int] = {}
        self._with: dict[int, dict[str, None]] = {}  # count -> sensors with it (insertion-ordered)
        self.largest = 0

    def get(self, sensor: str) -> int:
        return self._count.get(sensor, 0)

    def add(self, sensor: str, delta: int) -> None:
        old = self._count.get(sensor, 0)
        new = old + delta
        if old:
            del self._with[old][sensor]
        if new:
            self._count[sensor] = new
            self._with.setdefault(new, {})[sensor] = None
            self.largest = max(self.largest, new)
        else:
            del self._count[sensor]
        while self.largest and not self._with.get(self.largest):
            self.largest -= 1

    @property
    def sensors(self) -> int:
        """Sensors with windows waiting."""
        return len(self._count)

    def at_least(self, count: int, excluded: Container[str]) -> list[str]:
        """The sensors with at least ``count`` windows waiting that are not in ``excluded``."""
        return [s for c in range(self.largest, count - 1, -1) for s in self._with.get(c, ()) if s not in excluded]

    def largest_except(self, excluded: Container[str]) -> str:
        """A sensor with the most windows waiting that is not in ``excluded`` (one in it if all are)."""
        for count in range(self.largest, 0, -1):
            for sensor in self._with.get(count, ()):
                if sensor not in excluded:
                    return sensor
        return next(iter(self._with[self.largest]))
