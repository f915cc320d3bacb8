"""MqttAlertSink against a real mosquitto, and the alert schema (docs/alert.schema.json)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from edge_agent.config import MqttSection
from edge_agent.metrics import AgentMetrics
from edge_agent.sinks.alert_schema import SCHEMA_PATH, alert_payload, encode, iso_utc, load_schema
from edge_agent.sinks.mqtt_alerts import MqttAlertSink
from edge_agent.types import AlertEvent

REPO = Path(__file__).resolve().parents[2]
AGENT = "gw1"
PREFIX = f"edge-agent/{AGENT}"
STATUS = f"{PREFIX}/status"
SHA = "ab" * 32
T0 = 1_795_860_000.0  # 2026-11-28T10:00:00Z


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def event(type_: str = "new", n: int = 0, *, sensor: str = "pumpA", kind: str = "fault", **kw: Any) -> AlertEvent:
    values: dict[str, Any] = {
        "type": type_,
        "id": f"{sensor}-{kind}-1",
        "sensor": sensor,
        "kind": kind,
        "label": "inner_race",
        "confidence": 0.9,
        "started_at": T0,
        "window_start": T0 + n,
        "window_end": T0 + n + 0.085,
        "model_name": "drsn_cw",
        "model_sha256": SHA,
        "probabilities": {"Normal": 0.05, "inner_race": 0.9, "ball": 0.05},
        "ended_at": T0 + n + 0.1 if type_ == "end" else None,
    }
    values.update(kw)
    return AlertEvent(**values)


# --- the schema itself (no broker) ---


def test_schema_file_is_where_the_code_says() -> None:
    assert SCHEMA_PATH == REPO / "docs" / "alert.schema.json"


@pytest.mark.parametrize(
    "ev",
    [
        event("new"),
        event("update", 3, confidence=0.97, label="ball"),
        event("end", 9),
        event("new", kind="health", label="silent", model_name="", model_sha256="", probabilities={}),
    ],
    ids=["new", "update", "end", "health without model"],
)
def test_generated_payloads_validate(validator, ev: AlertEvent) -> None:
    doc = alert_payload(ev, AGENT)
    validator.validate(json.loads(encode(doc)))
    assert list(doc) == [
        "schema",
        "type",
        "id",
        "agent",
        "sensor",
        "kind",
        "label",
        "confidence",
        "probabilities",
        "started_at",
        "ended_at",
        "window",
        "model",
        # schema 2 adds these after the version-1 keys
        "description",
        "severity",
        "peak_confidence",
        "duration_s",
        "machine",
        "location",
        "tags",
    ]
    assert doc["started_at"] == "2026-11-28T10:00:00.000Z"
    assert (doc["ended_at"] is None) == (ev.type != "end")


def test_iso_times_are_utc_milliseconds() -> None:
    assert iso_utc(0.1234) == "1970-01-01T00:00:00.123Z"
    with pytest.raises(ValueError):
        iso_utc(float("nan"))


def _broken(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(alert_payload(event("new"), AGENT))
    target = doc
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


_DELETE = object()
BROKEN = [
    ("missing id", ("id",), _DELETE),
    ("extra key", ("extra",), 1),
    ("schema version 1", ("schema",), 1),  # version 1 lacks the keys of 2 (docs/alert.schema.json)
    ("schema version 3", ("schema",), 3),
    ("unknown type", ("type",), "closed"),
    ("unknown kind", ("kind",), "warning"),
    ("confidence above 1", ("confidence",), 1.5),
    ("confidence a string", ("confidence",), "0.9"),
    ("probability negative", ("probabilities", "ball"), -0.1),
    ("local time", ("started_at",), "2026-11-28T11:00:00.000+01:00"),
    ("not a time", ("started_at",), "yesterday"),
    ("ended_at on new", ("ended_at",), "2026-11-28T10:00:00.000Z"),
    ("window without end", ("window", "end"), _DELETE),
    ("bad sha256", ("model", "sha256"), "xyz"),
    ("sensor with slash", ("sensor",), "a/b"),
]


@pytest.mark.parametrize(("path", "value"), [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN])
def test_schema_rejects_broken_payloads(validator, path: tuple[str, ...], value: Any) -> None:
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(_broken(path, value))


def test_end_without_ended_at_is_rejected(validator) -> None:
    doc = alert_payload(event("end"), AGENT)
    doc["ended_at"] = None
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(doc)
    with pytest.raises(ValueError):
        alert_payload(event("end", ended_at=None), AGENT)


# --- the sink on a real broker ---


@pytest.fixture
def open_sink(mqtt_config: Callable[..., MqttSection]) -> Iterator[Callable[..., tuple[MqttAlertSink, AgentMetrics]]]:
    opened: list[MqttAlertSink] = []

    def make(**mqtt_overrides: Any) -> tuple[MqttAlertSink, AgentMetrics]:
        metrics = AgentMetrics()
        sink = MqttAlertSink(mqtt_config(**mqtt_overrides), password=None, agent_id=AGENT, metrics=metrics)
        sink.open()
        opened.append(sink)
        return sink, metrics

    yield make
    for s in opened:
        s.close(timeout_s=1.0)


def value(metrics: AgentMetrics, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels`` (e.g. every drop reason)."""
    return sum(
        sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def alerts(collector, validator, sensor: str = "pumpA") -> list[dict[str, Any]]:
    docs = [json.loads(p) for p in collector.payloads(f"{PREFIX}/{sensor}/alert")]
    for doc in docs:
        validator.validate(doc)  # every published alert follows the schema
    return docs


def test_status_is_online_while_open_and_stopped_after_close(open_sink, subscriber) -> None:
    sink, metrics = open_sink()
    assert sink.connected.wait(10)
    # `connected` is set before `online` is published: once one subscriber has seen it, the broker
    # holds it, and a subscriber that comes later gets it with the retain flag (a live one does not)
    subscriber(STATUS).wait_for(lambda c: c.last(STATUS) == b"online", what="online")
    later = subscriber(STATUS)
    later.wait_for(lambda c: c.last(STATUS) == b"online", what="retained online")
    assert later.on(STATUS)[-1].retain
    assert value(metrics, "edge_agent_mqtt_connected", client="alerts") == 1
    sink.close(timeout_s=5)
    sink.close(timeout_s=5)  # idempotent
    assert value(metrics, "edge_agent_mqtt_connected", client="alerts") == 0
    after = subscriber(STATUS)
    after.wait_for(lambda c: c.last(STATUS) == b"stopped", what="retained stopped")
    assert after.on(STATUS)[-1].retain


def test_alert_lifecycle_and_retained_state(open_sink, subscriber, validator) -> None:
    watch = subscriber(f"{PREFIX}/#")
    sink, metrics = open_sink()
    state_topic = f"{PREFIX}/pumpA/state"
    sink.send(event("new"))
    watch.wait_for(lambda c: len(c.payloads(state_topic)) >= 1, what="state after new")
    assert json.loads(watch.last(state_topic)) == {
        "label": "inner_race",
        "kind": "fault",
        "confidence": 0.9,
        "since": "2026-11-28T10:00:00.000Z",
        "alert_id": "pumpA-fault-1",
        **{"description": "inner_race", "severity": None},  # added by schema 2: the label described ...
        **{"machine": None, "location": None, "tags": []},  # ... and the sensor's place ([sensors])
    }
    sink.send(event("update", 1, label="ball", confidence=0.95))
    sink.send(event("end", 2))
    watch.wait_for(lambda c: len(c.payloads(f"{PREFIX}/pumpA/alert")) == 3, what="three alerts")
    docs = alerts(watch, validator)
    assert [(d["type"], d["label"], d["id"]) for d in docs] == [
        ("new", "inner_race", "pumpA-fault-1"),
        ("update", "ball", "pumpA-fault-1"),
        ("end", "inner_race", "pumpA-fault-1"),
    ]
    assert all(not m.retain for m in watch.on(f"{PREFIX}/pumpA/alert"))
    watch.wait_for(lambda c: json.loads(c.last(state_topic))["label"] is None, what="state cleared after end")
    assert json.loads(watch.last(state_topic)) == {
        "label": None,
        "kind": None,
        "confidence": None,
        "since": "2026-11-28T10:00:02.100Z",
        "alert_id": None,
        **{"description": None, "severity": None, "machine": None, "location": None, "tags": []},
    }
    assert sink.alive()
    late = subscriber(state_topic)  # retained for whoever subscribes later
    late.wait_for(lambda c: c.on(state_topic) and c.on(state_topic)[-1].retain, what="retained state")
    sink.close(timeout_s=5)
    assert value(metrics, "edge_agent_alerts_delivered_total") == 3
    assert value(metrics, "edge_agent_alerts_queued") == 0
    assert value(metrics, "edge_agent_alerts_dropped_total") == 0


def test_alerts_sent_while_the_broker_is_down_arrive_in_order_after_it_returns(
    broker, open_sink, subscriber, validator, until
) -> None:
    watch = subscriber(f"{PREFIX}/+/alert", persistent=True)  # its session outlives the broker restart
    sink, metrics = open_sink()
    assert sink.connected.wait(10)
    broker.stop()
    until(lambda: not sink.connected.is_set(), what="sink notices the broker is gone")
    for n in range(6):
        sink.send(event("update", n, confidence=0.5 + n / 20))
    assert value(metrics, "edge_agent_alerts_queued") == 6
    broker.start()
    watch.wait_for(lambda c: len(c.payloads(f"{PREFIX}/pumpA/alert")) >= 6, what="six queued alerts")
    docs = alerts(watch, validator)
    assert [d["confidence"] for d in docs] == [0.5 + n / 20 for n in range(6)]
    until(lambda: value(metrics, "edge_agent_alerts_delivered_total") == 6, what="six PUBACKs")
    assert value(metrics, "edge_agent_alerts_queued") == 0


def test_broker_restart_with_alerts_in_flight_loses_nothing_and_keeps_order(
    broker, open_sink, subscriber, until
) -> None:
    """Alerts in flight in paho when the broker goes are re-sent first; duplicates allowed (QoS 1)."""
    watch = subscriber(f"{PREFIX}/+/alert", persistent=True)
    sink, metrics = open_sink()
    assert sink.connected.wait(10)
    broker.pause()  # the sink's publishes reach the socket but get no PUBACK: they stay in flight
    total = 300
    for n in range(total):
        sink.send(event("update", n, id=f"a{n}"))
    time.sleep(0.3)  # let the pump hand its in-flight window to paho
    broker.stop()  # what the paused broker had not read is lost on its side: the sink must re-send it
    assert value(metrics, "edge_agent_alerts_delivered_total") == 0
    broker.start()
    until(lambda: value(metrics, "edge_agent_alerts_delivered_total") == total, timeout_s=20, what="every PUBACK")
    watch.wait_for(
        lambda c: len({json.loads(p)["id"] for p in c.payloads(f"{PREFIX}/pumpA/alert")}) == total,
        timeout_s=20,
        what="every alert id",
    )
    ids = [int(json.loads(p)["id"][1:]) for p in watch.payloads(f"{PREFIX}/pumpA/alert")]
    assert list(dict.fromkeys(ids)) == list(range(total))  # in order; a re-sent duplicate may follow its original


def test_outbox_is_bounded_and_drops_the_oldest(broker, open_sink, subscriber, validator, until) -> None:
    watch = subscriber(f"{PREFIX}/+/alert", persistent=True)
    broker.stop()
    sink, metrics = open_sink(alert_queue_max=3)  # the broker is down when the sink opens
    for n in range(5):
        sink.send(event("update", n, confidence=0.5 + n / 10))
    assert value(metrics, "edge_agent_alerts_dropped_total") == 2
    assert value(metrics, "edge_agent_alerts_queued") == 3
    broker.start()
    until(lambda: value(metrics, "edge_agent_alerts_delivered_total") == 3, what="three PUBACKs")
    watch.wait_for(lambda c: len(c.payloads(f"{PREFIX}/pumpA/alert")) >= 3, what="the three newest alerts")
    assert [d["confidence"] for d in alerts(watch, validator)] == [0.7, 0.8, 0.9]


def test_sink_opened_without_broker_connects_when_it_appears(broker, open_sink, subscriber, until) -> None:
    broker.stop()
    sink, metrics = open_sink()
    sink.send(event("new"))
    assert not sink.connected.wait(0.5)
    broker.start()
    assert sink.connected.wait(10)
    watch = subscriber(STATUS, f"{PREFIX}/pumpA/state")
    watch.wait_for(lambda c: c.last(STATUS) == b"online", what="online after a late broker")
    watch.wait_for(lambda c: c.last(f"{PREFIX}/pumpA/state") is not None, what="retained state")
    until(lambda: value(metrics, "edge_agent_alerts_delivered_total") == 1, what="the alert's PUBACK")


def test_close_flushes_queued_alerts_before_stopped(open_sink, subscriber, validator) -> None:
    watch = subscriber(f"{PREFIX}/#")
    sink, metrics = open_sink()
    assert sink.connected.wait(10)
    for n in range(200):
        sink.send(event("update", n, sensor=f"s{n % 4}"))
    sink.close(timeout_s=10)
    assert value(metrics, "edge_agent_alerts_delivered_total") == 200
    watch.wait_for(lambda c: c.last(STATUS) == b"stopped", what="stopped")
    topics = [m.topic for m in watch.messages]
    last_alert = max(i for i, t in enumerate(topics) if t.endswith("/alert"))
    assert topics.index(STATUS, last_alert) > last_alert  # stopped comes after every alert
    assert sum(len(alerts(watch, validator, f"s{i}")) for i in range(4)) == 200


def test_invalid_events_are_counted_not_raised(open_sink) -> None:
    sink, metrics = open_sink()
    sink.send(event("new", sensor="a/b"))
    sink.send(event("new", confidence=float("nan")))
    sink.send(event("closed"))
    assert value(metrics, "edge_agent_mqtt_publish_failures_total", client="alerts") == 3
    assert value(metrics, "edge_agent_alerts_queued") == 0


VICTIM = """
import sys, time
sys.modules["torch"] = None  # AgentMetrics only asks torch for its version: skip the 2 s import
from edge_agent.config import MqttSection
from edge_agent.metrics import AgentMetrics
from edge_agent.sinks.mqtt_alerts import MqttAlertSink
mqtt = MqttSection(enabled=True, host="127.0.0.1", port=int(sys.argv[1]), reconnect_min_s=0.1, reconnect_max_s=0.5)
sink = MqttAlertSink(mqtt, password=None, agent_id="victim", metrics=AgentMetrics())
sink.open()
time.sleep(60)
"""


def test_kill_9_makes_the_broker_publish_offline(broker, subscriber, tmp_path: Path) -> None:
    status = "edge-agent/victim/status"
    watch = subscriber(status)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(tmp_path / "victim.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(VICTIM), str(broker.port)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
            env=env,
        )
    try:
        watch.wait_for(lambda c: c.last(status) == b"online", timeout_s=20, what="victim online")
        proc.kill()
        proc.wait(timeout=10)
        watch.wait_for(lambda c: c.last(status) == b"offline", timeout_s=10, what="Last Will offline")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert (tmp_path / "victim.log").read_text().strip() == ""  # no traceback in the victim
    later = subscriber(status)
    later.wait_for(lambda c: c.last(status) == b"offline", what="retained offline")
    assert later.on(status)[-1].retain


def test_a_sensor_id_too_long_for_a_topic_is_refused_and_the_next_alerts_still_go_out(
    open_sink, subscriber, validator
) -> None:
    # Issue 12: a 65,515-byte sensor id made `<prefix>/<agent>/<sensor>/state` longer than MQTT's
    # 65,535 bytes; paho raised in the pump thread, the thread died and no alert of any sensor
    # was delivered afterwards. Now the id is refused at send(), counted, and the pump goes on.
    watch = subscriber(f"{PREFIX}/pumpA/alert")
    sink, metrics = open_sink()
    sink.send(event("new", sensor="x" * 65_515))
    sink.send(event("new"))
    sink.send(event("end", 1))
    watch.wait_for(lambda c: len(c.payloads(f"{PREFIX}/pumpA/alert")) == 2, what="pumpA's alerts")
    assert [d["type"] for d in alerts(watch, validator)] == ["new", "end"]
    assert value(metrics, "edge_agent_mqtt_publish_failures_total", client="alerts") == 1
    assert sink.alive()
