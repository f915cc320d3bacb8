"""Home Assistant MQTT discovery against a real broker: configs, retain, templates, republishing."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jinja2
import paho.mqtt.client as paho
import pytest

from edge_agent.config import HomeAssistantSection, MqttSection
from edge_agent.config.sensor_info import SensorInfo
from edge_agent.metrics import AgentMetrics
from edge_agent.sinks.homeassistant import HomeAssistantDiscoverySink
from edge_agent.sinks.mqtt_alerts import MqttAlertSink
from edge_agent.types import AlertEvent

AGENT = "ha-agent"
BASE = f"edge-agent/{AGENT}"
T0 = 1_763_805_600.0


def config_topics(sensor_id: str) -> set[str]:
    return {
        f"homeassistant/binary_sensor/{AGENT}/{sensor_id}_fault/config",
        f"homeassistant/sensor/{AGENT}/{sensor_id}_label/config",
        f"homeassistant/sensor/{AGENT}/{sensor_id}_confidence/config",
    }


def event(type_: str, sensor: str = "pump-1", **kw: Any) -> AlertEvent:
    values: dict[str, Any] = {
        "type": type_,
        "id": "a1",
        "sensor": sensor,
        "kind": "fault",
        "label": "IR007",
        "confidence": 0.934,
        "started_at": T0,
        "window_start": T0,
        "window_end": T0 + 0.17,
        "model_name": "bearing",
        "ended_at": T0 + 1 if type_ == "end" else None,
    }
    values.update(kw)
    return AlertEvent(**values)


def render(template: str, payload: bytes) -> str:
    """A template as Home Assistant renders it: Jinja with ``value`` and ``value_json``."""
    text = payload.decode()
    try:
        value_json = json.loads(text)
    except ValueError:
        value_json = None
    return jinja2.Environment().from_string(template).render(value=text, value_json=value_json)


@pytest.fixture
def open_sinks(mqtt_config: Callable[..., MqttSection]) -> Iterator[Callable[..., Any]]:
    opened: list[Any] = []

    def make(sensors: dict[str, tuple[str, ...]], *, alerts: bool = False, places: tuple[SensorInfo, ...] = ()) -> Any:
        mqtt, metrics = mqtt_config(), AgentMetrics()
        ha = HomeAssistantSection(enabled=True)
        sink = HomeAssistantDiscoverySink(
            ha, mqtt, password=None, agent_id=AGENT, sensors=sensors, metrics=metrics, places=places
        )
        sink.open()
        opened.append(sink)
        assert sink.connected.wait(10)
        if not alerts:
            return sink
        alert_sink = MqttAlertSink(mqtt, password=None, agent_id=AGENT, metrics=metrics, sensors=places)
        alert_sink.open()
        opened.append(alert_sink)
        assert alert_sink.connected.wait(10)
        return sink, alert_sink

    yield make
    for sink in reversed(opened):
        sink.close()


def test_each_sensor_gets_a_device_with_three_retained_entities(open_sinks, subscriber) -> None:
    live = subscriber("homeassistant/#")
    open_sinks({"pump-1": ("bearing",), "motor.2": ("bearing", "sound")})
    motor_id = "motor_2_" + hashlib.sha256(b"motor.2").hexdigest()[:6]  # '.' is not allowed in an object id
    expected = config_topics("pump-1") | config_topics(motor_id)
    live.wait_for(lambda c: {m.topic for m in c.messages} >= expected, what="6 discovery configs")
    late = subscriber("homeassistant/#")  # a subscriber that comes later gets them as retained messages
    late.wait_for(lambda c: {m.topic for m in c.messages} >= expected, what="retained configs")
    assert {m.topic for m in late.messages} == expected
    assert all(m.retain for m in late.messages)

    configs = {m.topic: json.loads(m.payload) for m in late.messages}
    fault = configs[f"homeassistant/binary_sensor/{AGENT}/pump-1_fault/config"]
    assert fault["device_class"] == "problem"
    assert fault["state_topic"] == f"{BASE}/pump-1/state"
    assert fault["availability"] == [
        {
            "topic": f"{BASE}/status",
            "value_template": "{{ 'online' if value == 'online' else 'offline' }}",
            "payload_available": "online",
            "payload_not_available": "offline",
        }
    ]
    confidence = configs[f"homeassistant/sensor/{AGENT}/pump-1_confidence/config"]
    assert (confidence["unit_of_measurement"], confidence["state_class"]) == ("%", "measurement")
    motor = [doc for topic, doc in configs.items() if motor_id in topic]
    assert {doc["state_topic"] for doc in motor} == {f"{BASE}/motor.2/state"}  # the real sensor id in topics
    assert {json.dumps(doc["device"], sort_keys=True) for doc in motor} == {
        json.dumps(
            {
                "identifiers": [f"edge-agent_{AGENT}_motor.2"],
                "manufacturer": "edge-agent",
                "model": "condition monitoring (bearing, sound)",
                "name": "motor.2",
                "sw_version": motor[0]["device"]["sw_version"],
            },
            sort_keys=True,
        )
    }
    unique_ids = [doc["unique_id"] for doc in configs.values()]
    assert len(set(unique_ids)) == 6
    assert all(doc["qos"] == 1 and doc["json_attributes_topic"] == doc["state_topic"] for doc in configs.values())


def test_templates_turn_the_state_and_status_topics_into_entity_states(open_sinks, subscriber) -> None:
    watch = subscriber("homeassistant/#", f"{BASE}/#")
    _ha_sink, alert_sink = open_sinks({"pump-1": ("bearing",)}, alerts=True)
    watch.wait_for(lambda c: len({m.topic for m in c.messages} & config_topics("pump-1")) == 3, what="configs")
    configs = {m.topic.split("/")[3]: json.loads(m.payload) for m in watch.messages if m.topic.endswith("/config")}
    states = {name: doc["value_template"] for name, doc in configs.items()}
    state_topic = f"{BASE}/pump-1/state"

    alert_sink.send(event("new"))
    watch.wait_for(lambda c: c.last(state_topic) is not None and b"IR007" in c.last(state_topic), what="open state")
    opened = watch.last(state_topic)
    assert opened is not None
    assert render(states["pump-1_fault"], opened) == "ON"
    assert render(states["pump-1_label"], opened) == "IR007"
    assert render(states["pump-1_confidence"], opened) == "93.4"

    alert_sink.send(event("end"))
    watch.wait_for(lambda c: b'"label":null' in (c.last(state_topic) or b"").replace(b" ", b""), what="end state")
    ended = watch.last(state_topic)
    assert ended is not None
    assert render(states["pump-1_fault"], ended) == "OFF"
    assert render(states["pump-1_label"], ended) == "none"
    assert render(states["pump-1_confidence"], ended) == "None"  # Home Assistant: unknown

    availability = configs["pump-1_fault"]["availability"][0]
    assert watch.last(availability["topic"]) == b"online"
    assert render(availability["value_template"], b"online") == availability["payload_available"]
    alert_sink.close()
    watch.wait_for(lambda c: c.last(availability["topic"]) == b"stopped", what="stopped")
    assert render(availability["value_template"], b"stopped") == availability["payload_not_available"]
    assert render(availability["value_template"], b"offline") == availability["payload_not_available"]


def test_configs_are_published_again_when_home_assistant_says_online(broker, open_sinks, subscriber) -> None:
    watch = subscriber("homeassistant/#")
    sink = open_sinks({"pump-1": ("bearing",)})
    expected = config_topics("pump-1")

    def count(c: Any) -> int:
        return sum(1 for m in c.messages if m.topic in expected)

    watch.wait_for(lambda c: count(c) == 3, what="first announcement")
    ha = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="fake-home-assistant")
    ha.connect(broker.host, broker.port)
    ha.loop_start()
    try:
        ha.publish("homeassistant/status", "offline", qos=1).wait_for_publish(5)
        time.sleep(0.5)
        assert count(watch) == 3, "offline must not republish"
        ha.publish("homeassistant/status", "online", qos=1).wait_for_publish(5)
        watch.wait_for(lambda c: count(c) == 6, what="republished configs")
        assert sink.announcements == 2
        configs = [m.payload for m in watch.messages if m.topic in expected]
        assert sorted(configs[3:]) == sorted(configs[:3])
    finally:
        ha.disconnect()
        ha.loop_stop()


def test_a_sensor_first_seen_in_an_alert_is_announced(open_sinks, subscriber) -> None:
    watch = subscriber("homeassistant/#")
    sink = open_sinks({"pump-1": ("bearing",)})
    watch.wait_for(lambda c: len(c.messages) == 3, what="configured sensor")
    sink.send(event("new", sensor="discovered-7"))
    sink.send(event("update", sensor="discovered-7"))  # announced once
    watch.wait_for(lambda c: {m.topic for m in c.messages} >= config_topics("discovered-7"), what="new sensor")
    time.sleep(0.3)
    assert len(watch.messages) == 6


def test_a_wildcard_sensor_is_announced_and_its_stale_fault_state_cleared_at_its_first_samples(
    broker, subscriber, tmp_path
) -> None:
    """A restart must not leave Home Assistant showing a fault from the previous run for a sensor no
    config names: its first samples clear the retained state and announce its device."""
    import threading

    from edge_agent.configload import parse_config
    from edge_agent.service.app import App

    state_topic = f"edge-agent/{AGENT}/press-9/state"
    stale = {"label": "IR007", "kind": "fault", "confidence": 0.9, "since": "2026-01-01T00:00:00Z", "alert_id": "x"}
    publisher = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="test-wildcard-pub")
    publisher.connect(broker.host, broker.port)
    publisher.loop_start()
    publisher.publish(state_topic, json.dumps(stale), qos=1, retain=True).wait_for_publish(5)
    data = {
        "agent": {"id": AGENT},
        "mqtt": {"enabled": True, "host": broker.host, "port": broker.port, "reconnect_min_s": 0.1},
        "metrics": {"enabled": False},
        "homeassistant": {"enabled": True},
        "models": [{"name": "bearing", "path": str(Path(__file__).resolve().parents[2] / "models/drsn_cw_cwru.pt")}],
        "sources": [
            {
                "type": "mqtt",
                "name": "plant",
                "topic": "plant/+/vibration",
                "sensor_level": 1,
                "format": "json",
                "models": ["bearing"],
            }
        ],
    }
    app = App(parse_config(data, base_dir=tmp_path), metrics=AgentMetrics())
    runner = threading.Thread(target=app.run, kwargs={"exit_when_finished": False}, daemon=True)
    collector = subscriber("homeassistant/#", state_topic)
    runner.start()
    try:
        deadline = time.monotonic() + 30
        registry = app.metrics.registry
        while registry.get_sample_value("edge_agent_source_up", {"source": "plant"}) != 1 or not all(
            sink.connected.is_set() for sink in app.sinks if hasattr(sink, "connected")
        ):
            assert time.monotonic() < deadline, "agent did not connect"
            time.sleep(0.05)
        time.sleep(0.5)
        assert not any(m.topic.startswith("homeassistant/") for m in collector.messages), "announced before any sample"
        chunk = {"seq": 0, "ts": time.time(), "sample_rate_hz": 12_000, "samples": [0.0] * 256}
        publisher.publish("plant/press-9/vibration", json.dumps(chunk), qos=1)
        collector.wait_for(lambda c: config_topics("press-9") <= {m.topic for m in c.messages}, 10, "discovery")
        collector.wait_for(lambda c: json.loads(c.last(state_topic) or b"{}").get("kind", "x") is None, 10, "cleared")
        fault = json.loads(collector.last(f"homeassistant/binary_sensor/{AGENT}/press-9_fault/config"))
        assert render(fault["value_template"], collector.last(state_topic)) == "OFF"
    finally:
        app.stop_requested.set()
        runner.join(15)
        publisher.loop_stop()
        publisher.disconnect()


def test_discovery_ids_of_sensors_that_differ_only_in_unsafe_characters_do_not_collide() -> None:
    from edge_agent.sinks.homeassistant import discovery_id

    assert discovery_id("pump-1_a") == "pump-1_a"  # safe ids stay as they are
    ids = {discovery_id(name) for name in ("pump.1", "pump_1", "pump 1", "pump/1")}
    assert len(ids) == 4 and all(i.startswith("pump_1") for i in ids)


def test_a_sensor_place_names_its_device_and_reaches_every_entity_as_attributes(open_sinks, subscriber) -> None:
    place = SensorInfo("pump-1", machine="cooling pump 1", location="hall 2", tags=("line-2", "critical-asset"))
    state_topic = f"{BASE}/pump-1/state"
    live = subscriber("homeassistant/#", state_topic)
    _, alerts = open_sinks({"pump-1": ("bearing",)}, alerts=True, places=(place,))
    alerts.clear_state("pump-1")  # what the agent does at start for a configured sensor
    live.wait_for(lambda c: {m.topic for m in c.messages} >= config_topics("pump-1") | {state_topic}, what="configs")
    for topic in config_topics("pump-1"):
        doc = json.loads(live.last(topic))
        assert (doc["device"]["name"], doc["device"]["suggested_area"]) == ("cooling pump 1 (pump-1)", "hall 2")
        assert doc["json_attributes_topic"] == state_topic  # Home Assistant shows the state document's keys
    attributes = json.loads(live.last(state_topic))
    assert (attributes["machine"], attributes["location"], attributes["tags"]) == (
        "cooling pump 1",
        "hall 2",
        ["line-2", "critical-asset"],
    )
