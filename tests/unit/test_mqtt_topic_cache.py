"""MqttSource remembers admitted sensors' topics and gauges; refusals are still decided every time."""

from __future__ import annotations

import json
from pathlib import Path

import paho.mqtt.client as paho

import edge_agent.sources.mqtt as mqtt_source
from edge_agent.configload import parse_config
from edge_agent.metrics import AgentMetrics
from edge_agent.sources.mqtt import MqttSource
from edge_agent.types import Chunk

PAYLOAD = json.dumps({"sample_rate_hz": 12_000, "samples": [0.0] * 16}).encode()


def _source(max_sensors: int) -> tuple[MqttSource, AgentMetrics, list[Chunk]]:
    cfg = parse_config(
        {
            "mqtt": {"enabled": True, "host": "broker"},
            "models": [{"name": "bearing", "path": "/m/bearing.pt"}],
            "sources": [
                {
                    "type": "mqtt",
                    "name": "plant",
                    "topic": "plant/+/#",
                    "sensor_level": 1,
                    "max_sensors": max_sensors,
                    "models": ["bearing"],
                }
            ],
        },
        base_dir=Path("/"),
    )
    metrics = AgentMetrics()
    source = MqttSource(cfg.sources[0], cfg.mqtt, password=None, agent_id="t", metrics=metrics)
    chunks: list[Chunk] = []
    source._emit = chunks.append  # what start() sets, without a broker
    return source, metrics, chunks


def _send(source: MqttSource, topic: str) -> None:
    msg = paho.MQTTMessage(topic=topic.encode())
    msg.payload = PAYLOAD
    source._on_message(None, None, msg)


def _errors(metrics: AgentMetrics, reason: str) -> float:
    value = metrics.registry.get_sample_value("edge_agent_payload_errors_total", {"source": "plant", "reason": reason})
    return value or 0.0


def test_refused_sensors_stay_refused_and_admitted_ones_keep_their_id(monkeypatch) -> None:
    monkeypatch.setattr(mqtt_source, "_TOPIC_CACHE", 3)
    source, metrics, chunks = _source(max_sensors=2)
    topics = ("plant/a/x", "plant/b/x", "plant/c/x", "plant/bad\x01id/x", "plant/a/y", "plant/a/z", "plant/b/y")
    for _ in range(3):
        for topic in topics:
            _send(source, topic)
    assert [c.sensor for c in chunks] == ["a", "b", "a", "a", "b"] * 3
    assert _errors(metrics, "too_many_sensors") == 3  # c, every time
    assert _errors(metrics, "bad_sensor_id") == 3
    assert len(source._topics) == 3  # bounded; the other topics are checked each time, with the same result
    assert set(source._topics.values()) <= {"a", "b"}
    assert metrics.registry.get_sample_value("edge_agent_last_sample_timestamp_seconds", {"sensor": "a"}) > 0
    assert metrics.registry.get_sample_value("edge_agent_last_sample_timestamp_seconds", {"sensor": "c"}) is None


def test_a_topic_that_is_not_utf8_is_refused_and_counted_and_the_next_message_goes_through() -> None:
    source, metrics, chunks = _source(max_sensors=2)
    msg = paho.MQTTMessage(topic=b"plant/\xff\xfe/x")  # paho decodes the topic on access
    msg.payload = PAYLOAD
    source._on_message(None, None, msg)
    _send(source, "plant/a/x")
    assert _errors(metrics, "unknown_sensor") == 1
    assert [c.sensor for c in chunks] == ["a"]
    assert source.internal_errors == 0  # refused as a payload error, not caught as a failure
