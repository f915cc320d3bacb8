"""MqttConnection (the client, tracker, open/close and ``connected`` of every MQTT plugin) against mosquitto."""

from __future__ import annotations

import threading
from collections.abc import Callable

import paho.mqtt.client as paho
import pytest
from conftest import Broker, Collector

from edge_agent.config import MqttSection
from edge_agent.metrics import AgentMetrics
from edge_agent.mqttclient import LastWill, MqttConnection


def gauge(metrics: AgentMetrics, client: str) -> float | None:
    return metrics.registry.get_sample_value("edge_agent_mqtt_connected", {"client": client})


def connection(mqtt: MqttSection, metrics: AgentMetrics, **kwargs: object) -> MqttConnection:
    return MqttConnection(
        mqtt, agent_id="gw1", client_suffix="test", password=None, metrics=metrics, metric_client="test", **kwargs
    )


def test_open_connects_and_close_is_idempotent(mqtt_config: Callable[..., MqttSection]) -> None:
    metrics = AgentMetrics()
    hooked = threading.Event()
    configured: list[paho.Client] = []
    conn = connection(mqtt_config(), metrics, on_connected=lambda _client: hooked.set())
    assert conn.client_id == "edge-agent-gw1-test"
    assert not conn.opened and not conn.is_connected() and conn.alive()
    with pytest.raises(RuntimeError, match="not opened"):
        _ = conn.connected
    conn.close()  # before open: nothing to do

    client = conn.open(configured.append)
    try:
        assert configured == [client] and conn.client is client and conn.opened
        assert conn.connected.wait(10), "no CONNACK within 10 s"
        assert hooked.wait(10) and conn.is_connected() and conn.alive()
        assert gauge(metrics, "test") == 1
        with pytest.raises(RuntimeError, match="already opened"):
            conn.open()
    finally:
        conn.close()
    assert not conn.connected.is_set() and not conn.is_connected()
    assert gauge(metrics, "test") == 0
    assert not any(t.name == f"paho-mqtt-client-{conn.client_id}" for t in threading.enumerate())
    conn.close()  # a second close changes nothing
    assert gauge(metrics, "test") == 0 and conn.alive()


def test_connected_follows_the_broker(
    broker: Broker, mqtt_config: Callable[..., MqttSection], until: Callable[..., None]
) -> None:
    metrics = AgentMetrics()
    connects: list[int] = []
    losses: list[int] = []
    conn = connection(
        mqtt_config(), metrics, on_connected=lambda _c: connects.append(1), on_disconnected=lambda: losses.append(1)
    )
    conn.open()
    try:
        assert conn.connected.wait(10)
        broker.stop()
        until(lambda: not conn.is_connected(), what="the connection to drop")
        until(lambda: bool(losses), what="on_disconnected")
        assert gauge(metrics, "test") == 0 and conn.alive()
        broker.start()
        until(lambda: conn.is_connected() and len(connects) == 2, what="a reconnect")
        assert gauge(metrics, "test") == 1
    finally:
        conn.close()


def test_a_failing_hook_does_not_end_the_network_thread(
    mqtt_config: Callable[..., MqttSection], subscriber: Callable[..., Collector], until: Callable[..., None]
) -> None:
    def broken(_client: paho.Client) -> None:
        raise RuntimeError("hook bug")

    collector = subscriber("edge-agent/gw1/status")
    will = LastWill("edge-agent/gw1/status", "offline")
    conn = connection(mqtt_config(), AgentMetrics(), on_connected=broken, will=will)
    conn.open()
    try:
        assert conn.connected.wait(10)
        conn.client.publish("edge-agent/gw1/status", "online", qos=1, retain=True)
        collector.wait_for(lambda c: c.last("edge-agent/gw1/status") == b"online", what="online")
        assert conn.alive()
    finally:
        conn.close()
    assert collector.payloads("edge-agent/gw1/status") == [b"online"]  # a clean close sends no Last Will
