"""Suspects from the change detector in the window queue: the hold, served first, never shed, and the bound."""

from __future__ import annotations

import threading

import numpy as np

from edge_agent.metrics import AgentMetrics
from edge_agent.pipeline.suspects import SUSPECT_SHARE
from edge_agent.pipeline.window_queue import QueuedWindow, WindowQueue
from edge_agent.types import Window

NO_STOP = threading.Event()


class Clock:
    def __init__(self) -> None:
        self.t_s = 0.0

    def __call__(self) -> float:
        return self.t_s


def _item(sensor: str, t_s: float) -> QueuedWindow:
    return QueuedWindow("a", Window(sensor, t_s, t_s + 1, np.zeros((1, 4), np.float32)))


def _value(metrics: AgentMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_a_mark_makes_a_suspect_for_its_hold_served_first_and_never_shed() -> None:
    clock, metrics = Clock(), AgentMetrics()
    queue = WindowQueue(4, metrics, clock=clock)
    for t_s in range(4):
        queue.put(_item(f"s{t_s}", t_s))
    queue.put(_item("probe", 10))  # full: the probe's window pushed out one of another's
    assert queue.over_share("probe")  # at its share of a full queue: shed
    assert queue.mark("probe", 1.0, 12.5)
    assert not queue.over_share("probe") and "probe" not in queue.over_share_set()
    assert queue.suspects() == frozenset({"probe"}) and queue.is_suspect("probe")
    queue.put(_item("probe", 11))
    assert [i.window.sensor for i in queue.take_batch(4, 0.0, NO_STOP)][:2] == ["probe", "probe"]
    assert _value(metrics, "edge_agent_suspect_marks_total", reason="change") == 1
    assert _value(metrics, "edge_agent_suspects") == 1
    clock.t_s = 0.9
    assert queue.mark("probe", 1.0)  # a new mark extends the hold (counted once: the same suspicion)
    clock.t_s = 1.5
    assert queue.is_suspect("probe")
    clock.t_s = 2.0
    assert queue.suspects() == frozenset() and _value(metrics, "edge_agent_suspects") == 0
    assert _value(metrics, "edge_agent_suspect_marks_total", reason="change") == 1


def test_a_fault_verdict_keeps_a_marked_sensor_a_suspect_after_its_hold() -> None:
    clock = Clock()
    queue = WindowQueue(4, AgentMetrics(), clock=clock)
    queue.mark("probe", 1.0)
    queue.observe("probe", fault=True)
    clock.t_s = 5.0
    assert queue.suspects() == frozenset({"probe"})
    for _ in range(5):
        queue.observe("probe", fault=False)
    assert queue.suspects() == frozenset()


def test_the_suspects_windows_are_bounded_by_a_share_of_the_windows_taken() -> None:
    clock, metrics = Clock(), AgentMetrics()
    queue = WindowQueue(1000, metrics, clock=clock)
    assert queue.mark("a", 5.0)  # before any measurement every mark is admitted
    for t_s in range(10):  # one second: "a" puts 10 windows, 40 windows are taken in all
        queue.put(_item("a", t_s))
    for t_s in range(30):
        queue.put(_item(f"s{t_s}", t_s))
    assert len(queue.take_batch(100, 0.0, NO_STOP)) == 40
    clock.t_s = 1.0
    queue.suspects()  # the rates roll over: at most 0.25 x 40/s / (10/s per suspect) = 1 suspect
    assert int(SUSPECT_SHARE * 40 / 10) == 1
    assert not queue.mark("b", 5.0)  # refused: "b" stays in the fair round-robin, counted
    assert queue.mark("a", 5.0)  # the one within the bound renews
    queue.observe("c", fault=True)  # a fault verdict past the bound is refused too
    assert queue.suspects() == frozenset({"a"})
    assert _value(metrics, "edge_agent_suspect_marks_refused_total", reason="change") == 1
    assert _value(metrics, "edge_agent_suspect_marks_refused_total", reason="fault") == 1
    queue.put(_item("b", 50))
    queue.put(_item("b", 51))
    # a plant-wide event cannot turn fairness off: the refused sensor is served in turn, not first
    assert queue.take_batch(1, 0.0, NO_STOP)[0].window.sensor == "b"
