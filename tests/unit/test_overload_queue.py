"""Issue 12 item 4 / issue 13: under overload the queue sheds early, and a sensor showing a fault is served first."""

from __future__ import annotations

import threading

import numpy as np
from test_inference_worker import Collector, loaded

from edge_agent.config import InferenceSection
from edge_agent.metrics import AgentMetrics
from edge_agent.pipeline.inference import InferenceWorker
from edge_agent.pipeline.window_queue import SUSPECT_CLEAR_WINDOWS, QueuedWindow, WindowQueue
from edge_agent.types import Window

NO_STOP = threading.Event()


def _item(sensor: str, t_s: float) -> QueuedWindow:
    return QueuedWindow("a", Window(sensor, t_s, t_s + 1, np.zeros((1, 4), np.float32)))


def _dropped(metrics: AgentMetrics, sensor: str) -> float:
    return metrics.registry.get_sample_value("edge_agent_sensor_windows_dropped_total", {"sensor": sensor}) or 0.0


def test_with_more_sensors_than_room_a_sensor_with_a_window_waiting_is_shed() -> None:
    # 6 sensors, room for 8: each holds its share (8 // 6 = 1); the old rule (waiting x sensors >= room) shed
    # nobody, so every message was parsed and windowed only to push another sensor's window out
    queue = WindowQueue(8, AgentMetrics())
    for t_s in range(8):
        queue.put(_item(f"s{t_s % 6}", t_s))
    assert len(queue) == 8
    assert all(queue.over_share(f"s{i}") for i in range(6))
    assert not queue.over_share("new")  # nothing waiting: its window gets in (the largest holder loses one)
    queue.take_batch(1, 0.0, NO_STOP)
    assert not any(queue.over_share(f"s{i}") for i in range(6))  # not full: nobody is shed


def test_a_suspect_is_served_first_never_shed_and_loses_a_window_last() -> None:
    metrics = AgentMetrics()
    queue = WindowQueue(8, metrics)
    queue.observe("probe", fault=True)
    for t_s in range(3):
        queue.put(_item("probe", 100 + t_s))
    for t_s in range(20):  # a full queue: others lose their oldest, the probe none
        queue.put(_item(f"s{t_s % 4}", t_s))
    assert _dropped(metrics, "probe") == 0 and not queue.over_share("probe")
    batch = queue.take_batch(4, 0.0, NO_STOP)
    # half the batch from the suspect, oldest first, then the round-robin (the probe still among them)
    assert [(i.window.sensor, i.window.t_start) for i in batch[:2]] == [("probe", 100), ("probe", 101)]
    assert (batch[2].window.sensor, batch[2].window.t_start) == ("probe", 102)
    assert batch[3].window.sensor.startswith("s")


def test_the_suspicion_ends_after_enough_normal_windows() -> None:
    queue = WindowQueue(2, AgentMetrics())
    queue.observe("probe", fault=True)
    for _ in range(SUSPECT_CLEAR_WINDOWS - 1):
        queue.observe("probe", fault=False)
    queue.put(_item("probe", 0))
    queue.put(_item("probe", 1))
    assert not queue.over_share("probe")  # still a suspect
    queue.observe("probe", fault=False)
    assert queue.over_share("probe")  # normal again: its share of a full queue, shed
    queue.observe("never-a-suspect", fault=False)  # no state kept for a normal sensor
    assert not queue.over_share("never-a-suspect")


def test_when_every_sensor_is_a_suspect_the_others_still_get_half_of_each_batch() -> None:
    queue = WindowQueue(100, AgentMetrics())
    for sensor in ("a", "b"):
        queue.observe(sensor, fault=True)
    for t_s in range(10):
        queue.put(_item("a", t_s))
    queue.put(_item("quiet", 50))
    batch = queue.take_batch(4, 0.0, NO_STOP)
    assert [i.window.sensor for i in batch[:2]] == ["a", "a"]
    assert "quiet" in {i.window.sensor for i in batch[2:]}


def test_the_worker_tells_the_queue_which_sensor_showed_a_fault() -> None:
    fault = loaded(["Normal", "IR007"], 1, "a" * 64)  # always IR007
    collect = Collector(expected=1)
    worker = InferenceWorker(
        {"bearing": fault}, InferenceSection(max_batch=1, queue_windows=2), AgentMetrics(), collect, ("Normal",)
    )
    worker.submit("bearing", Window("pump-1", 0.0, 1.0, np.zeros((1, 16), np.float32)))
    for t_s in (1.0, 2.0):
        worker.submit("bearing", Window("pump-2", t_s, t_s + 1, np.zeros((1, 16), np.float32)))
    assert worker.queue.over_share("pump-2")
    worker.start()
    try:
        assert collect.done.wait(30)
    finally:
        worker.stop()
    assert collect.predictions[0].label == "IR007"
    for t_s in (3.0, 4.0):
        worker.submit("bearing", Window("pump-1", t_s, t_s + 1, np.zeros((1, 16), np.float32)))
    assert not worker.queue.over_share("pump-1")  # a suspect now: never shed
