"""Issue 12: the shared inference queue is fair across sensors (a flooding sensor cannot starve another)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import paho.mqtt.client as paho
from test_ingress_fuzz import _model

from edge_agent.configload import parse_config
from edge_agent.metrics import AgentMetrics
from edge_agent.pipeline.datapath import DataPath
from edge_agent.pipeline.decision import DecisionEngine
from edge_agent.pipeline.window_queue import QueuedWindow, WindowQueue
from edge_agent.sources.mqtt import MqttSource
from edge_agent.types import Window

NO_STOP = threading.Event()


def _item(sensor: str, t_s: float, model: str = "a") -> QueuedWindow:
    return QueuedWindow(model, Window(sensor, t_s, t_s + 1, np.zeros((1, 4), np.float32)))


def _value(metrics: AgentMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_a_flooding_sensor_cannot_starve_the_probe_sensor() -> None:
    metrics = AgentMetrics()
    queue = WindowQueue(64, metrics)
    analysed: list[float] = []
    for round_ in range(50):  # each round: the flood sends 500 windows, the probe one; the worker takes 8
        queue.put(_item("probe", round_))
        for k in range(500):
            queue.put(_item("flood", round_ + k / 1000))
        batch = queue.take_batch(8, 0.0, NO_STOP)
        analysed += [item.window.t_start for item in batch if item.window.sensor == "probe"]
    assert analysed == list(range(50))  # every probe window analysed, in order, none dropped
    assert _value(metrics, "edge_agent_sensor_windows_dropped_total", sensor="probe") == 0
    dropped = _value(metrics, "edge_agent_sensor_windows_dropped_total", sensor="flood")
    assert dropped == _value(metrics, "edge_agent_windows_dropped_total", reason="queue_full") > 0


def test_the_flooder_loses_its_own_oldest_windows_first() -> None:
    queue = WindowQueue(4, AgentMetrics())
    queue.put(_item("probe", 0))
    for t_s in range(1, 8):
        queue.put(_item("flood", t_s))
    batch = queue.take_batch(10, 0.0, NO_STOP)
    assert sorted((item.window.sensor, item.window.t_start) for item in batch) == [
        ("flood", 5),
        ("flood", 6),
        ("flood", 7),
        ("probe", 0),
    ]


def test_batches_go_round_robin_over_the_sensors_of_a_model() -> None:
    queue = WindowQueue(100, AgentMetrics())
    for t_s in range(6):
        queue.put(_item("busy", t_s))
    queue.put(_item("quiet", 10))
    first = queue.take_batch(2, 0.0, NO_STOP)
    assert [(i.window.sensor, i.window.t_start) for i in first] == [("busy", 0), ("quiet", 10)]
    rest = queue.take_batch(10, 0.0, NO_STOP)
    assert [i.window.t_start for i in rest] == [1, 2, 3, 4, 5]
    assert len(queue) == 0


def test_a_sensor_over_its_share_of_a_full_queue_is_shed_at_ingress_before_parsing() -> None:
    metrics = AgentMetrics()
    queue = WindowQueue(8, metrics)
    for t_s in range(8):
        queue.put(_item("flood", t_s, model="bearing"))
    assert queue.over_share("flood") and not queue.over_share("probe")
    cfg = parse_config(
        {
            "mqtt": {"enabled": True, "host": "broker"},
            "models": [{"name": "bearing", "path": "/m/bearing.pt"}],
            "sources": [
                {"type": "mqtt", "name": "plant", "topic": "plant/+/v", "sensor_level": 1, "models": ["bearing"]}
            ],
        },
        base_dir=Path("/"),
    )
    path = DataPath(metrics, DecisionEngine(cfg.decision, metrics=metrics))
    path.configure({"bearing": _model()}, cfg)
    router = path.router(cfg.sources[0], lambda _m, _w: None, shed=queue.over_share)
    source = MqttSource(cfg.sources[0], cfg.mqtt, password=None, agent_id="t", metrics=metrics, streams=router)
    source._emit = router  # what start() sets, without a broker
    for sensor in ("flood", "probe"):
        msg = paho.MQTTMessage(topic=f"plant/{sensor}/v".encode())
        msg.payload = b"not json"
        source._on_message(None, None, msg)
    assert _value(metrics, "edge_agent_messages_shed_total", source="plant", sensor="flood") == 1
    assert _value(metrics, "edge_agent_messages_shed_total", source="plant", sensor="probe") == 0
    assert _value(metrics, "edge_agent_sensor_payload_errors_total", sensor="flood", reason="not_json") == 0
    assert _value(metrics, "edge_agent_sensor_payload_errors_total", sensor="probe", reason="not_json") == 1
