"""Anomaly models in the agent: the worker scores them, the decision engine debounces their windows
(k of n, hold-off, cooldown), flags an unknown condition, and their alerts validate against the schema."""

from __future__ import annotations

import itertools
import json
import math
import threading
from pathlib import Path
from typing import Any

import jinja2
import jsonschema
import numpy as np
import pytest
import torch
from prometheus_client import CollectorRegistry
from torch import nn

from edge_agent.config import AgentConfig, DecisionSection, HomeAssistantSection, InferenceSection
from edge_agent.metrics import AgentMetrics
from edge_agent.modelfile import load_runtime_model
from edge_agent.pipeline.alert_context import UNKNOWN_CONDITION, AlertContext
from edge_agent.pipeline.decision import DecisionEngine
from edge_agent.pipeline.inference import InferenceWorker
from edge_agent.pipeline.prediction_series import PredictionSeries
from edge_agent.pipeline.router import SensorSeries
from edge_agent.sinks.alert_schema import OpenAlerts, alert_payload, load_schema
from edge_agent.sinks.homeassistant import discovery_messages
from edge_agent.sinks.log import describe
from edge_agent.types import ANOMALOUS, NOT_ANOMALOUS, AlertEvent, Prediction, Window

WINDOW = 16
THRESHOLD = 0.5
CONFIG = DecisionSection(
    confirm_k=3, confirm_n=5, hold_off_s=5.0, cooldown_s=30.0, max_duration_s=3600.0, update_min_delta=0.1
)


class MeanAbs(nn.Module):
    """Score: the window's mean absolute value (a tiny scripted anomaly model)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.abs().mean(dim=(1, 2))


ANOMALY_META: dict[str, Any] = {
    "schema": 1,
    "name": "baseline",
    "kind": "anomaly",
    "sample_rate_hz": 100,
    "window_samples": WINDOW,
    "hop_samples": WINDOW,
    "channels": 1,
    "input_units": "g",
    "output": "score",
    "normalisation": {"applied": "inside the graph"},
    "precision": "float32",
    "quantized_engine": None,
    "threshold": THRESHOLD,
    "calibration": {"windows": 100, "quantile": 0.999},
}


def anomaly_file(path: Path) -> Path:
    meta = dict(ANOMALY_META)
    torch.jit.save(torch.jit.script(MeanAbs()), str(path), _extra_files={"meta.json": json.dumps(meta)})
    return path


def window(level: float, t: float = 0.0, sensor: str = "s1") -> Window:
    return Window(sensor, 1000.0 + t, 1001.0 + t, np.full((1, WINDOW), level, np.float32))


def test_the_worker_scores_an_anomaly_model_in_batches(tmp_path: Path) -> None:
    loaded = load_runtime_model(anomaly_file(tmp_path / "baseline.pt"), key="models[0].path")
    metrics = AgentMetrics(CollectorRegistry())
    got: list[Prediction] = []
    done = threading.Event()

    def collect(prediction: Prediction) -> None:
        got.append(prediction)
        if len(got) == 4:
            done.set()

    worker = InferenceWorker({"baseline": loaded}, InferenceSection(max_batch=4, max_wait_s=0.5), metrics, collect)
    for i, level in enumerate([0.1, 0.9, -0.2, 0.6]):
        worker.submit("baseline", window(level, i))
    worker.start()
    try:
        assert done.wait(10.0)
    finally:
        worker.stop()
    assert [p.score for p in got] == pytest.approx([0.1, 0.9, 0.2, 0.6])
    assert [p.threshold for p in got] == [THRESHOLD] * 4
    assert [p.anomalous for p in got] == [False, True, False, True]
    assert [p.label for p in got] == [NOT_ANOMALOUS, ANOMALOUS, NOT_ANOMALOUS, ANOMALOUS]
    assert all(p.probabilities == {} and p.model_sha256 == loaded.sha256 for p in got)
    assert metrics.registry.get_sample_value("edge_agent_windows_processed_total", {"model": "baseline"}) == 4


def test_the_router_creates_and_the_series_set_the_anomaly_metrics() -> None:
    metrics = AgentMetrics(CollectorRegistry())
    series = SensorSeries(metrics)
    series.configure({"baseline": ()}, ("Normal",), (), {"baseline": THRESHOLD})
    series.add("s1", ["baseline"])
    labels = {"sensor": "s1", "model": "baseline"}
    value = metrics.registry.get_sample_value
    assert value("edge_agent_anomaly_threshold", labels) == THRESHOLD
    assert np.isnan(value("edge_agent_anomaly_score", labels))
    assert value("edge_agent_anomalous_windows_total", labels) == 0
    assert value("edge_agent_alerts_total", {"sensor": "s1", "label": ANOMALOUS, "type": "new"}) == 0
    recorder = PredictionSeries(metrics)
    for level in (0.2, 0.75, math.nan, 0.9):  # a NaN score is shown, never observed, never anomalous
        recorder.record(scored(level))
    assert value("edge_agent_anomaly_score", labels) == pytest.approx(0.9)
    assert value("edge_agent_anomalous_windows_total", labels) == 2
    assert value("edge_agent_anomaly_score_ratio_bucket", {**labels, "le": "1.0"}) == 1
    assert value("edge_agent_anomaly_score_ratio_count", labels) == 3
    series.configure({"baseline": ()}, ("Normal",), (), {"baseline": 0.7})  # re-learned: a new threshold
    assert value("edge_agent_anomaly_threshold", labels) == 0.7
    series.configure({"baseline": ()}, ("Normal",), (), {})  # a reload made it a non-anomaly model
    assert value("edge_agent_anomaly_threshold", labels) is None


def scored(score: float, t: float = 0.0, sensor: str = "s1") -> Prediction:
    label = ANOMALOUS if score > THRESHOLD else NOT_ANOMALOUS
    return Prediction(sensor, "baseline", window(score, t, sensor), {}, label, 1.0, score=score, threshold=THRESHOLD)


def classified(label: str, t: float = 0.0) -> Prediction:
    return Prediction("s1", "bearing", window(0.0, t), {label: 0.95, "other": 0.05}, label, 0.95)


def engine(metrics: AgentMetrics | None = None) -> tuple[DecisionEngine, list[float]]:
    now = [0.0]
    ids = (f"a{i}" for i in itertools.count(1))
    return DecisionEngine(CONFIG, clock=lambda: now[0], id_factory=lambda: next(ids), metrics=metrics), now


def feed(decision: DecisionEngine, now: list[float], scores: list[float], start: float = 0.0) -> list[AlertEvent]:
    events = []
    for i, score in enumerate(scores):
        now[0] = start + i
        events += decision.update(scored(score, now[0]))
    return events


def test_anomaly_windows_are_debounced_k_of_n() -> None:
    decision, now = engine()
    assert feed(decision, now, [0.9, 0.1, 0.9, 0.1, 0.1, 0.9, 0.1]) == []  # never 3 of the last 5
    events = feed(decision, now, [0.9, 0.9, 0.9], start=20.0)  # votes cleared after the gap: 3 fresh ones
    assert [(e.type, e.kind, e.label) for e in events] == [("new", "anomaly", ANOMALOUS)]
    new = events[0]
    assert new.score == pytest.approx(0.9) and new.threshold == THRESHOLD and new.model_name == "baseline"
    assert new.confidence == pytest.approx(3 / 5) and new.unknown_condition is False
    assert new.classifier_label is None  # no classifier on this sensor
    assert decision.active_anomaly("s1") == new and decision.active("s1") is None  # not a fault alert


def test_an_anomaly_alert_updates_ends_after_the_hold_off_and_cools_down() -> None:
    metrics = AgentMetrics(CollectorRegistry())
    decision, now = engine(metrics)
    events = feed(decision, now, [0.9, 0.9, 0.9, 0.9, 0.9])
    assert [(e.type, round(e.confidence, 2)) for e in events] == [("new", 0.6), ("update", 0.8), ("update", 1.0)]
    assert metrics.registry.get_sample_value("edge_agent_alert_active", {"sensor": "s1", "kind": "anomaly"}) == 1
    events = feed(decision, now, [0.2, 0.2, 0.2], start=5.0)  # 4 of 5, then 3 of 5: still confirmed
    assert events == []
    now[0] = 7.0 + CONFIG.hold_off_s
    ended = decision.tick(now[0])
    assert [(e.type, e.id) for e in ended] == [("end", "a1")]
    end = ended[0]
    assert end.ended_at == pytest.approx(6.0 + CONFIG.hold_off_s)  # last confirmed at 6 (3 of 5)
    assert end.score == pytest.approx(0.2) and end.peak_confidence == pytest.approx(1.0)
    assert metrics.registry.get_sample_value("edge_agent_alert_active", {"sensor": "s1", "kind": "anomaly"}) == 0
    assert feed(decision, now, [0.9] * 5, start=now[0] + 1) == []  # the cooldown holds it back
    suppressed = {"sensor": "s1", "label": ANOMALOUS, "reason": "cooldown"}
    assert metrics.registry.get_sample_value("edge_agent_alerts_suppressed_total", suppressed) == 1
    assert [e.type for e in feed(decision, now, [0.9] * 3, start=end.ended_at + CONFIG.cooldown_s + 1)] == ["new"]


def test_a_fault_and_an_anomaly_on_one_sensor_do_not_mix() -> None:
    decision, now = engine()
    faults: list[AlertEvent] = []
    for i in range(3):
        now[0] = float(i)
        faults += decision.update(classified("IR007", now[0]))
    assert [(e.type, e.kind) for e in faults] == [("new", "fault")]
    events = feed(decision, now, [0.9, 0.9, 0.9], start=3.0)
    assert [(e.type, e.kind, e.unknown_condition, e.classifier_label) for e in events] == [
        ("new", "anomaly", False, "IR007")  # the classifier names the fault: not unknown
    ]
    assert decision.active("s1") is not None and decision.active_anomaly("s1") is not None


def test_an_anomaly_while_the_classifier_says_healthy_is_an_unknown_condition() -> None:
    decision, now = engine()
    assert decision.update(classified("Normal")) == []
    events = feed(decision, now, [0.9, 0.9, 0.9], start=1.0)
    assert [(e.type, e.unknown_condition, e.classifier_label) for e in events] == [("new", True, "Normal")]
    context = AlertContext(AgentMetrics(CollectorRegistry()))
    context.configure({}, AgentConfig())
    (described,) = context.apply(events)
    assert described.description.startswith(UNKNOWN_CONDITION) and described.severity == "warning"
    assert "score 0.9 (threshold 0.5) id=a1" in describe(described)  # the log sink's line
    now[0] = 5.0
    assert decision.update(classified("IR007", 5.0)) == []  # one fault window: not yet a fault alert
    update = feed(decision, now, [0.9], start=6.0)  # the classifier no longer says healthy
    assert [(e.type, e.unknown_condition, e.classifier_label) for e in update] == [("update", False, "IR007")]


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def test_new_update_and_end_anomaly_payloads_validate(validator: jsonschema.Draft202012Validator) -> None:
    decision, now = engine()
    decision.update(classified("Normal"))
    events = feed(decision, now, [0.9, 0.9, 0.9, 0.9], start=1.0)
    now[0] = 100.0
    events += decision.tick(now[0])
    assert [e.type for e in events] == ["new", "update", "end"]
    context = AlertContext(AgentMetrics(CollectorRegistry()))
    context.configure({}, AgentConfig())
    open_alerts = OpenAlerts()
    for event in context.apply(events):
        payload = alert_payload(event, "gw-1")
        validator.validate(payload)
        assert payload["schema"] == 2 and payload["kind"] == "anomaly" and payload["probabilities"] == {}
        assert payload["anomaly"] == {
            "score": 0.9,
            "threshold": THRESHOLD,
            "unknown_condition": True,
            "classifier_label": "Normal",
        }
        assert payload["description"].startswith(UNKNOWN_CONDITION)
        state = open_alerts.state_after(event)
        assert state["kind"] == (None if event.type == "end" else "anomaly")
    broken = alert_payload(context.apply(events[:1])[0], "gw-1")
    del broken["anomaly"]
    assert not validator.is_valid(broken)  # an anomaly alert must carry its score and threshold
    fault = alert_payload(AlertEvent("new", "f1", "s1", "fault", "IR007", 0.9, 1.0, 1.0, 2.0), "gw-1")
    assert "anomaly" not in fault and validator.is_valid(fault)  # fault payloads are unchanged
    assert not validator.is_valid({**fault, "anomaly": broken.get("anomaly", {})})


def test_home_assistant_shows_the_anomaly_state_and_score_of_a_sensor_with_an_anomaly_model() -> None:
    ha = HomeAssistantSection(enabled=True)
    plain = discovery_messages(ha, topic_prefix="edge-agent", agent_id="gw-1", sensor="s1", models=("bearing",))
    assert len(plain) == 3  # no anomaly model on the sensor: no anomaly entities
    messages = discovery_messages(
        ha, topic_prefix="edge-agent", agent_id="gw-1", sensor="s1", models=("bearing", "baseline"), anomaly=True
    )
    anomaly = messages["homeassistant/binary_sensor/gw-1/s1_anomaly/config"]
    score = messages["homeassistant/sensor/gw-1/s1_anomaly_score/config"]
    assert anomaly["device_class"] == "problem" and anomaly["state_topic"] == "edge-agent/gw-1/s1/state"
    assert score["state_class"] == "measurement" and score["unique_id"] == "edge-agent_gw-1_s1_anomaly_score"

    def render(template: str, state: dict[str, Any]) -> str:
        return jinja2.Environment().from_string(template).render(value_json=state)

    decision, now = engine()
    events: list[AlertEvent] = []
    for i in range(3):  # a fault alert opens first, then an anomaly alert: the state shows the fault
        now[0] = float(i)
        events += decision.update(classified("IR007", now[0]))
    events += feed(decision, now, [0.9, 0.9, 0.9], start=3.0)
    assert [(e.type, e.kind) for e in events] == [("new", "fault"), ("new", "anomaly")]
    open_alerts = OpenAlerts()
    states = [open_alerts.state_after(event) for event in events]
    fault_then_anomaly = states[-1]
    assert fault_then_anomaly["kind"] == "fault" and fault_then_anomaly["anomaly"]["score"] == 0.9
    assert render(anomaly["value_template"], fault_then_anomaly) == "ON"
    assert render(score["value_template"], fault_then_anomaly) == "0.9"
    quiet = open_alerts.cleared("s1", 10.0)
    assert "anomaly" not in quiet and render(anomaly["value_template"], quiet) == "OFF"
    assert render(score["value_template"], quiet) == "None"  # Home Assistant: unknown


def test_status_shows_an_anomaly_models_score_against_its_threshold() -> None:
    from edge_agent.service.status import sensor_rows

    def scrape(score: float) -> list[tuple[str, dict[str, str], float]]:
        labels = {"sensor": "s1", "model": "baseline"}
        return [
            ("edge_agent_samples_received_total", {"sensor": "s1"}, 100.0),
            ("edge_agent_anomaly_score", labels, score),
            ("edge_agent_anomaly_threshold", labels, THRESHOLD),
            ("edge_agent_alerts_total", {"sensor": "s1", "label": ANOMALOUS, "type": "new"}, 1.0),
        ]

    (row,) = sensor_rows(scrape(0.1), scrape(0.91), 1.0, 0.0)
    assert row[4] == "score 0.91/0.5 (baseline)" and row[5] == ANOMALOUS
