"""The bounded inference queue: drop-oldest overflow (counted), batches per model, oldest first."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from edge_agent.metrics import AgentMetrics
from edge_agent.pipeline.window_queue import QueuedWindow, WindowQueue
from edge_agent.types import Window


def _item(model: str, t_s: float) -> QueuedWindow:
    return QueuedWindow(model, Window("s", t_s, t_s + 1, np.zeros((1, 4), np.float32)))


def _times(batch: list[QueuedWindow]) -> list[float]:
    return [item.window.t_start for item in batch]


def _value(metrics: AgentMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


NO_STOP = threading.Event()


def test_overflow_drops_the_oldest_windows_and_counts_them() -> None:
    metrics = AgentMetrics()
    queue = WindowQueue(3, metrics)
    for t_s in range(5):
        queue.put(_item("a", t_s))
    assert len(queue) == 3
    assert _value(metrics, "edge_agent_windows_dropped_total", reason="queue_full") == 2
    assert _value(metrics, "edge_agent_inference_queue_windows") == 3
    assert _times(queue.take_batch(10, 0.0, NO_STOP)) == [2, 3, 4]
    assert _value(metrics, "edge_agent_inference_queue_windows") == 0


def test_overflow_drops_the_oldest_across_models() -> None:
    metrics = AgentMetrics()
    queue = WindowQueue(2, metrics)
    queue.put(_item("a", 0))
    queue.put(_item("b", 1))
    queue.put(_item("b", 2))  # drops a@0, the oldest overall
    assert _times(queue.take_batch(10, 0.0, NO_STOP)) == [1, 2]
    assert len(queue) == 0


@pytest.mark.parametrize(
    ("puts", "max_batch", "batches"),
    [
        ([("a", 0), ("a", 1), ("a", 2)], 2, [("a", [0, 1]), ("a", [2])]),
        ([("a", 0), ("b", 1), ("a", 2), ("b", 3)], 8, [("a", [0, 2]), ("b", [1, 3])]),
        ([("b", 0), ("a", 1), ("b", 2)], 1, [("b", [0]), ("a", [1]), ("b", [2])]),
    ],
)
def test_batches_hold_one_model_and_start_with_the_oldest_window(puts, max_batch, batches) -> None:
    queue = WindowQueue(100, AgentMetrics())
    for model, t_s in puts:
        queue.put(_item(model, t_s))
    for model, times in batches:
        batch = queue.take_batch(max_batch, 0.0, NO_STOP)
        assert {item.model for item in batch} == {model}
        assert _times(batch) == times
    assert queue.take_batch(max_batch, 0.0, NO_STOP) == []


def test_a_batch_waits_up_to_max_wait_for_more_windows() -> None:
    queue = WindowQueue(100, AgentMetrics())
    queue.put(_item("a", 0))
    threading.Timer(0.05, queue.put, args=(_item("a", 1),)).start()
    assert _times(queue.take_batch(2, 2.0, NO_STOP)) == [0, 1]  # returned once the second came


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity must be >= 1, got 0"):
        WindowQueue(0, AgentMetrics())
