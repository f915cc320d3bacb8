"""``receive = "process"`` against a real mosquitto: the receive process reads, applies the topic rules and
the agent's shed set, forwards the rest; it is restarted when killed and joined on stop."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as paho
import pytest
from conftest import Chunks, wait_until

from edge_agent.config import MqttSection
from edge_agent.config.instances import share_of
from edge_agent.metrics import AgentMetrics
from edge_agent.sources import mqtt_process
from edge_agent.sources.mqtt import MqttSource
from edge_agent.sources.mqtt_config import MqttSourceSection

SECTION = MqttSourceSection(
    type="mqtt", name="vib", models=("m",), topic="plant/+/vibration", sensor_level=1, format="json", qos=1
)
WINDOW_SAMPLES = 4  # the fake router's longest window (f32le: 16 bytes)
MINE = [s for s in (f"m{i}" for i in range(20)) if share_of(s, 2) == 0][:2]  # instance 0's sensors
OTHER = next(s for s in (f"m{i}" for i in range(20)) if share_of(s, 2) == 1)


def payload(seq: int) -> bytes:
    return json.dumps({"seq": seq, "sample_rate_hz": 12000, "samples": [0.25, 0.5]}).encode()


class Streams:
    """The router's seam (StreamEvents): records admissions and the receive process's sheds; ``shed_set`` settable."""

    def __init__(self) -> None:
        self.admitted: list[str] = []
        self.shed_now: frozenset[str] = frozenset()
        self.shed_counts: dict[str, int] = {}
        self.credit: int | None = None  # the inference queue's room (None: no credit control)
        self.resumed: list[tuple[str, int]] = []  # (sensor, its chunks delivered before) per after_shed
        self.delivered: Callable[[str], int] = lambda _sensor: 0

    def admit(self, sensor: str) -> None:
        self.admitted.append(sensor)

    def rejected(self, sensor: str, reason: str) -> None:
        pass

    def shed(self, sensor: str) -> bool:
        return False  # no shedding in this process: only the receive process's shows

    def shed_set(self) -> frozenset[str]:
        return self.shed_now

    def count_shed(self, sensor: str, n: int) -> None:
        self.shed_counts[sensor] = self.shed_counts.get(sensor, 0) + n

    def after_shed(self, sensor: str) -> None:
        self.resumed.append((sensor, self.delivered(sensor)))

    def mark(self, sensor: str, hold_s: float, score: float) -> None:
        pass  # no change detector in these tests

    def is_suspect(self, sensor: str) -> bool:
        return False

    def suspects(self) -> frozenset[str]:
        return frozenset()

    def window_s(self) -> float:
        return WINDOW_SAMPLES / 12000.0

    def hop_s(self) -> float:
        return WINDOW_SAMPLES / 2 / 12000.0

    def queue_room(self) -> tuple[int, int] | None:
        return None if self.credit is None else (self.credit, 512)


def value(metrics: AgentMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    wait_until(predicate, timeout_s, what)


@pytest.fixture
def publish(broker: Any) -> Iterator[Callable[[str, bytes], None]]:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="receive-process-publisher")
    client.connect(broker.host, broker.port)
    client.loop_start()

    def send(topic: str, body: bytes) -> None:
        info = client.publish(topic, body, qos=1)
        info.wait_for_publish(timeout=10)
        assert info.is_published()

    yield send
    client.disconnect()
    client.loop_stop()


@pytest.fixture
def run_source(mqtt_config: Callable[..., MqttSection]) -> Iterator[Callable[..., Any]]:
    started: list[MqttSource] = []

    def run(receive: str, streams: Streams | None = None, **overrides: Any) -> tuple[MqttSource, Chunks, AgentMetrics]:
        metrics = AgentMetrics()
        section = dataclasses.replace(SECTION, receive=receive, **overrides)
        source = MqttSource(section, mqtt_config(), password=None, agent_id="t", metrics=metrics, streams=streams)
        chunks = Chunks()
        source.start(chunks)
        started.append(source)
        wait_for(lambda: value(metrics, "edge_agent_source_up", source="vib") == 1, "source up")
        return source, chunks, metrics

    yield run
    for s in started:
        s.stop()


@pytest.mark.parametrize("receive", ["thread", "process"])
def test_both_ways_of_receiving_give_the_same_chunks_and_counts(run_source, publish, receive: str) -> None:
    source, chunks, metrics = run_source(receive, instances=2)
    for seq in range(3):
        for sensor in (*MINE, OTHER):
            publish(f"plant/{sensor}/vibration", payload(seq))
    publish("plant/" + "x" * 200 + "/vibration", payload(0))  # an id too long: refused before admission
    publish(f"plant/{MINE[0]}/vibration", b"not json")  # an admitted sensor's bad payload: parsed here
    got = chunks.wait(6, 15.0)
    wait_for(lambda: value(metrics, "edge_agent_messages_received_total", source="vib") == 11, "11 counted received")
    wait_for(lambda: value(metrics, "edge_agent_payload_errors_total", source="vib", reason="not_json") == 1, "bad")
    assert sorted((c.sensor, c.seq) for c in got) == sorted((s, q) for s in MINE for q in range(3))
    assert value(metrics, "edge_agent_messages_foreign_total", source="vib") == 3
    assert value(metrics, "edge_agent_payload_errors_total", source="vib", reason="bad_sensor_id") == 1
    assert value(metrics, "edge_agent_last_sample_timestamp_seconds", sensor=MINE[0]) > 1e9
    if receive == "process":
        assert source.receiver is not None and source.receiver.starts == 1
        assert source.receiver.torch_loaded is False  # the spawned child never imports torch
        assert value(metrics, "edge_agent_mqtt_connected", client="source-vib") == 1


@pytest.mark.parametrize("receive", ["thread", "process"])
def test_subscribe_own_the_broker_sends_no_other_instances_messages(run_source, publish, receive: str) -> None:
    """Issue 13 item 4: with subscribe_own an instance subscribes to its share's topics only, so another
    instance's sensor costs it nothing (the wildcard subscription above receives and counts them as foreign)."""
    _source, chunks, metrics = run_source(receive, instances=2, sensors=(*MINE, OTHER), subscribe_own=True)
    for seq in range(3):
        for sensor in (OTHER, *MINE):
            publish(f"plant/{sensor}/vibration", payload(seq))
    got = chunks.wait(6, 15.0)
    wait_for(lambda: value(metrics, "edge_agent_messages_received_total", source="vib") == 6, "6 received")
    time.sleep(0.5)  # a stray message of OTHER would have arrived by now
    assert sorted((c.sensor, c.seq) for c in got) == sorted((s, q) for s in MINE for q in range(3))
    assert value(metrics, "edge_agent_messages_received_total", source="vib") == 6
    assert value(metrics, "edge_agent_messages_foreign_total", source="vib") == 0


def test_a_killed_receive_process_is_restarted_the_stream_resumes_and_the_restart_is_counted(
    run_source, publish
) -> None:
    source, chunks, metrics = run_source("process", max_sensors=1)
    publish("plant/a/vibration", payload(0))
    chunks.wait(1, 15.0)
    assert source.receiver is not None and source.receiver.pid is not None
    os.kill(source.receiver.pid, signal.SIGKILL)
    wait_for(lambda: value(metrics, "edge_agent_receiver_restarts_total", source="vib") == 1, "restart counted")
    assert value(metrics, "edge_agent_source_up", source="vib") == 0  # until the new one has subscribed
    wait_for(lambda: value(metrics, "edge_agent_source_up", source="vib") == 1, "source up again")
    publish("plant/a/vibration", payload(1))
    publish("plant/b/vibration", payload(0))  # max_sensors = 1 still counts "a" in the new receive process
    assert [(c.sensor, c.seq) for c in chunks.wait(2, 15.0)] == [("a", 0), ("a", 1)]
    wait_for(
        lambda: value(metrics, "edge_agent_payload_errors_total", source="vib", reason="too_many_sensors") == 1, "b"
    )
    assert source.receiver.starts == 2 and source.alive()


def test_a_hung_receive_process_is_killed_and_replaced(run_source, publish, monkeypatch) -> None:
    monkeypatch.setattr(mqtt_process, "HANG_S", 2.0)  # it reports every 0.25 s; 2 s of silence is a hang
    source, chunks, metrics = run_source("process")
    assert source.receiver is not None
    hung = source.receiver.pid
    assert hung is not None
    os.kill(hung, signal.SIGSTOP)  # alive, but sends nothing
    wait_for(lambda: value(metrics, "edge_agent_receiver_restarts_total", source="vib") == 1, "hang noticed")
    assert not Path(f"/proc/{hung}").exists()  # killed and reaped, not left stopped
    wait_for(lambda: value(metrics, "edge_agent_source_up", source="vib") == 1, "source up again")
    publish("plant/a/vibration", payload(0))
    assert [c.sensor for c in chunks.wait(1, 15.0)] == ["a"]
    assert source.receiver.pid not in (None, hung)


def test_the_agents_shed_set_reaches_the_receive_process_and_its_sheds_are_counted(run_source, publish) -> None:
    streams = Streams()
    _source, chunks, _metrics = run_source("process", streams)
    publish("plant/flood/vibration", payload(0))
    chunks.wait(1, 15.0)
    assert streams.admitted == ["flood"]
    streams.shed_now = frozenset({"flood"})  # the inference queue is full and flood holds its share
    time.sleep(0.3)  # the set goes out within SHED_EVERY_S
    for seq in range(1, 21):
        publish("plant/flood/vibration", payload(seq))
    for seq in range(5):
        publish("plant/calm/vibration", payload(seq))
    # the newest HELD_MESSAGES (19, 20) are held back, the 18 before them shed
    wait_for(lambda: streams.shed_counts.get("flood", 0) == 18, "18 flood messages shed by the receive process")
    assert [c.sensor for c in chunks.wait(6, 15.0)] == ["flood"] + ["calm"] * 5  # none of the 20 reached this process
    streams.shed_now = frozenset()  # the queue has room again: the new (empty) set is sent too
    # flood's next turn starts from its newest samples: the held 19 and 20 come first, before anything new
    assert [(c.sensor, c.seq) for c in chunks.wait(8, 15.0)[6:]] == [("flood", 19), ("flood", 20)]
    publish("plant/flood/vibration", payload(21))
    assert (chunks.wait(9, 15.0)[-1].sensor, chunks.items[-1].seq) == ("flood", 21)
    assert streams.shed_counts == {"flood": 18}


def test_a_shed_sensor_whose_messages_each_make_a_window_has_only_its_newest_held(run_source, publish) -> None:
    """Issue 12 item 4: a message of many hops (here 2 windows' worth of f32le) is a window alone, so of a shed
    sensor's messages only the newest is held; the older ones are shed in the receive process, not sent on."""
    streams = Streams()
    binary = {"format": "f32le", "sample_rate_hz": 12000.0, "channels": 1}
    _source, chunks, _metrics = run_source("process", streams, **binary)

    def body(k: int) -> bytes:
        return np.full(2 * WINDOW_SAMPLES, k, dtype="<f4").tobytes()

    publish("plant/flood/vibration", body(0))
    chunks.wait(1, 15.0)
    streams.shed_now = frozenset({"flood"})
    time.sleep(0.3)  # the set goes out within SHED_EVERY_S
    for k in range(1, 6):
        publish("plant/flood/vibration", body(k))
    wait_for(lambda: streams.shed_counts.get("flood", 0) == 4, "4 of 5 flood messages shed, the newest held")
    streams.shed_now = frozenset()
    assert [float(c.samples[0, 0]) for c in chunks.wait(2, 15.0)] == [0.0, 5.0]
    time.sleep(0.3)
    assert len(chunks.items) == 2 and streams.shed_counts == {"flood": 4}


class RoomStreams(Streams):
    """The agent's side of the credit: a queue of ``slots`` windows that the chunks delivered fill."""

    def __init__(self) -> None:
        super().__init__()
        self.slots = 0
        self.chunks: Chunks | None = None

    def queue_room(self) -> tuple[int, int] | None:
        return 0 if self.chunks is None else max(0, self.slots - len(self.chunks.items)), 512


def test_the_receive_process_sends_what_the_agents_queue_has_room_for_each_sensor_in_turn(run_source, publish) -> None:
    """Issue 12 item 4: under overload the receive process sends only what the inference queue will take (its
    credit), each waiting sensor in turn with its newest messages; the others wait, their older ones shed.
    Before, every message of a sensor not in the shed set was sent and displaced another sensor's window."""
    streams = RoomStreams()
    _source, chunks, _metrics = run_source("process", streams)
    streams.chunks = chunks  # a full queue: no room
    time.sleep(0.3)  # the first credit (none) goes out within SHED_EVERY_S
    for seq in range(4):
        publish("plant/a/vibration", payload(seq))
    publish("plant/b/vibration", payload(0))
    wait_for(lambda: streams.shed_counts.get("a", 0) == 2, "a's two oldest messages shed while it waits")
    time.sleep(0.3)
    assert chunks.items == []
    streams.slots = 2  # room for two windows: a waited longest, its newest two go
    assert [(c.sensor, c.seq) for c in chunks.wait(2, 15.0)] == [("a", 2), ("a", 3)]
    time.sleep(0.3)
    assert len(chunks.items) == 2  # b waits: the queue is full again
    streams.slots = 3
    assert [(c.sensor, c.seq) for c in chunks.wait(3, 15.0)][2:] == [("b", 0)]
    assert streams.shed_counts == {"a": 2}


def test_a_sensor_sent_again_after_its_messages_were_shed_is_named_before_its_next_message(run_source, publish) -> None:
    """The agent learns from the batch itself that the sensor's stream jumps by its own shedding, before the
    message that jumps (a shed count comes only with the next report): so the jump is not logged as a stream
    gap, and the arrivals before it are not taken for the sender's rate (before: rate_mismatch for every
    sensor shed under 3x overload). A sensor never shed is not named."""
    streams = RoomStreams()
    _source, chunks, _metrics = run_source("process", streams)
    streams.chunks = chunks
    streams.delivered = lambda sensor: sum(1 for c in chunks.items if c.sensor == sensor)
    time.sleep(0.3)
    for seq in range(4):
        publish("plant/a/vibration", payload(seq))
    publish("plant/b/vibration", payload(0))
    wait_for(lambda: streams.shed_counts.get("a", 0) == 2, "a's two oldest messages shed while it waits")
    streams.slots = 3
    assert [(c.sensor, c.seq) for c in chunks.wait(3, 15.0)] == [("a", 2), ("a", 3), ("b", 0)]
    assert streams.resumed == [("a", 0)]


def test_receive_cpu_pins_every_thread_of_the_receive_process(run_source) -> None:
    source, _chunks, _metrics = run_source("process", receive_cpu=0)
    assert source.receiver is not None and source.receiver.pid is not None
    tasks = list(Path(f"/proc/{source.receiver.pid}/task").iterdir())
    assert len(tasks) >= 3  # main, paho's network thread, control
    assert {t.name: os.sched_getaffinity(int(t.name)) for t in tasks} == {t.name: {0} for t in tasks}


def test_stop_ends_and_joins_the_receive_process(run_source) -> None:
    source, _chunks, metrics = run_source("process")
    assert source.receiver is not None
    pid = source.receiver.pid
    assert pid is not None
    source.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # gone and reaped
    assert value(metrics, "edge_agent_source_up", source="vib") == 0
    assert value(metrics, "edge_agent_receiver_restarts_total", source="vib") == 0  # a stop is not a restart
