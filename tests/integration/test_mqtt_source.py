"""MqttSource against a real mosquitto: payload formats, malformed payloads, broker outages."""

from __future__ import annotations

import dataclasses
import json
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as paho
import pytest
from conftest import Chunks

from edge_agent.config import MqttSection
from edge_agent.configload import ConfigError, parse_config
from edge_agent.metrics import PAYLOAD_ERROR_REASONS, AgentMetrics
from edge_agent.sources.mqtt import MqttSource
from edge_agent.sources.mqtt_config import MqttSourceSection
from edge_agent.types import Chunk

SECTION = MqttSourceSection(
    type="mqtt",
    name="vib",
    models=("m",),
    topic="plant/+/vibration",
    sensor_level=1,
    format="json",
    qos=1,
    sample_rate_hz=12_000.0,
)
GOOD_JSON = json.dumps({"seq": 1, "sample_rate_hz": 12000, "samples": [0.25, 0.5]}).encode()


class Publisher:
    def __init__(self, host: str, port: int) -> None:
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="")
        self.client.connect(host, port)
        self.client.loop_start()

    def send(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=10)
        assert info.is_published(), "publisher: no PUBACK in 10 s"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publish(broker: Any) -> Iterator[Callable[[str, bytes], None]]:
    """``publish(topic, payload)``: QoS 1, returns after the broker's PUBACK (reconnects if needed)."""
    current: list[Publisher] = []

    def send(topic: str, payload: bytes) -> None:
        # paho's wait_for_publish raises on a message queued while disconnected: after a broker
        # restart, start a fresh publisher instead of waiting for the old one to reconnect.
        if current and not current[0].client.is_connected():
            current.pop().close()
        if not current:
            current.append(Publisher(broker.host, broker.port))
        current[0].send(topic, payload)

    yield send
    for p in current:
        p.close()


@pytest.fixture
def run_source(
    mqtt_config: Callable[..., MqttSection],
) -> Iterator[Callable[..., tuple[MqttSource, Chunks, AgentMetrics]]]:
    started: list[MqttSource] = []

    def run(wait_up: bool = True, **section_overrides: Any) -> tuple[MqttSource, Chunks, AgentMetrics]:
        metrics = AgentMetrics()
        section = dataclasses.replace(SECTION, **section_overrides)
        source = MqttSource(section, mqtt_config(), password=None, agent_id="t", metrics=metrics)
        chunks = Chunks()
        source.start(chunks)
        started.append(source)
        if wait_up:
            wait_source_up(metrics)
        return source, chunks, metrics

    yield run
    for s in started:
        s.stop()


def value(metrics: AgentMetrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def wait_source_up(metrics: AgentMetrics, up: float = 1.0, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while value(metrics, "edge_agent_source_up", source="vib") != up:
        if time.monotonic() > deadline:
            raise AssertionError(f"source_up did not become {up} in {timeout_s} s")
        time.sleep(0.01)


def errors(metrics: AgentMetrics) -> dict[str, float]:
    return {
        r: value(metrics, "edge_agent_payload_errors_total", source="vib", reason=r)
        for r in PAYLOAD_ERROR_REASONS
        if value(metrics, "edge_agent_payload_errors_total", source="vib", reason=r)
    }


def test_json_payloads_become_chunks_with_the_sensor_from_the_topic(run_source, publish) -> None:
    _source, chunks, metrics = run_source(channels=2)
    publish(
        "plant/pumpA/vibration",
        json.dumps(
            {"seq": 41, "ts": 1_700_000_000.25, "sample_rate_hz": 12000, "samples": [[0.5, 1.5, 2.5], [-1, -2, -3]]}
        ).encode(),
    )
    publish("plant/fanB/vibration", json.dumps({"samples": [[1], [2]]}).encode())
    first, second = chunks.wait(2)
    assert (first.sensor, first.seq, first.t0, first.sample_rate_hz) == ("pumpA", 41, 1_700_000_000.25, 12_000.0)
    np.testing.assert_array_equal(first.samples, np.array([[0.5, 1.5, 2.5], [-1, -2, -3]], dtype=np.float32))
    assert first.received_at > 0
    assert (second.sensor, second.seq, second.channels, second.n_samples) == ("fanB", None, 2, 1)
    assert abs(second.t0 - time.time()) < 10  # no ts: placed at the receive time
    assert value(metrics, "edge_agent_messages_received_total", source="vib") == 2
    assert value(metrics, "edge_agent_last_sample_timestamp_seconds", sensor="pumpA") > 1e9
    assert errors(metrics) == {}


@pytest.mark.parametrize(
    ("fmt", "channels", "scale", "payload", "expected"),
    [
        ("f32le", 1, 1.0, struct.pack("<3f", 0.5, -0.25, 3.0), [[0.5, -0.25, 3.0]]),
        ("f32le", 2, 2.0, struct.pack("<4f", 1, 10, 2, 20), [[2, 4], [20, 40]]),
        ("i16le", 3, 0.5, struct.pack("<6h", 1, 2, 3, -4, -5, 32767), [[0.5, -2], [1, -2.5], [1.5, 16383.5]]),
    ],
    ids=["f32le-1ch", "f32le-2ch-scaled", "i16le-3ch-scaled"],
)
def test_binary_payloads(run_source, publish, fmt: str, channels: int, scale: float, payload: bytes, expected) -> None:
    _source, chunks, _metrics = run_source(format=fmt, channels=channels, scale=scale)
    publish("plant/press7/vibration", payload)
    (chunk,) = chunks.wait(1)
    assert chunk.sensor == "press7"
    assert chunk.sample_rate_hz == 12_000.0 and chunk.seq is None
    np.testing.assert_allclose(chunk.samples, np.array(expected, dtype=np.float32))
    assert abs(chunk.t0 + chunk.n_samples / 12_000 - time.time()) < 10


def js(doc: Any) -> bytes:
    return json.dumps(doc).encode()


GOOD_F32_2CH = struct.pack("<2f", 1.0, 2.0)

# (case id, source overrides, bad topic, bad payload, expected reason, good payload after it)
MALFORMED = [
    ("not json", {}, "plant/a/vibration", b"\x00garbage{", "not_json", GOOD_JSON),
    ("not an object", {}, "plant/a/vibration", b"[1, 2]", "not_json", GOOD_JSON),
    ("wrong type: samples string", {}, "plant/a/vibration", js({"samples": "1,2"}), "bad_field", GOOD_JSON),
    ("wrong type: seq bool", {}, "plant/a/vibration", js({"seq": True, "samples": [1]}), "bad_field", GOOD_JSON),
    ("wrong type: string sample", {}, "plant/a/vibration", js({"samples": [1, "x"]}), "bad_field", GOOD_JSON),
    ("NaN", {}, "plant/a/vibration", b'{"samples": [1.0, NaN]}', "non_finite", GOOD_JSON),
    ("Infinity", {}, "plant/a/vibration", b'{"samples": [Infinity]}', "non_finite", GOOD_JSON),
    ("empty payload", {}, "plant/a/vibration", b"", "empty", GOOD_JSON),
    ("empty samples", {}, "plant/a/vibration", js({"samples": []}), "empty", GOOD_JSON),
    ("10 MB", {}, "plant/a/vibration", b'{"samples": [' + b"0.5," * 2_621_440 + b"0]}", "too_large", GOOD_JSON),
    ("wrong channel count", {}, "plant/a/vibration", js({"samples": [[1, 2], [3, 4]]}), "wrong_channels", GOOD_JSON),
    ("wrong rate", {}, "plant/a/vibration", js({"sample_rate_hz": 8000, "samples": [1]}), "wrong_rate", GOOD_JSON),
    (
        "odd binary length",
        {"format": "f32le", "channels": 2},
        "plant/a/vibration",
        b"\x00" * 6,
        "bad_length",
        GOOD_F32_2CH,
    ),
    (
        "binary NaN",
        {"format": "f32le", "channels": 2},
        "plant/a/vibration",
        struct.pack("<2f", 1, float("nan")),
        "non_finite",
        GOOD_F32_2CH,
    ),
    ("sensor not allowed", {"sensors": ("a",)}, "plant/intruder/vibration", GOOD_JSON, "unknown_sensor", GOOD_JSON),
    ("no sensor level", {"topic": "plant/#"}, "plant", GOOD_JSON, "unknown_sensor", GOOD_JSON),
    ("empty sensor level", {}, "plant//vibration", GOOD_JSON, "unknown_sensor", GOOD_JSON),
]


@pytest.mark.parametrize(
    ("overrides", "bad_topic", "bad", "reason", "good"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_malformed_payload_is_counted_and_the_source_keeps_working(
    run_source, publish, overrides: dict[str, Any], bad_topic: str, bad: bytes, reason: str, good: bytes
) -> None:
    _source, chunks, metrics = run_source(**overrides)
    publish(bad_topic, bad)
    publish("plant/a/vibration", good)
    (chunk,) = chunks.wait(1)  # the good one; messages are handled in order, so the bad one came first
    assert chunk.sensor == "a"
    assert errors(metrics) == {reason: 1.0}
    assert value(metrics, "edge_agent_messages_received_total", source="vib") == 2
    assert value(metrics, "edge_agent_source_up", source="vib") == 1.0


def test_max_sensors_bounds_new_sensor_ids(run_source, publish) -> None:
    _source, chunks, metrics = run_source(max_sensors=2)
    for sensor in ("s1", "s2", "s3", "s1", "s4", "s2"):
        publish(f"plant/{sensor}/vibration", GOOD_JSON)
    got = chunks.wait(4)
    time.sleep(0.2)
    assert [c.sensor for c in got] == ["s1", "s2", "s1", "s2"]
    assert errors(metrics) == {"too_many_sensors": 2.0}


def test_rejected_payloads_are_logged_rate_limited(run_source, publish, caplog: pytest.LogCaptureFixture) -> None:
    _source, chunks, metrics = run_source()
    with caplog.at_level("WARNING", logger="edge_agent.sources.mqtt"):
        for _ in range(20):
            publish("plant/a/vibration", b"nope")
        publish("plant/a/vibration", GOOD_JSON)
        chunks.wait(1)
    assert errors(metrics) == {"not_json": 20.0}
    rejected = [r for r in caplog.records if "rejected" in r.getMessage()]
    assert len(rejected) == 1
    assert "nope" not in rejected[0].getMessage()  # never the payload


def test_an_emit_that_raises_does_not_stop_the_source(mqtt_config, publish) -> None:
    metrics = AgentMetrics()
    got: list[Chunk] = []
    arrived = threading.Event()

    def emit(chunk: Chunk) -> None:
        if not got:
            got.append(chunk)
            raise RuntimeError("downstream bug")
        got.append(chunk)
        arrived.set()

    source = MqttSource(SECTION, mqtt_config(), password=None, agent_id="t", metrics=metrics)
    source.start(emit)
    try:
        wait_source_up(metrics)
        publish("plant/a/vibration", GOOD_JSON)
        publish("plant/a/vibration", GOOD_JSON)
        assert arrived.wait(10), "the second message never arrived: paho's thread died"
        assert source.internal_errors == 1
        assert source.alive()
    finally:
        source.stop()
        source.stop()  # idempotent


def test_broker_absent_at_start_then_connects(broker, run_source, publish) -> None:
    broker.stop()
    started = time.monotonic()
    _source, chunks, metrics = run_source(wait_up=False)
    assert time.monotonic() - started < 2.0, "start() must not wait for the broker"
    time.sleep(0.5)  # a few failed connection attempts
    assert value(metrics, "edge_agent_source_up", source="vib") == 0
    broker.start()
    wait_source_up(metrics)
    publish("plant/a/vibration", GOOD_JSON)
    assert chunks.wait(1)[0].sensor == "a"
    assert value(metrics, "edge_agent_mqtt_connected", client="source-vib") == 1


def test_broker_restart_mid_stream_resubscribes(broker, run_source, publish) -> None:
    _source, chunks, metrics = run_source()
    publish("plant/a/vibration", GOOD_JSON)
    chunks.wait(1)
    broker.stop()
    wait_source_up(metrics, up=0.0)
    broker.start()
    wait_source_up(metrics)  # set on SUBACK: subscribed again after the reconnect
    publish("plant/a/vibration", GOOD_JSON)  # the publisher reconnects on its own
    assert [c.sensor for c in chunks.wait(2)] == ["a", "a"]


def test_stop_before_start_and_twice() -> None:
    source = MqttSource(SECTION, MqttSection(), password=None, agent_id="t", metrics=AgentMetrics())
    source.stop()
    source.stop()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"format": "xml"}, "format"),
        ({"format": "i16le", "sample_rate_hz": 0.0}, "sample_rate_hz"),
        ({"topic": ""}, "topic"),
        ({"topic": "plant/#/vibration"}, "topic"),
        ({"topic": "plant/pump+/vibration"}, "topic"),
        ({"topic": "plant/+/vib\0ration"}, "topic"),
    ],
)
def test_bad_source_config_is_refused_by_the_config_check(overrides: dict[str, Any], message: str) -> None:
    """Validation happens once: the loader refuses it (naming the key), the constructor trusts its section."""
    source = {"type": "mqtt", "name": "vib", "models": ["m"], "topic": "plant/+/vibration", "qos": 1}
    data = {
        "mqtt": {"enabled": True},
        "models": [{"name": "m", "path": "m.pt"}],
        "sources": [{**source, "sample_rate_hz": 12_000.0, **overrides}],
    }
    with pytest.raises(ConfigError, match=rf"^sources\[0\]\.{message}: "):
        parse_config(data, base_dir=Path("."))


def test_a_hostile_sensor_id_is_refused_before_it_reaches_topics_metrics_or_the_pipeline(run_source, publish) -> None:
    # Issue 12: a valid chunk whose sensor id is 65,515 bytes was admitted and later broke the
    # agent's own state topic. Ids the agent cannot publish under are refused at admission.
    _source, chunks, metrics = run_source(topic="plant/+/vibration")
    publish("plant/" + "x" * 65_515 + "/vibration", GOOD_JSON)
    publish("plant/" + "y" * 129 + "/vibration", GOOD_JSON)  # one character past the limit
    publish("plant/pumpA/vibration", GOOD_JSON)
    assert [c.sensor for c in chunks.wait(1)] == ["pumpA"]
    assert errors(metrics) == {"bad_sensor_id": 2}
    assert value(metrics, "edge_agent_last_sample_timestamp_seconds", sensor="x" * 65_515) == 0
