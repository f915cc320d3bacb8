"""The ingress change detector against a real mosquitto: a sensor whose signal changes is made a suspect
and its newest windows are served before the others' under a full queue (issue 12 item 4's 9x goal).

The seam faked is ours (StreamEvents, what the router gives a source), around a real
:class:`WindowQueue`: shedding, the shed set, marks and suspects are the queue's own; a chunk becomes
one window. Both ways of receiving: in the receive process and in paho's thread (f32le).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import paho.mqtt.client as paho
import pytest
from conftest import wait_until

from edge_agent.config import MqttSection
from edge_agent.metrics import AgentMetrics
from edge_agent.pipeline.window_queue import QueuedWindow, WindowQueue
from edge_agent.sources.change import WARMUP_MESSAGES
from edge_agent.sources.mqtt import MqttSource
from edge_agent.sources.mqtt_config import MqttSourceSection
from edge_agent.types import Chunk, Window

SECTION = MqttSourceSection(
    type="mqtt",
    name="vib",
    models=("m",),
    topic="plant/+/vibration",
    format="f32le",
    sample_rate_hz=12000.0,
    qos=1,
    change_threshold=10.0,
)
OTHERS = [f"o{i}" for i in range(7)]
ROOM = 8  # the queue: 7 others and the probe hold one window each, their share (8 // 8)
NO_STOP = threading.Event()


class QueueStreams:
    """StreamEvents over a real WindowQueue; windows are queued once ``armed`` (before: the warm-up)."""

    def __init__(self, metrics: AgentMetrics) -> None:
        self.queue = WindowQueue(ROOM, metrics)
        self.armed = False
        self.shed_counts: dict[str, int] = {}
        self.warmup_chunks = 0
        self.changed_queued = False  # a window of the changed signal reached the queue

    def admit(self, sensor: str) -> None:
        pass

    def rejected(self, sensor: str, reason: str) -> None:
        pass

    def shed(self, sensor: str) -> bool:
        if not self.queue.over_share(sensor):
            return False
        self.count_shed(sensor, 1)
        return True

    def shed_set(self) -> frozenset[str]:
        return self.queue.over_share_set()

    def count_shed(self, sensor: str, n: int) -> None:
        self.shed_counts[sensor] = self.shed_counts.get(sensor, 0) + n

    def after_shed(self, sensor: str) -> None:
        pass

    def mark(self, sensor: str, hold_s: float, score: float) -> None:
        self.queue.mark(sensor, hold_s, score)

    def window_s(self) -> float:
        return 2048 / 12000.0

    def hop_s(self) -> float:
        return 1024 / 12000.0

    def queue_room(self) -> tuple[int, int] | None:
        room = self.queue.free() if self.armed else 1 << 20  # the warm-up: no overload, plenty of room
        return room, ROOM

    def is_suspect(self, sensor: str) -> bool:
        return self.queue.is_suspect(sensor)

    def suspects(self) -> frozenset[str]:
        return self.queue.suspects()

    def __call__(self, chunk: Chunk) -> None:  # the source's emit
        if not self.armed:
            self.warmup_chunks += 1
            return
        samples = np.asarray(chunk.samples)
        self.queue.put(QueuedWindow("m", Window(chunk.sensor, chunk.t0, chunk.t0 + 1.0, samples)))
        self.changed_queued = self.changed_queued or float(np.std(samples)) > 2.0


def _window(sensor: str, t_s: float) -> QueuedWindow:
    return QueuedWindow("m", Window(sensor, t_s, t_s + 1.0, np.zeros((1, 1024), np.float32)))


@pytest.fixture
def publish(broker: Any) -> Iterator[Callable[[bytes], None]]:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="change-publisher")
    client.connect(broker.host, broker.port)
    client.loop_start()

    def send(body: bytes) -> None:
        info = client.publish("plant/probe/vibration", body, qos=1)
        info.wait_for_publish(timeout=10)

    yield send
    client.disconnect()
    client.loop_stop()


@pytest.mark.parametrize("receive", ["process", "thread"])
def test_a_changing_sensor_is_a_suspect_at_once_and_served_first_under_a_full_queue(
    mqtt_config: Callable[..., MqttSection], publish: Callable[[bytes], None], receive: str
) -> None:
    metrics = AgentMetrics()
    streams = QueueStreams(metrics)
    section = dataclasses.replace(SECTION, receive=receive)
    source = MqttSource(section, mqtt_config(), password=None, agent_id="t", metrics=metrics, streams=streams)
    source.start(streams)
    rng = np.random.default_rng(7)

    def healthy() -> bytes:
        return rng.normal(0.0, 1.0, 1024).astype("<f4").tobytes()

    try:
        wait_until(lambda: metrics.registry.get_sample_value("edge_agent_source_up", {"source": "vib"}) == 1, 20)
        for _ in range(WARMUP_MESSAGES + 5):  # the probe's own healthy baseline
            publish(healthy())
        wait_until(lambda: streams.warmup_chunks == WARMUP_MESSAGES + 5, 20, "warm-up delivered")
        for index, sensor in enumerate(OTHERS):  # overload: a full queue, every sensor at its share
            streams.queue.put(_window(sensor, index))
        streams.queue.put(_window("probe", 99))
        streams.armed = True
        for _ in range(3):  # healthy: held or shed like any sensor at its share (the shed set is in place)
            publish(healthy())
        wait_until(lambda: streams.shed_counts.get("probe", 0) >= 1, 20, "the probe's healthy messages shed")
        assert streams.queue.suspects() == frozenset()
        publish(rng.normal(0.0, 4.0, 1024).astype("<f4").tobytes())  # the signal changes: 4x the level
        wait_until(lambda: "probe" in streams.queue.suspects(), 10, "the changed probe marked a suspect")
        wait_until(lambda: streams.changed_queued, 10, "the changed window queued")
        batch = streams.queue.take_batch(ROOM, 0.0, NO_STOP)
    finally:
        source.stop()
    # served first: the probe's windows (up to half the batch, oldest first: its held newest samples and the
    # changed one) before any other sensor's, though each of them waited longer
    probe = [item for item in batch if item.window.sensor == "probe"]
    assert 2 <= len(probe) <= ROOM // 2 and batch[: len(probe)] == probe
    assert any(float(np.std(item.window.samples)) > 2.0 for item in probe)
    marks = metrics.registry.get_sample_value("edge_agent_suspect_marks_total", {"reason": "change"})
    assert marks == 1
    assert metrics.registry.get_sample_value("edge_agent_suspects", {}) == 1
