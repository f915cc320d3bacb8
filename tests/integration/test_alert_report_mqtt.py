"""Alerts a maintenance planner can act on, on a real mosquitto: the real decision engine, data path and
MQTT alert sink publish new, update and end for a shipped model's label; every payload validates against
docs/alert.schema.json and carries the label's description and severity (from the shipped file's meta)
and the sensor's machine, location and tags; so does the retained state topic, from the start."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np

from edge_agent.config import MqttSection
from edge_agent.configload import parse_config
from edge_agent.metrics import AgentMetrics
from edge_agent.modelfile import LoadedModel, read_meta
from edge_agent.pipeline.datapath import DataPath
from edge_agent.pipeline.decision import DecisionEngine
from edge_agent.sinks.alert_schema import load_schema
from edge_agent.sinks.mqtt_alerts import MqttAlertSink
from edge_agent.types import Prediction, Window

REPO = Path(__file__).resolve().parents[2]
AGENT = "gw-report"
PREFIX = f"edge-agent/{AGENT}"
SENSOR = "pump-3-de"
T0 = 1_795_860_000.0
PLACE = {"machine": "cooling water pump 3", "location": "hall 2, bay 4", "tags": ["line-2", "critical-asset"]}


def prediction(labels: tuple[str, ...], label: str, p: float, t: float) -> Prediction:
    rest = (1.0 - p) / (len(labels) - 1)
    probabilities = {name: (p if name == label else rest) for name in labels}
    window = Window(SENSOR, T0 + t, T0 + t + 0.17, np.zeros((1, 2048), np.float32))
    return Prediction(SENSOR, "bearing", window, probabilities, label, p)


def _states(collector: Any, topic: str) -> list[dict[str, Any]]:
    return [json.loads(payload) for payload in collector.payloads(topic)]


def test_new_update_end_on_the_broker_validate_and_carry_the_report(
    mqtt_config: Callable[..., MqttSection], subscriber: Callable[..., Any]
) -> None:
    path = REPO / "models" / "drsn_cw_cwru.pt"
    model = LoadedModel(path=path, module=None, meta=read_meta(path), sha256="c" * 64)  # type: ignore[arg-type]
    mqtt = mqtt_config()
    config = parse_config(
        {
            "agent": {"id": AGENT},
            "mqtt": {"enabled": True, "host": mqtt.host, "port": mqtt.port},
            "decision": {"confirm_k": 2, "confirm_n": 3, "hold_off_s": 5.0, "update_min_delta": 0.05},
            "models": [{"name": "bearing", "path": str(path)}],
            "sources": [
                {"type": "mqtt", "name": "vib", "topic": "plant/+/v", "sensors": [SENSOR], "models": ["bearing"]}
            ],
            "sensors": {SENSOR: PLACE},
        },
        base_dir=REPO,
    )
    watch = subscriber(f"{PREFIX}/#")
    metrics, now = AgentMetrics(), [T0]
    datapath = DataPath(metrics, DecisionEngine(config.decision, clock=lambda: now[0], metrics=metrics))
    datapath.configure({"bearing": model}, config)
    sink = MqttAlertSink(mqtt, password=None, agent_id=AGENT, metrics=metrics, sensors=config.sensors)
    datapath.fanout.open([sink])
    state_topic, alert_topic = f"{PREFIX}/{SENSOR}/state", f"{PREFIX}/{SENSOR}/alert"
    try:
        sink.clear_state(SENSOR)  # what the agent does at start for a configured sensor
        watch.wait_for(lambda c: c.last(state_topic) is not None, what="state at start")
        assert {k: v for k, v in json.loads(watch.last(state_topic)).items() if k in PLACE} == PLACE
        labels = model.meta.labels
        steps = [("IR007", 0.85), ("IR007", 0.87), ("IR007", 0.99), ("IR007", 0.99), ("Normal", 0.97), ("Normal", 0.98)]
        for index, (label, p) in enumerate(steps):
            now[0] = T0 + index
            datapath.on_prediction(prediction(labels, label, p, index))
        watch.wait_for(lambda c: len(c.payloads(alert_topic)) == 2, what="new and update")
        watch.wait_for(lambda c: _states(c, state_topic)[-1]["label"] == "IR007", what="state of the open alert")
        during = _states(watch, state_topic)[-1]
        datapath.tick((), T0 + 20)
        watch.wait_for(lambda c: len(c.payloads(alert_topic)) == 3, what="end")
        watch.wait_for(lambda c: _states(c, state_topic)[-1]["label"] is None, what="state after the end")
    finally:
        sink.close(timeout_s=5)
    validator = jsonschema.Draft202012Validator(load_schema(), format_checker=jsonschema.FormatChecker())
    docs = [json.loads(payload) for payload in watch.payloads(alert_topic)]
    for doc in docs:
        validator.validate(doc)
        assert (doc["description"], doc["severity"]) == ("inner-race fault, 0.18 mm (0.007 in)", "warning")
        assert {k: doc[k] for k in PLACE} == PLACE
    new, update, end = docs
    assert [d["type"] for d in docs] == ["new", "update", "end"]
    assert end["window"]["start"] == "2026-11-28T10:00:05.000Z" != update["window"]["start"]  # its own window
    assert end["confidence"] < 0.01 and end["peak_confidence"] == update["confidence"]
    assert end["duration_s"] == 8.0 and new["duration_s"] is None
    assert (during["label"], during["description"], during["severity"]) == ("IR007", new["description"], "warning")
    assert {k: during[k] for k in PLACE} == PLACE
    after = json.loads(watch.last(state_topic))
    assert after["label"] is None and {k: after[k] for k in PLACE} == PLACE
