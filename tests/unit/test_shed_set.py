"""The over-share set a receive process gets (``WindowQueue.over_share_set``) is exactly what ``over_share`` says."""

from __future__ import annotations

import random
import threading

import numpy as np

from edge_agent.metrics import AgentMetrics
from edge_agent.pipeline.window_queue import QueuedWindow, WindowQueue
from edge_agent.types import Window

NO_STOP = threading.Event()
SENSORS = [f"s{i}" for i in range(12)]


def _item(sensor: str, t_s: float) -> QueuedWindow:
    return QueuedWindow("a", Window(sensor, t_s, t_s + 1, np.zeros((1, 4), np.float32)))


def test_the_set_matches_over_share_sensor_by_sensor_through_fills_takes_and_suspects() -> None:
    rng = random.Random(7)
    queue = WindowQueue(16, AgentMetrics())
    seen_full = 0
    for step in range(2000):
        if rng.random() < 0.8:
            weights = [8 if s == "s0" else 1 for s in SENSORS]  # one flooding sensor among fair ones
            queue.put(_item(rng.choices(SENSORS, weights)[0], step))
        else:
            queue.take_batch(rng.randint(1, 3), 0.0, NO_STOP)
        if rng.random() < 0.05:
            queue.observe(rng.choice(SENSORS), fault=rng.random() < 0.5)
        expected = frozenset(s for s in [*SENSORS, "never"] if queue.over_share(s))
        assert queue.over_share_set() == expected, step
        seen_full += bool(expected)
    assert seen_full > 100  # the queue was full (and someone over the share) often enough to mean something


def test_the_set_is_empty_while_the_queue_has_room() -> None:
    queue = WindowQueue(4, AgentMetrics())
    for t_s in range(3):
        queue.put(_item("s0", t_s))
    assert queue.over_share_set() == frozenset()
    queue.put(_item("s0", 3))
    assert queue.over_share_set() == {"s0"}
